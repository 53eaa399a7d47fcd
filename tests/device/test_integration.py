"""device -> channel proxy (BER 1e-2) -> edge, all real processes over loopback UDP.

The shipped Fashion-MNIST bundle is exported to int8, a real `snn edge serve` and a real
`snn channel proxy --ber 1e-2` run as subprocesses on ephemeral ports, and `snn device run`
sends >= 200 real test images through them. The accuracy the device reports must meet the codec's
bar at BER 1e-2 (>= 90%).
"""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

BUNDLE = os.environ.get("SNN_TEST_BUNDLE")
COUNT = 200
ACCURACY_BAR = 0.90


def _bundle_path() -> Path:
    from codec.bundle import DEFAULT_BUNDLE

    return Path(BUNDLE) if BUNDLE else DEFAULT_BUNDLE


@pytest.fixture(scope="module")
def shipped_int8(tmp_path_factory):
    from codec.bundle import load_bundle
    from codec.data import load_dataset
    from export.pipeline import build_encoders, calibration_split

    path = _bundle_path()
    if not path.is_file():
        pytest.skip(f"no trained bundle at {path} yet")
    bundle = load_bundle(path)
    train = load_dataset("fmnist:train")
    cal, _ = calibration_split(train.images, 512, 0)
    out = tmp_path_factory.mktemp("shipped_export")
    _, int8_path, _ = build_encoders(bundle, out, cal, method="percentile", activations="8",
                                  log=lambda *a: None)
    return path, int8_path


def _start(args, **kw):
    return subprocess.Popen([sys.executable, "-m", "snn", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kw)


def _stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _wait_for(predicate, timeout, proc, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited early ({proc.returncode}): {proc.stderr.read()[-2000:]}")
        time.sleep(0.1)
    raise AssertionError(f"{what} not ready after {timeout} s")


def test_device_proxy_edge_over_udp(shipped_int8, tmp_path):
    bundle, encoder = shipped_int8
    ready = tmp_path / "edge.json"
    edge = _start(["edge", "serve", "--bundle", str(bundle), "--udp", "127.0.0.1:0", "--http", "127.0.0.1:0",
                   "--ready-json", str(ready)])
    proxy = None
    try:
        addresses = _wait_for(lambda: ready.is_file() and ready.stat().st_size and json.loads(ready.read_text()),
                              90, edge, "edge")
        edge_udp = addresses["udp"]
        edge_url = edge_udp if edge_udp.startswith("udp://") else f"udp://{edge_udp}"
        proxy = _start(["channel", "proxy", "--listen", "udp://127.0.0.1:0", "--to", edge_url, "--ber", "1e-2",
                        "--seed", "7", "--stats-interval", "0"])
        line = _wait_for(lambda: proxy.stdout.readline(), 30, proxy, "proxy")
        match = re.search(r"listen=(udp://[\d.]+:\d+)", line)
        assert match, line
        out = tmp_path / "device.json"
        dev = subprocess.run([sys.executable, "-m", "snn", "device", "run", "--encoder", str(encoder),
                              "--to", match.group(1), "--data", "fmnist:test", "--count", str(COUNT),
                              "--truth", "--window", "8", "--timeout", "3", "--quiet", "--json", str(out)],
                             capture_output=True, text=True, timeout=300)
        assert dev.returncode == 0, dev.stderr
        s = json.loads(out.read_text())
        assert s["count"] == COUNT
        assert s["answered"] >= COUNT - 2, s
        assert s["accuracy"] >= ACCURACY_BAR, s
        # the edge measured the BER from the pilots: it should see roughly the proxy's 1e-2
        assert 2e-3 < s["edge_ber_mean"] < 3e-2, s
        print(json.dumps({k: s[k] for k in ("answered", "accuracy", "rtt_p50_ms", "rtt_p99_ms", "encode_p50_ms",
                                            "edge_ber_mean", "peak_rss_bytes")}))
    finally:
        if proxy is not None:
            _stop(proxy)
        _stop(edge)


def test_device_to_real_edge_over_a_pty_serial_port(shipped_int8, tmp_path):
    bundle, encoder = shipped_int8
    ready = tmp_path / "edge.json"
    edge = _start(["edge", "serve", "--bundle", str(bundle), "--udp", "none", "--http", "127.0.0.1:0",
                   "--serial", "pty://", "--ready-json", str(ready)])
    try:
        addresses = _wait_for(lambda: ready.is_file() and ready.stat().st_size and json.loads(ready.read_text()),
                              90, edge, "edge")
        tty = addresses["serial"][0]
        tty = tty.split("://", 1)[1] if "://" in tty else tty
        out = tmp_path / "device.json"
        dev = subprocess.run([sys.executable, "-m", "snn", "device", "run", "--encoder", str(encoder),
                              "--to", f"serial://{tty}?baud=115200", "--link", "uart-115200", "--count", "30",
                              "--truth", "--timeout", "3", "--json", str(out)],
                             capture_output=True, text=True, timeout=120)
        assert dev.returncode == 0, dev.stderr
        s = json.loads(out.read_text())
        assert s["answered"] == 30 and s["lost"] == 0, s
        assert s["accuracy"] >= 0.6, s  # a clean link: the edge decodes exactly what the device sent
        assert s["link"].startswith("uart") and s["airtime_ms_per_inference"] > 0
    finally:
        _stop(edge)
