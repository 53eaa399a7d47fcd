"""`snn bench accuracy --quick` end to end on a tiny bundle: JSON contract, markdown, plots."""
from __future__ import annotations

import json
import time

from snn.cli import main


def test_bench_accuracy_quick(tiny_bundle, tmp_path):
    out = tmp_path / "results"
    t0 = time.time()
    rc = main(["bench", "accuracy", "--quick", "--count", "60", "--bundle", str(tiny_bundle), "--deepcod", "none",
               "--out", str(out), "--json", str(tmp_path / "acc.json")])
    assert rc == 0
    assert time.time() - t0 < 120  # ~20 s on an idle 2-core machine; generous for a shared one
    result = json.loads((tmp_path / "acc.json").read_text())
    rows = result["rows"]
    assert rows and all({"method", "channel", "ber", "accuracy", "bytes_on_air"} <= set(r) for r in rows)
    methods = {r["method"] for r in rows}
    assert {"semanticnn", "raw-arq", "png-arq", "jpeg10-arq", "raw-rs127", "jpeg50-plain", "feat8-plain",
            "device-only"} <= methods
    assert {r["channel"] for r in rows} == {"iid", "ge"}
    assert {r["ber"] for r in rows} == {0.0, 1e-4, 1e-3, 1e-2, 5e-2, 1e-1}
    assert all(0.0 <= r["accuracy"] <= 1.0 and r["bytes_on_air"] > 0 for r in rows)
    sem = [r for r in rows if r["method"] == "semanticnn"]
    assert all(r["ratio"] == 1.0 for r in sem)
    # a clean link: ARQ sends the raw image once, in 4 fragments of 196 B + 21 B each
    raw0 = next(r for r in rows if r["method"] == "raw-arq" and r["ber"] == 0 and r["channel"] == "iid")
    assert raw0["bytes_on_air"] == 868 and abs(raw0["accuracy"] - result["config"]["backbone_accuracy"]) < 1e-4
    assert "cheapest_within_2_points" in result["bars"]
    assert (out / "accuracy.json").is_file() and (out / "accuracy.md").read_text().startswith("# SemanticNN")
    for png in ("accuracy_vs_ber.png", "accuracy_vs_bytes.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"


def test_bench_rejects_a_missing_bundle(tmp_path, capsys):
    rc = main(["bench", "accuracy", "--quick", "--bundle", str(tmp_path / "nope.snn"), "--out", str(tmp_path)])
    assert rc == 2
    assert "does not exist" in capsys.readouterr().err


def test_bench_accuracy_through_the_lora_phy(tiny_bundle, tmp_path):
    """--model lora-phy: rows per (SF, SNR), each SF at its EU868 MTU, SemanticNN beside the baselines
    whose CRC and ARQ see the same PHY errors; the markdown runs along the SNR."""
    out = tmp_path / "results"
    rc = main(["bench", "accuracy", "--quick", "--count", "40", "--bundle", str(tiny_bundle), "--deepcod", "none",
               "--model", "lora-phy", "--sf", "7,12", "--snr-db=-12,0", "--out", str(out),
               "--json", str(tmp_path / "acc.json")])
    assert rc == 0
    rows = json.loads((tmp_path / "acc.json").read_text())["rows"]
    assert {r["channel"] for r in rows} == {"lora-phy-sf7", "lora-phy-sf12"}
    assert {(r["sf"], r["mtu"]) for r in rows} == {(7, 222), (12, 51)}
    at = {(r["method"], r["sf"], r["snr_db"]): r for r in rows}
    # SF7 at -12 dB is far below its limit: ARQ of the raw image never gets through; at 0 dB all is clean
    assert at[("raw-arq", 7, -12.0)]["accuracy"] < 0.1 < at[("raw-arq", 7, 0.0)]["accuracy"]
    assert at[("semanticnn", 7, -12.0)]["delivered"] > 0.9
    assert at[("raw-arq", 12, 0.0)]["bytes_on_air"] > at[("raw-arq", 7, 0.0)]["bytes_on_air"]  # MTU 51 vs 222
    assert "dB |" in (out / "accuracy.md").read_text()
