"""`snn eval`: table and JSON with the contract's keys, clear errors for bad input."""
import json

import pytest

from codec.bundle import make_random_bundle
from codec.datasets import FMNIST_DIR, fmnist_dir
from snn.cli import main

needs_fmnist = pytest.mark.skipif(not (fmnist_dir() / "t10k-images-idx3-ubyte.gz").is_file(),
                                  reason=f"Fashion-MNIST is not installed under {FMNIST_DIR}")


@needs_fmnist
def test_eval_prints_table_and_writes_json(tmp_path, capsys):
    bundle = make_random_bundle(tmp_path / "tiny.snn")
    out = tmp_path / "eval.json"
    assert main(["eval", str(bundle), "--ber", "0,1e-2,1e-1", "--model", "iid,ge", "--count", "200",
                 "--json", str(out), "--speed"]) == 0
    text = capsys.readouterr().out
    assert "37 bytes" in text and "edge half" in text
    fig = json.loads(out.read_text())
    assert fig["payload_bytes"] == 37 and 0.0 <= fig["backbone_accuracy"] <= 1.0
    rows = fig["results"]
    assert [(r["model"], r["ber"]) for r in rows] == [("iid", 0.0), ("iid", 0.01), ("iid", 0.1), ("ge", 0.0),
                                                      ("ge", 0.01), ("ge", 0.1)]
    for r in rows:
        assert 0.0 <= r["accuracy"] <= 1.0 and r["accuracy_std"] >= 0.0
    assert fig["edge"]["edge_macs_per_image"] > 0 and fig["edge"]["edge_images_per_s"] > 0


def test_bad_inputs_exit_2(tmp_path, capsys):
    bundle = make_random_bundle(tmp_path / "tiny.snn")
    assert main(["eval", str(bundle), "--model", "awgnx", "--count", "10"]) == 2
    assert "unknown error model" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "missing.snn")]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["eval", str(bundle), "--ber", "0,abc"])
    assert exc.value.code == 2


@needs_fmnist
def test_eval_through_the_lora_phy_per_sf_and_snr(tmp_path, capsys):
    """--model lora-phy: one row per (SF, SNR), BER = what the model expects for the 49-byte
    frame, and more SNR never hurts: at a high SNR nothing is damaged."""
    bundle = make_random_bundle(tmp_path / "tiny.snn")
    out = tmp_path / "eval.json"
    assert main(["eval", str(bundle), "--model", "lora-phy", "--sf", "7,12", "--snr-db=-12,-7.5,5",
                 "--count", "200", "--seeds", "1", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "LoRa PHY" in text
    rows = json.loads(out.read_text())["results"]
    assert [(r["sf"], r["snr_db"]) for r in rows] == [(7, -12.0), (7, -7.5), (7, 5.0), (12, -12.0), (12, -7.5),
                                                      (12, 5.0)]
    assert all(r["model"] == "lora-phy" and r["frame_bytes"] == 49 for r in rows)
    assert rows[0]["ber"] > rows[1]["ber"] > rows[2]["ber"] and rows[0]["wrong_symbols"] > 0.01
    assert rows[2]["wrong_symbols"] == 0 and rows[5]["wrong_symbols"] == 0
    assert main(["eval", str(bundle), "--model", "lora-phy", "--sf", "13", "--count", "10"]) == 2
    assert main(["eval", str(bundle), "--snr-db=-5", "--count", "10"]) == 2
