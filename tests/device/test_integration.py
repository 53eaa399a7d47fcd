"""device -> channel proxy -> edge, all real processes (bench.stack.LocalStack).

The shipped Fashion-MNIST int8 encoder, a real `snn edge serve` and a real `snn channel proxy`
on ephemeral ports / fresh ptys, and `snn device run` sending real test images through them.
Over UDP at BER 1e-2 the accuracy the device reports must meet the codec's bar (>= 90%).
"""
import json
import subprocess
import sys

import pytest

from codec.datasets import FMNIST_DIR

pytestmark = pytest.mark.skipif(not (FMNIST_DIR / "t10k-images-idx3-ubyte.gz").exists(),
                                reason="real Fashion-MNIST not installed (apt-get install -y dataset-fashion-mnist)")

COUNT = 200
ACCURACY_BAR = 0.90


@pytest.fixture(scope="module")
def encoder():
    from export.shipped import default_int8_encoder
    return default_int8_encoder()


def _device(encoder, url: str, out, *extra: str) -> dict:
    dev = subprocess.run([sys.executable, "-m", "snn", "device", "run", "--encoder", str(encoder), "--to", url,
                          "--data", "fmnist:test", "--truth", "--timeout", "3", "--quiet", "--json", str(out),
                          *extra], capture_output=True, text=True, timeout=300)
    assert dev.returncode == 0, dev.stderr
    return json.loads(out.read_text())


def test_device_proxy_edge_over_udp(encoder, tmp_path):
    from bench.stack import LocalStack
    with LocalStack(ber=1e-2, seed=7) as stack:
        s = _device(encoder, stack.device_url, tmp_path / "device.json", "--count", str(COUNT), "--window", "8")
    assert s["count"] == COUNT
    assert s["answered"] >= COUNT - 2, s
    assert s["accuracy"] >= ACCURACY_BAR, s
    # the edge measured the BER from the pilots: it should see roughly the proxy's 1e-2
    assert 2e-3 < s["edge_ber_mean"] < 3e-2, s
    assert 0.005 < stack.proxy_summary["uplink"]["measured_ber"] < 0.02
    print(json.dumps({k: s[k] for k in ("answered", "accuracy", "rtt_p50_ms", "rtt_p99_ms", "encode_p50_ms",
                                        "edge_ber_mean", "bytes_sent_mean", "peak_rss_bytes")}))


def test_device_to_real_edge_over_pty_serial_ports(encoder, tmp_path):
    from bench.stack import LocalStack
    with LocalStack(ber=0.0, link="serial") as stack:
        s = _device(encoder, stack.device_url, tmp_path / "device.json", "--count", "30", "--link", "uart-115200")
    assert s["answered"] == 30 and s["lost"] == 0, s
    # a clean link: the edge labels exactly what the int8 symbols give in-process (30 images are
    # too few for an accuracy bar: one image is 3.3 points)
    import numpy as np

    from codec.bundle import load_bundle
    from codec.datasets import load_dataset
    from codec.evaluate import edge_predict
    from device.encoder import OnnxEncoder
    symbols = OnnxEncoder(encoder).encode(load_dataset("fmnist:test").images[:30])
    expected = edge_predict(load_bundle(), symbols, 0.0)
    assert [r["label"] for r in s["inferences"]] == [int(v) for v in np.asarray(expected)], s
    classes = load_bundle().classes  # the wire carries the index; the device JSON names it
    assert s["classes"] == classes and all(r["class_name"] == classes[r["label"]] for r in s["inferences"])
    assert s["link"].startswith("uart") and s["airtime_ms_per_inference"] > 0
