"""Model engines: onnxruntime answers torch's labels, and an edge serves without torch at all."""
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from codec.datasets import fmnist_dir
from codec.wire.frame import Reply, encode_inference, parse_reply
from codec.wire.packing import pack_symbols
from edge.codecs import load_codecs, softmax_top

ROOT = Path(__file__).resolve().parents[2]
HAVE_FMNIST = (fmnist_dir() / "t10k-images-idx3-ubyte.gz").is_file()
# skipped without the data set; under CI a skip fails (tests/conftest.py)
needs_fmnist = pytest.mark.skipif(not HAVE_FMNIST,
                                  reason="Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")


def _real_symbols(count=None):
    """Symbols of real test images from the shipped bundle's device half (torch)."""
    from codec.bundle import load_bundle
    from codec.datasets import load_dataset
    from codec.evaluate import device_symbols

    bundle = load_bundle()
    test = load_dataset("fmnist:test").take(count)
    sym = device_symbols(bundle, test.images).reshape(len(test.labels), -1)
    return bundle, sym.astype(np.int64), test.labels


@pytest.fixture(scope="module")
def real_symbols():
    return _real_symbols(1000)


@needs_fmnist
def test_onnx_labels_equal_torch_on_real_images_with_errors(real_symbols):
    _labels_equal(*real_symbols)


@pytest.mark.slow
@needs_fmnist
def test_onnx_labels_equal_torch_on_the_full_test_set():
    """The README's figure: all 10,000 test images, clean, BER 1e-2-like and 5e-2 + erasures."""
    _labels_equal(*_real_symbols(None))


def _labels_equal(bundle, sym, truth):
    onnx = next(iter(load_codecs(None, engine="onnx")))
    torch_ = next(iter(load_codecs(None, engine="torch")))
    assert (onnx.engine.name, torch_.engine.name) == ("onnx", "torch")
    assert onnx.fingerprint == torch_.fingerprint == bundle.fingerprint
    rng = np.random.default_rng(1)
    for p_sym, p_erase, ber in ((0.0, 0.0, 1e-4), (0.03, 0.0, 1e-2), (0.15, 0.05, 5e-2)):
        s = sym.copy()
        hit = rng.random(s.shape) < p_sym
        s[hit] = rng.integers(0, bundle.levels, int(hit.sum()))
        erased = rng.random(s.shape) < p_erase
        bers = np.full(len(s), ber, np.float32)
        same, worst = 0, 0.0
        for i in range(0, len(s), 64):
            a = onnx.engine.run(s[i:i + 64], erased[i:i + 64], bers[i:i + 64])
            t = torch_.engine.run(s[i:i + 64], erased[i:i + 64], bers[i:i + 64])
            same += int((a.argmax(1) == t.argmax(1)).sum())
            worst = max(worst, float(np.abs(a - t).max()))
        print(f"symbol errors {p_sym:g}, erased {p_erase:g}: labels equal {same}/{len(s)}, "
              f"max |logit difference| {worst:.1e}")
        assert same == len(s) and worst < 1e-4
    clean = np.concatenate([onnx.engine.run(sym[i:i + 64], np.zeros_like(sym[i:i + 64], bool),
                                            np.full(len(sym[i:i + 64]), 1e-4, np.float32)).argmax(1)
                            for i in range(0, len(sym), 64)])
    assert (clean == truth).mean() >= 0.9


def test_softmax_top_matches_the_definition():
    logits = np.random.default_rng(0).normal(size=(50, 10)).astype(np.float32) * 5
    top = softmax_top(logits)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    assert np.array_equal(top.labels, p.argmax(1))
    assert np.allclose(top.confidences, p.max(1), atol=1e-6)


@needs_fmnist
def test_edge_serves_the_shipped_bundle_without_torch(real_symbols, tmp_path):
    """`snn edge serve` in a process where `import torch` fails answers torch's labels over UDP."""
    bundle, sym, _ = real_symbols
    ready = tmp_path / "ready.json"
    code = ("import sys; sys.modules['torch'] = None; from snn.cli import main; "
            "sys.exit(main(sys.argv[1:]))")
    log = open(tmp_path / "edge.log", "w+")
    proc = subprocess.Popen([sys.executable, "-c", code, "edge", "serve", "--http", "127.0.0.1:0",
                             "--udp", "127.0.0.1:0", "--insecure", "--ready-json", str(ready)], cwd=str(ROOT),
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        t0 = time.monotonic()
        while not (ready.exists() and ready.read_text().strip().endswith("}")):
            log.seek(0)
            assert proc.poll() is None and time.monotonic() - t0 < 60, log.read()
            time.sleep(0.05)
        addr = json.loads(ready.read_text())
        assert addr["engine"] == "onnx"
        host, port = addr["udp"][len("udp://"):].rsplit(":", 1)
        n = 64
        torch_ = next(iter(load_codecs(None, engine="torch")))
        expect = torch_.engine.run(sym[:n], np.zeros((n, sym.shape[1]), bool),
                                   np.full(n, 1e-3, np.float32)).argmax(1)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(5)
            key, fp, got = bytes(16), bundle.fingerprint, {}   # --insecure: the all-zero key
            for i in range(n):
                payload = pack_symbols(sym[i], bundle.levels).tobytes()
                s.sendto(encode_inference(payload, key=key, device_id=7, fingerprint=fp, counter=i + 1)[0],
                         (host, int(port)))
            while len(got) < n:
                reply = parse_reply(s.recv(2048), key=key, device_id=7, fingerprint=fp,
                                    full_counter=lambda low: low)
                assert isinstance(reply, Reply), reply
                got[reply.counter - 1] = reply.label
        assert [got[i] for i in range(n)] == expect.tolist()
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
    assert proc.returncode == 0


def test_cli_torchscript_needs_the_torch_engine():
    r = subprocess.run([sys.executable, "-m", "snn", "edge", "serve", "--torchscript", "--udp", "none",
                        "--http", "127.0.0.1:0"], cwd=str(ROOT), capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--engine torch" in r.stderr and len(r.stderr.strip().splitlines()) == 1
