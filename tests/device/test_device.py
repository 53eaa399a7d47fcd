"""device/: the torch-free client over sim://, a pty pair and UDP, retries, refusals, the CLI."""
import json
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from codec.wire.frame import ErrorCode
from device.sources import array_samples


def _snn(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "snn", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def test_images():
    from codec.datasets import load_dataset

    test = load_dataset("fmnist:test").take(40)
    return test.images, test.labels


def _client(encoder_path, url, **kw):
    from channel.links import get_link
    from channel.transports import open_transport
    from codec.wire.keys import DeviceKey
    from device.client import DeviceClient
    from device.encoder import OnnxEncoder

    enc = OnnxEncoder(encoder_path)
    transport = open_transport(url)
    kw.setdefault("key", DeviceKey(1, bytes(16), None))
    kw.setdefault("mtu", 222)
    kw.setdefault("link", get_link("lora-sf7"))
    return DeviceClient(enc, transport, **kw), transport


def test_device_package_never_imports_torch():
    code = ("import sys, device, device.encoder, device.client, device.cli, device.api, device.sources, "
            "device.image_stream, channel.transports, channel.links\n"
            "from device import connect\n"
            "assert 'torch' not in sys.modules, 'torch was imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_encoder_reads_metadata_and_packs(int8_encoder, test_images):
    from codec.wire.packing import unpack_symbols
    from device.encoder import OnnxEncoder

    enc = OnnxEncoder(int8_encoder)
    sym = enc.encode(test_images[0][:3])
    assert sym.dtype == np.uint8 and sym.shape == (3, enc.info.n_symbols)
    payload = enc.pack(sym[0])
    assert len(payload) == enc.info.payload_bytes
    assert (unpack_symbols(np.frombuffer(payload, np.uint8), enc.info.levels, enc.info.n_symbols) == sym[0]).all()


def test_not_an_encoder_is_refused(tmp_path, int8_encoder):
    from device.encoder import OnnxEncoder
    from snn.errors import SnnError

    bad = tmp_path / "x.onnx"
    bad.write_bytes(b"nope")
    with pytest.raises(SnnError):
        OnnxEncoder(bad)
    with pytest.raises(SnnError, match="does not exist"):
        OnnxEncoder(tmp_path / "missing.onnx")


def test_sim_round_trip_with_fragments(int8_encoder, test_images, responder_factory):
    images, labels = test_images
    responder_factory("sim://dev-sim", drop_first=False)
    client, t = _client(int8_encoder, "sim://dev-sim", send_truth=True, window=4, timeout=2.0)
    try:
        client.run(array_samples(images[:20], labels[:20]))
    finally:
        t.close()
    s = client.summary()
    assert s["answered"] == 20 and s["accuracy"] == 1.0 and s["lost"] == 0
    # the tiny fixture's 588-byte payload needs several LoRa SF7 frames
    assert s["frames_per_inference"] > 1 and s["bytes_on_air_per_inference"] > 588
    assert s["airtime_ms_per_inference"] > 0 and s["encode_p50_ms"] > 0 and s["rtt_p50_ms"] > 0


def test_lost_replies_are_resent_under_new_counters(int8_encoder, test_images, responder_factory):
    images, labels = test_images
    r = responder_factory("sim://dev-retry", drop_first=True)
    client, t = _client(int8_encoder, "sim://dev-retry", send_truth=True, timeout=0.5, retries=3, window=3,
                        mtu=1400, link=None)
    try:
        client.run(array_samples(images[:6], labels[:6]))
    finally:
        t.close()
    s = client.summary()
    assert s["answered"] == 6 and s["resends"] >= 6
    # every transmission had its own counter (a CTR keystream is never reused), the first and the
    # resends long (all 32 bits), the rest short
    assert len(r.counters) == len(set(r.counters)) >= 12
    assert all(n >= 2 for n in r.seen.values()) and len(r.seen) == 6
    assert all(rec.attempts >= 2 and len(rec._counters) == rec.attempts for rec in client.records)


def test_forged_replies_are_ignored(int8_encoder, test_images, responder_factory):
    from codec.wire.keys import DeviceKey

    images, labels = test_images
    key = bytes(range(16))
    responder_factory("sim://dev-forged", key=key, forged=True)   # answers under another key
    client, t = _client(int8_encoder, "sim://dev-forged", key=DeviceKey(1, key, None), timeout=0.3, retries=0,
                        window=2, mtu=1400, link=None)
    try:
        client.run(array_samples(images[:4], labels[:4]))
    finally:
        t.close()
    s = client.summary()
    assert s["answered"] == 0 and s["foreign_frames"] >= 2   # every forged label was refused


def test_busy_is_retried_after_the_delay_it_names(int8_encoder, test_images, responder_factory):
    images, labels = test_images
    r = responder_factory("sim://dev-busy", error=ErrorCode.BUSY)
    client, t = _client(int8_encoder, "sim://dev-busy", timeout=5.0, retries=2, window=1, mtu=1400, link=None)
    t0 = time.monotonic()
    try:
        client.run(array_samples(images[:2], labels[:2]))
    finally:
        t.close()
    s = client.summary()
    assert s["busy"] == 4 and s["errors"] == 2 and time.monotonic() - t0 < 4
    assert len(r.counters) == 6 == len(set(r.counters))


def test_unknown_codec_stops_the_run(int8_encoder, test_images, responder_factory):
    images, labels = test_images
    responder_factory("sim://dev-refuse", error=ErrorCode.UNKNOWN_CODEC)
    client, t = _client(int8_encoder, "sim://dev-refuse", timeout=1.0)
    try:
        client.run(array_samples(images[:30], labels[:30]))
    finally:
        t.close()
    assert client.fatal and "UNKNOWN_CODEC" in client.fatal
    assert len(client.records) < 30


def test_over_a_real_pty_pair(int8_encoder, test_images, responder_factory):
    images, labels = test_images
    r = responder_factory("pty://")
    client, t = _client(int8_encoder, f"serial://{r.transport.path}?baud=115200", send_truth=True,
                        timeout=3.0, window=2)
    try:
        client.run(array_samples(images[:8], labels[:8]))
    finally:
        t.close()
    s = client.summary()
    assert s["answered"] == 8 and s["accuracy"] == 1.0
    # stream link: COBS + delimiter are counted on the air
    raw = sum(len(f) for f in client.records[0]._frames)
    assert s["bytes_on_air_per_inference"] > raw


def test_cli_over_udp_writes_contract_json(int8_encoder, responder_factory, tmp_path):
    r = responder_factory("udp://127.0.0.1:0")
    port = r.transport.local_address[1]
    out = tmp_path / "device.json"
    proc = _snn("device", "run", "--encoder", str(int8_encoder), "--to", f"udp://127.0.0.1:{port}",
                "--data", "fmnist:test", "--count", "12", "--truth", "--json", str(out), "--insecure")
    assert proc.returncode == 0, proc.stderr
    s = json.loads(out.read_text())
    for key in ("count", "answered", "accuracy", "rtt_p50_ms", "rtt_p99_ms", "encode_p50_ms"):
        assert key in s
    assert s["count"] == 12 and s["answered"] == 12 and s["accuracy"] == 1.0
    assert s["peak_rss_bytes"] > 0 and len(s["inferences"]) == 12
    assert "acc 100.00%" in proc.stdout


def test_unreachable_edge_exits_nonzero_quickly(int8_encoder, tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "d.json"
    t0 = time.monotonic()
    proc = _snn("device", "run", "--encoder", str(int8_encoder), "--to", f"udp://127.0.0.1:{port}",
                "--count", "500", "--timeout", "0.3", "--retries", "1", "--json", str(out), "--insecure",
                timeout=60)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 1
    assert "no reply" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert elapsed < 20
    s = json.loads(out.read_text())
    assert s["answered"] == 0 and s["unreachable"] is True


@pytest.mark.parametrize("args, needle", [
    (["--encoder", "{tmp}/missing.onnx", "--to", "udp://127.0.0.1:9", "--insecure"], "does not exist"),
    (["--encoder", "{enc}", "--to", "ftp://x", "--insecure"], "URL"),
    (["--encoder", "{enc}", "--to", "udp://127.0.0.1:9", "--data", "nope:x", "--insecure"], "data set"),
    (["--encoder", "{enc}", "--to", "udp://127.0.0.1:9"], "--key-file"),
    (["--encoder", "{enc}", "--to", "udp://127.0.0.1:9", "--key-file", "{tmp}/none.json"], "does not exist"),
])
def test_cli_bad_input_exit_2(int8_encoder, tmp_path, args, needle):
    proc = _snn("device", "run", *[a.format(tmp=tmp_path, enc=int8_encoder) for a in args])
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_busy_is_retried_after_a_jittered_doubling_backoff(int8_encoder, test_images, responder_factory):
    images, labels = test_images
    r = responder_factory("sim://dev-busy2", busy_first=2)     # BUSY naming 50 ms, twice per inference
    client, t = _client(int8_encoder, "sim://dev-busy2", send_truth=True, timeout=2.0, retries=3, window=2)
    try:
        client.run(array_samples(images[:4], labels[:4]))
    finally:
        t.close()
    s = client.summary()
    assert s["answered"] == 4 and client.stats["busy"] == 8
    for times in r.arrivals.values():
        first, second = times[1] - times[0], times[2] - times[1]
        assert 0.02 <= first <= 0.075 + 0.25, times     # 50 ms x [0.5, 1.5], plus a busy machine's slack
        assert 0.045 <= second <= 0.15 + 0.25, times    # doubled
    gaps = [c.busy_backoff(0) for c in (client,) for _ in range(200)]
    assert min(gaps) >= 0.025 and max(gaps) <= 0.075 and np.std(gaps) > 0.01   # jittered
    assert client.busy_backoff(30) == client.timeout                          # bounded
