"""`snn bench energy`: rows from an accuracy run become energy per inference; the comparison picks
the least-energy bit-level row within 2 points of SemanticNN."""
import os
import subprocess
import sys

from bench.energy import compare, energy_rows
from channel.links import get_link
from firmware_sim.boards import load_board


def _acc_rows():
    base = {"channel": "iid", "ber": 0.01}
    return [dict(base, method="semanticnn", family="learned", accuracy=0.92, bytes_on_air=49.0, packets=1.0),
            dict(base, method="semanticnn-binary", family="learned", accuracy=0.93, bytes_on_air=49.0, packets=1.0),
            dict(base, method="raw-arq", family="bit-level", accuracy=0.91, bytes_on_air=900.0, packets=5.0),
            dict(base, method="png-rs127", family="bit-level", accuracy=0.93, bytes_on_air=1200.0, packets=6.0),
            dict(base, method="jpeg10-plain", family="bit-level", accuracy=0.10, bytes_on_air=300.0, packets=2.0),
            dict(base, method="feat8-plain", family="features", accuracy=0.9, bytes_on_air=8000.0),
            dict(base, method="raw-rs191", family="bit-level", accuracy=0.93, bytes_on_air=1100.0, packets=5.0,
                 ber=0.1)]


def test_rows_and_comparison():
    rows = energy_rows(_acc_rows(), load_board("stm32f411"), get_link("lora-sf7"), 46e6)
    assert [r["method"] for r in rows] == ["semanticnn", "raw-arq", "png-rs127", "jpeg10-plain"]
    sem, arq, rs, plain = rows
    assert sem["compute_mj"] > 0 and arq["compute_mj"] == 0 == rs["compute_mj"]
    assert arq["radio_rx_mj"] == 5 * rs["radio_rx_mj"]          # ARQ listens for an ACK per frame
    c = compare(rows)
    assert c["cheapest_within_2_points"]["method"] == "raw-arq"   # 0.91 >= 0.92 - 0.02; less energy than RS
    assert c["ratio"] == round(arq["energy_mj"] / sem["energy_mj"], 2) and c["ratio"] > 1


def test_bad_links_exit_2():
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    p = subprocess.run([sys.executable, "-m", "snn", "bench", "energy", "--links", "uart-115200"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 2 and "LoRa" in p.stderr and "Traceback" not in p.stderr
