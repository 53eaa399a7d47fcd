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
