"""`snn mcu run` on a pty -> serial channel proxy at BER 1e-2 -> the edge's serial listener."""
import json
import subprocess
import sys

import pytest

from codec.datasets import FMNIST_DIR

pytestmark = pytest.mark.skipif(not (FMNIST_DIR / "t10k-images-idx3-ubyte.gz").exists(),
                                reason="real Fashion-MNIST not installed (apt-get install -y dataset-fashion-mnist)")

COUNT = 100
ACCURACY_BAR = 0.90  # the codec issue's bar at BER 1e-2


def test_mcu_over_serial_proxy_to_edge(tmp_path):
    from bench.stack import LocalStack
    from export.shipped import default_int8_encoder
    encoder = default_int8_encoder()
    out = tmp_path / "mcu.json"
    with LocalStack(ber=1e-2, link="serial", seed=3) as stack:
        proc = subprocess.run([sys.executable, "-m", "snn", "mcu", "run", "--board", "stm32f411",
                               "--port", stack.device_url, "--encoder", str(encoder), "--data", "fmnist:test",
                               "--count", str(COUNT), "--no-compute-delay", "--json", str(out),
                               *stack.device_args(3)],
                              capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    print(json.dumps({k: v for k, v in result.items() if not isinstance(v, (list, dict))}))
    assert result["answered"] >= COUNT - 2
    assert result["accuracy"] >= ACCURACY_BAR
    uplink = stack.proxy_summary["uplink"]
    assert uplink["frames"] >= COUNT and 0.005 < uplink["measured_ber"] < 0.02
