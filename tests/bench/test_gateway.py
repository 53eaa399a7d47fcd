"""`snn bench gateway`: real frames from `snn device run` through two emulated gateways (chirp-level
LoRa PHY each, failed CRCs forwarded) into a real `snn edge serve --gateway`, answered by txpk."""
import json

import pytest

from codec.datasets import FMNIST_DIR
from snn.cli import main

pytestmark = pytest.mark.skipif(not (FMNIST_DIR / "t10k-images-idx3-ubyte.gz").exists(),
                                reason="real Fashion-MNIST not installed")


def test_two_gateways_one_answer_per_inference_bad_crcs_kept(tmp_path, capsys):
    out = tmp_path / "gateway.json"
    # one gateway near SF7's limit (its CRC fails often), one 3.5 dB better
    assert main(["bench", "gateway", "--snr-db=-8.5,-5", "--count", "40", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["answered"] >= 39 and r["device_duplicates"] == 0
    assert r["stat_fail"] >= 1                                   # frames with stat -1 reached the edge
    (weak, g1), (strong, g2) = sorted(r["gateways"].items())
    # every transmission heard by both (and the device's resynchronisation: RESYNC, CONFIRM)
    assert g1["stat_fail"] > g2["stat_fail"] and g1["rx"] == g2["rx"] == r["transmissions"] + 2
    edge = r["edge"]
    # one txpk per answered transmission, never two gateways for one frame
    txpk = edge[weak].get("txpk", 0) + edge[strong].get("txpk", 0)
    assert r["answered"] <= txpk == r["txpk_sent"] <= r["transmissions"] + 2
    assert edge[strong]["txpk"] >= 0.9 * txpk                    # the better-heard gateway carries the replies
    assert g1["rx1_exact"] + g2["rx1_exact"] == txpk and g1["too_late"] == g2["too_late"] == 0
    assert edge[weak]["rxpk_crc_bad"] == g1["stat_fail"]        # every failed CRC was forwarded and counted
    assert "txpk" in capsys.readouterr().out


def test_gateway_simulator_flags_are_checked(capsys):
    base = ["channel", "gateways", "--listen", "udp://127.0.0.1:0", "--to", "127.0.0.1:9"]
    assert main([*base, "--gateways", "2", "--snr-db=-7,-6,-5"]) == 2
    assert "3 values for 2 gateways" in capsys.readouterr().err
    assert main([*base, "--gateways", "2", "--eui", "aa555a0000000001", "--eui", "aa555a0000000001"]) == 2
    assert main([*base, "--to", "nowhere"]) == 2
