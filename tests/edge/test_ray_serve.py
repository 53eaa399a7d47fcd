"""The model half on Ray Serve replicas (edge/ray_serve.py) and the batcher's parallel workers.

Fast: the batcher keeps two batches in flight with two workers (real threads), and the replica
class itself gives the in-process logits. Real: `snn edge serve --ray local --replicas 2` (a
real local Ray, Serve without its HTTP proxy) answers a device run with the in-process labels,
and a second front joining that cluster reuses the running replicas.
"""
from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from codec.datasets import FMNIST_DIR
from edge.batcher import Job, MicroBatcher
from edge.codecs import BatchResult

ROOT = Path(__file__).resolve().parents[2]
HAVE_RAY = importlib.util.find_spec("ray") is not None
# (under CI a skip fails: tests/conftest.py)
needs_ray = pytest.mark.skipif(not HAVE_RAY, reason="Ray is not installed (pip install '.[cluster]')")
needs_fmnist = pytest.mark.skipif(not (FMNIST_DIR / "t10k-images-idx3-ubyte.gz").exists(),
                                  reason="real Fashion-MNIST not installed")


class SlowCodec:
    """Answers label = payload[0]; each batch waits until `parallel` batches run at once."""

    payload_bytes = 4

    def __init__(self, parallel: int, timeout: float) -> None:
        self.barrier = threading.Barrier(parallel, timeout=timeout)
        self.threads: set[str] = set()

    def infer(self, payloads, erased, bers) -> BatchResult:
        self.threads.add(threading.current_thread().name)
        self.barrier.wait()            # BrokenBarrierError (answered as a failed batch) if alone
        return BatchResult(np.array([p[0] for p in payloads]), np.ones(len(payloads), dtype=np.float32))


@pytest.mark.parametrize("workers", [1, 2])
def test_workers_keep_that_many_batches_in_flight(workers):
    async def main():
        codec = SlowCodec(parallel=2, timeout=5.0 if workers == 2 else 0.3)
        batcher = MicroBatcher(max_batch=4, max_wait_s=0.001, workers=workers)
        batcher.start()
        loop = asyncio.get_running_loop()
        answers: dict[int, tuple] = {}
        done = asyncio.Event()

        def reply(job, label, conf, error):
            answers[job.payload[0]] = (label, error)
            if len(answers) == 8:
                done.set()

        for i in range(8):
            assert batcher.submit(Job(codec, bytes([i, 0, 0, 0]), None, 0.0, reply, time.perf_counter()))
        await asyncio.wait_for(done.wait(), 15)
        left = await batcher.drain(1.0)
        assert left == [] and batcher.in_flight == 0
        return answers, codec.threads, loop

    answers, threads, _ = asyncio.run(main())
    if workers == 2:   # two batches met at the barrier: every job answered with its own label
        assert {i: a[0] for i, a in answers.items()} == {i: i for i in range(8)}
        assert all(a[1] is None for a in answers.values()) and len(threads) == 2
    else:              # one worker never has a second batch in flight: the barrier breaks
        assert all(a[1] is not None for a in answers.values()) and len(threads) == 1


@needs_ray
def test_the_replica_class_gives_the_in_process_logits():
    """EdgeHalfReplica (what each Ray replica runs), instantiated here, against ServedCodec."""
    import torch

    from codec.bundle import DEFAULT_BUNDLE, load_bundle
    from edge.codecs import ServedCodec
    from edge.ray_serve import EdgeHalfReplica

    bundle = load_bundle()
    served = ServedCodec.from_bundle(bundle)
    replica = EdgeHalfReplica({served.fingerprint_hex: DEFAULT_BUNDLE.read_bytes()})
    assert replica.fingerprints() == [served.fingerprint_hex]
    rng = np.random.default_rng(0)
    symbols = rng.integers(0, served.levels, (9, served.n_symbols)).astype(np.uint8)
    erased = rng.random((9, served.n_symbols)) < 0.1
    ber = np.full(9, 1e-2, dtype=np.float32)
    got = replica.run(served.fingerprint_hex, symbols, erased, ber)
    with torch.inference_mode():
        want = served.module(torch.from_numpy(symbols.astype(np.int64)), torch.from_numpy(erased),
                             torch.from_numpy(ber)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def _serve(tmp_path: Path, *args: str, timeout: float = 300.0):
    ready = tmp_path / f"ready-{time.monotonic_ns()}.json"
    log = tmp_path / f"edge-{time.monotonic_ns()}.log"
    proc = subprocess.Popen([sys.executable, "-m", "snn", "edge", "serve", "--http", "127.0.0.1:0", "--udp",
                             "127.0.0.1:0", "--ready-json", str(ready), "--insecure", *args],
                            stdout=open(log, "w"), stderr=subprocess.STDOUT, cwd=str(ROOT),
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))
    t0 = time.monotonic()
    while not (ready.is_file() and ready.stat().st_size):
        if proc.poll() is not None or time.monotonic() - t0 > timeout:
            proc.kill()
            raise AssertionError("edge did not start:\n" + log.read_text(errors="replace"))
        time.sleep(0.2)
    time.sleep(0.1)
    return proc, json.loads(ready.read_text()), log


def _stop(proc) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        return -9


