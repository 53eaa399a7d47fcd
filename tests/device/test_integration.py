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
    """`snn device run` as device 1 of the stack (pass its `device_args` in `extra`)."""
    dev = subprocess.run([sys.executable, "-m", "snn", "device", "run", "--encoder", str(encoder), "--to", url,
                          "--data", "fmnist:test", "--truth", "--timeout", "3", "--quiet", "--json", str(out),
                          *extra], capture_output=True, text=True, timeout=300)
    assert dev.returncode == 0, dev.stderr
    return json.loads(out.read_text())


def test_device_proxy_edge_over_udp(encoder, tmp_path):
    from bench.stack import LocalStack
    with LocalStack(ber=1e-2, seed=7) as stack:
        s = _device(encoder, stack.device_url, tmp_path / "device.json", "--count", str(COUNT), "--window", "8",
                    *stack.device_args(1))
        # the same device id again, as a new process (its counter persisted beside its key file)
        again = _device(encoder, stack.device_url, tmp_path / "again.json", "--count", "20", "--offset", "300",
                        *stack.device_args(1))
    assert s["count"] == COUNT
    assert s["answered"] >= 0.99 * COUNT, s
    assert s["accuracy"] >= ACCURACY_BAR, s
    assert again["answered"] >= 19, again
    # the edge measured the BER from its header decoding: roughly the proxy's 1e-2
    assert 2e-3 < s["edge_ber_mean"] < 3e-2, s
    assert 0.005 < stack.proxy_summary["uplink"]["measured_ber"] < 0.02
    print(json.dumps({k: s[k] for k in ("answered", "accuracy", "rtt_p50_ms", "rtt_p99_ms", "encode_p50_ms",
                                        "edge_ber_mean", "bytes_sent_mean", "peak_rss_bytes")}))


def test_device_through_the_lora_phy_at_the_sf7_limit(encoder, tmp_path):
    """`snn channel proxy --lora-phy --sf 7 --snr-db -7.5` (Semtech's SF7 demodulator limit), both
    directions: real bits flip in real frames and the device is still answered (>= 95 %)."""
    from bench.stack import LocalStack
    with LocalStack(seed=11, channel_args=("--lora-phy", "--sf", "7", "--cr", "4/5", "--snr-db", "-7.5")) as stack:
        s = _device(encoder, stack.device_url, tmp_path / "device.json", "--count", "100", "--window", "8",
                    "--link", "lora-sf7", *stack.device_args(3))
    assert s["answered"] >= 95, s
    assert stack.proxy_summary["uplink"]["bits_flipped"] > 0, stack.proxy_summary
    assert stack.proxy_summary["uplink_model"].startswith("lora-phy SF7")
    assert s["accuracy"] >= ACCURACY_BAR - 0.05, s


def test_device_to_real_edge_over_pty_serial_ports(encoder, tmp_path):
    from bench.stack import LocalStack
    with LocalStack(ber=0.0, link="serial") as stack:
        s = _device(encoder, stack.device_url, tmp_path / "device.json", "--count", "30", "--link", "uart-115200",
                    *stack.device_args(2))
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


@pytest.mark.slow
def test_lora_sf12_mtu_at_ber_1e1_both_ways_degrades_and_is_answered(encoder, tmp_path):
    """MTU 51 (LoRa SF10-12), BER 0.1 up and down, --header-copies auto: five copies do not fit, the
    device sends three (more fragments), says so, and >= 90 % of inferences are answered."""
    from bench.stack import LocalStack
    with LocalStack(ber=0.1, seed=5, extra_proxy_args=("--downlink-ber", "0.1")) as stack:
        dev = subprocess.run([sys.executable, "-m", "snn", "device", "run", "--encoder", str(encoder), "--to",
                              stack.device_url, "--count", "100", "--mtu", "51", "--header-copies", "auto",
                              "--timeout", "1", "--quiet", "--json", str(tmp_path / "d.json"),
                              *stack.device_args(4)], capture_output=True, text=True, timeout=600)
    s = json.loads((tmp_path / "d.json").read_text())
    assert s["answered"] >= 90, s
    assert "fits at most 3 header copies" in dev.stderr and s["degraded"] > 0
    assert "cannot frame" not in dev.stderr
