"""The README's main job, end to end: the shipped bundle offline, then a live edge + proxy + device."""
import json
import subprocess
import sys

import pytest

from codec.datasets import FMNIST_DIR

pytestmark = pytest.mark.skipif(not (FMNIST_DIR / "t10k-images-idx3-ubyte.gz").exists(),
                                reason="real Fashion-MNIST not installed (apt-get install -y dataset-fashion-mnist)")


def test_demo_runs_the_whole_stack(tmp_path):
    out = tmp_path / "demo.json"
    proc = subprocess.run([sys.executable, "-m", "snn", "demo", "--count", "300", "--live-count", "30",
                           "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    result = json.loads(out.read_text())
    offline = result["offline"]
    assert offline["payload_bytes"] <= 48 and [r["ber"] for r in offline["results"]] == [0, 0.01, 0.05, 0.1]
    live = result["live"]
    assert live["device"]["count"] == 30 and live["device"]["answered"] >= 28
    assert 0.004 < live["proxy"]["uplink"]["measured_ber"] < 0.02   # the proxy really flipped bits
    assert "live: snn device run" in proc.stdout