def _device(encoder, udp: str, count: int, out: Path) -> dict:
    dev = subprocess.run([sys.executable, "-m", "snn", "device", "run", "--encoder", str(encoder), "--to", udp,
                          "--data", "fmnist:test", "--count", str(count), "--quiet", "--json", str(out),
                          "--insecure"],
                         capture_output=True, text=True, timeout=300, cwd=str(ROOT),
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert dev.returncode == 0, dev.stderr
    return json.loads(out.read_text())


@needs_ray
@needs_fmnist
def test_ray_replicas_answer_a_device_run_with_the_in_process_labels(tmp_path):
    _ray_fronts(tmp_path, second_front=False)


@pytest.mark.slow
@needs_ray
@needs_fmnist
def test_a_second_front_joins_the_cluster_and_shares_the_replicas(tmp_path):
    _ray_fronts(tmp_path, second_front=True)


def _ray_fronts(tmp_path: Path, second_front: bool) -> None:
    """~30 s on an idle 2-core machine (a local Ray starts in ~17 s); +15 s for a second front."""
    from codec.bundle import load_bundle
    from codec.datasets import load_dataset
    from codec.evaluate import edge_predict
    from device.encoder import OnnxEncoder
    from export.shipped import default_int8_encoder

    encoder = default_int8_encoder()
    proc, ready, log = _serve(tmp_path, "--ray", "local", "--replicas", "2")
    second = None
    try:
        assert ready["engine"] == "ray" and ready["replicas"] == 2 and not ready["ray"]["reused"], ready
        count = 60
        s = _device(encoder, ready["udp"], count, tmp_path / "device.json")
        assert s["answered"] == count, s
        symbols = OnnxEncoder(encoder).encode(load_dataset("fmnist:test").images[:count])
        expected = edge_predict(load_bundle(), symbols, 0.0)
        assert [r["label"] for r in s["inferences"]] == [int(v) for v in np.asarray(expected)]
        if second_front:  # a second front joins the cluster and shares the running replicas
            second, ready2, _ = _serve(tmp_path, "--ray", ready["ray"]["cluster"])
            assert ready2["engine"] == "ray" and ready2["ray"]["reused"] and ready2["replicas"] == 2, ready2
            assert _device(encoder, ready2["udp"], 10, tmp_path / "device2.json")["answered"] == 10
    finally:
        if second is not None:
            assert _stop(second) == 0
        assert _stop(proc) == 0, log.read_text(errors="replace")
    text = log.read_text(errors="replace")
    assert "Traceback" not in text, text


def test_ray_flags_are_checked_before_anything_starts(capsys):
    from snn.cli import main

    assert main(["edge", "serve", "--ray", "local", "--replicas", "0"]) == 2
    assert "--replicas must be at least 1" in capsys.readouterr().err
    if HAVE_RAY:
        assert main(["edge", "serve", "--ray", "local", "--torchscript"]) == 2
        assert "--torchscript" in capsys.readouterr().err


def test_reuse_port_lets_several_fronts_share_the_udp_and_http_ports():
    from edge.listeners import bind_udp
    from edge.server import bind_http
    from snn.errors import SnnError

    a = bind_udp("127.0.0.1", 0, reuse_port=True)
    port = a.getsockname()[1]
    b = bind_udp("127.0.0.1", port, reuse_port=True)
    with pytest.raises(SnnError):
        bind_udp("127.0.0.1", port)             # without the flag the port stays taken
    h1 = bind_http("127.0.0.1", 0, reuse_port=True)
    h2 = bind_http("127.0.0.1", h1.getsockname()[1], reuse_port=True)
    for s in (a, b, h1, h2):
        s.close()


def test_balancer_keeps_each_device_on_one_front(tmp_path):
    """Two real stand-in fronts behind `snn edge balance`: every frame answered through it, each
    device id seen by exactly one front, and the devices spread over both."""
    from edge.balancer import pick

    # this directory's conftest by path: `import conftest` finds whichever test directory's
    # conftest was imported first when several directories are collected
    spec = importlib.util.spec_from_file_location("edge_tests_conftest", Path(__file__).with_name("conftest.py"))
    helpers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helpers)
    UdpClient, start_standin = helpers.UdpClient, helpers.start_standin
    from codec.wire.frame import Reply
    from wire_client import data_frame

    fronts = [start_standin(tmp_path, "--max-devices", "64") for _ in range(2)]
    ready = tmp_path / "balance.json"
    bal = subprocess.Popen([sys.executable, "-m", "snn", "edge", "balance", "--listen", "127.0.0.1:0",
                            "--to", fronts[0].addresses["udp"], "--to", fronts[1].addresses["udp"],
                            "--ready-json", str(ready)], cwd=str(ROOT), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        t0 = time.monotonic()
        while not (ready.is_file() and ready.stat().st_size) and time.monotonic() - t0 < 30:
            time.sleep(0.05)
        host, port = json.loads(ready.read_text())["udp"][len("udp://"):].rsplit(":", 1)
        client = UdpClient((host, int(port)))          # one address for all devices, like a gateway
        devices = list(range(20, 32))          # provisioned for any codec (wire_client.KEYS)
        for _ in (1, 2):
            for dev in devices:
                reply = client.ask(data_frame(dev % 10, device=dev))
                assert isinstance(reply, Reply) and reply.label == dev % 10, reply
        client.close()
        seen = []
        for f in fronts:
            import urllib.request
            stats = json.loads(urllib.request.urlopen(urllib.request.Request(f.http + "/v1/stats", headers=f.auth), timeout=5).read())
            seen.append({d["device_id"] for d in stats["devices"]})
        assert seen[0] | seen[1] == set(devices) and not seen[0] & seen[1] and seen[0] and seen[1], seen
        backends = [tuple(f.udp) for f in fronts]
        assert all(pick(d, backends) == backends[i] for i, s in enumerate(seen) for d in s)
    finally:
        bal.send_signal(signal.SIGTERM)
        out = bal.communicate(timeout=10)[0]
        for f in fronts:
            f.stop()
    assert bal.returncode == 0 and "24 datagrams forwarded, 24 replies" in out, out
