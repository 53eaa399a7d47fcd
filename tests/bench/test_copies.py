"""`snn bench copies`: a real stack per channel, every transmission counted, the JSON contract."""
import json

from codec.datasets import FMNIST_DIR
from snn.cli import main

import pytest

pytestmark = pytest.mark.skipif(not (FMNIST_DIR / "t10k-images-idx3-ubyte.gz").exists(),
                                reason="real Fashion-MNIST not installed")


def test_bench_copies_on_a_clean_channel(tmp_path, capsys):
    out = tmp_path / "copies.json"
    assert main(["bench", "copies", "--channel", "iid-1e-3", "--mtu", "51", "--copies", "auto,1", "--count", "12",
                 "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["channel"], r["mtu"], r["copies"]) for r in rows] == [("iid-1e-3", 51, "auto"), ("iid-1e-3", 51, "1")]
    for r in rows:
        assert r["answered"] == 12 and 66.0 <= r["bytes_per_answered"] < 72   # 37 B + truth: 2 fragments, 1 copy (a resend or two)
        assert 2.0 <= r["frames_per_inference"] < 2.4
    assert "B/answered" in capsys.readouterr().out
    assert main(["bench", "copies", "--copies", "7"]) == 2


def test_bench_copies_through_the_lora_phy_at_the_sf7_limit(tmp_path):
    """`snn channel proxy --lora-phy --sf 7 --snr-db -7.5` (Semtech's SF7 limit): bits really flip on
    the real frames, both directions, and the device is still answered (issue 23)."""
    out = tmp_path / "copies.json"
    assert main(["bench", "copies", "--channel", "lora-sf7-limit", "--mtu", "222", "--copies", "auto",
                 "--count", "60", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    (row,) = result["rows"]
    assert row["answered"] >= 0.95 * 60
    air = result["air"]["lora-sf7-limit"]
    assert air["uplink"]["frames"] >= 60 and air["downlink"]["frames"] >= row["answered"]
    assert air["uplink"]["bits_flipped"] + air["downlink"]["bits_flipped"] > 0
    assert 0 < air["uplink"]["measured_ber"] + air["downlink"]["measured_ber"] < 1e-2
