"""The real edge server (uvicorn + UDP on ephemeral ports) over real sockets."""
from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
from conftest import ROOT, UdpClient, start_standin
from standin import FP_A, FP_B

from conftest import FleetDevice

from codec.wire.crypto import DeviceKeys
from codec.wire.frame import ErrorCode, Kind, encode_inference
from prometheus_client.parser import text_string_to_metric_families

OCTET = {"content-type": "application/octet-stream"}


def metric(text: str, name: str, **labels) -> float:
    """One sample of the Prometheus text, read with prometheus_client's own parser."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == str(v) for k, v in labels.items()):
                return float(sample.value)
    raise AssertionError(f"{name} {labels} not in /metrics")


def rejects(edge, reason: str) -> float:
    return metric(httpx.get(edge.http + "/metrics").text, "snn_edge_rejects_total", reason=reason)


def frame(first: int, device: int = 7, **kw) -> bytes:
    """One inference's single frame from a fresh counter range of this device (kw: copies, truth)."""
    return FleetDevice(device).frame(first, **kw)


# --- UDP --------------------------------------------------------------------------------------

def test_udp_reply_routes_by_provisioned_codec(udp):
    for device, first, want in ((3, 4, 4), (23, 4, 7), (3, 9, 9), (23, 8, 1)):
        dev = FleetDevice(device)
        want_counter = dev.counter
        r = udp.ask(dev, dev.frame(first))
        assert r.kind == Kind.REPLY and r.counter == want_counter
        assert r.label == want and r.confidence > 0.9 and 1e-5 <= r.ber <= 0.5


@pytest.mark.parametrize("copies", [3, 5])
def test_udp_reply_mirrors_header_copies(udp, copies):
    dev = FleetDevice(12)
    r = udp.ask(dev, dev.frame(6, copies=copies))
    assert r.kind == Kind.REPLY and r.copies == copies and r.label == 6


def test_duplicate_is_answered_once_and_counted_as_replay(udp, edge):
    dev = FleetDevice(11, counter=77)
    data = dev.frame(2)
    before = rejects(edge, "replay")
    assert udp.ask(dev, data).label == 2
    udp.send(data)
    assert udp.silent()
    assert rejects(edge, "replay") == before + 1
    assert udp.ask(dev, dev.frame(3)).label == 3     # the next counter is fine


def test_every_datagram_delivered_twice_is_answered_once(udp, edge):
    """A link that duplicates every datagram: each inference answered once, the copies counted as
    replays (one-fragment and fragmented inferences alike)."""
    dev = FleetDevice(18)
    before = rejects(edge, "replay")
    inferences = [dev.frames(k % 10) for k in range(10)] + [dev.frames(k % 10, mtu=30) for k in range(5)]
    for frames in inferences:
        for f in frames:
            udp.send(f)
            udp.send(f)
    got = []
    udp.sock.settimeout(1.0)
    try:
        while True:
            got.append(dev.read(udp.sock.recv(4096)))
    except socket.timeout:
        pass
    counters = [a.counter for a in got]
    assert len(counters) == len(set(counters)) == len(inferences)      # each answered exactly once
    assert all(a.kind == Kind.REPLY for a in got)
    assert rejects(edge, "replay") - before == sum(len(f) for f in inferences)


def test_restarted_device_with_persisted_counter_is_answered(udp):
    first = FleetDevice(13, counter=5000)
    assert udp.ask(first, first.frame(1)).label == 1
    again = FleetDevice(13, counter=5000 + 256)        # restart: the counter store skipped a block
    assert again.counter == 5256
    assert udp.ask(again, again.frame(4)).label == 4


def test_unserved_codec_gets_an_authenticated_error(udp, edge):
    dev = FleetDevice(30, counter=9)
    r = udp.ask(dev, dev.frame(1))
    assert r.kind == Kind.ERROR and r.code == ErrorCode.UNKNOWN_CODEC and r.counter >= 9
    assert rejects(edge, "unknown_codec") >= 1


def test_bad_truth_gets_an_authenticated_error(udp, edge):
    dev = FleetDevice(14, counter=3)
    r = udp.ask(dev, dev.frame(1, truth=200))
    assert r.kind == Kind.ERROR and r.code == ErrorCode.BAD_FRAME and r.detail == 3
    assert rejects(edge, "bad_truth") >= 1


@pytest.mark.parametrize("data", [b"", b"\x00", os.urandom(17), os.urandom(50), os.urandom(1400),
                                  frame(1)[:20], frame(1)[:-3], frame(1) + b"xx",
                                  FleetDevice(7, key=bytes(16)).frame(1),           # wrong key
                                  FleetDevice(5000).frame(1)])                      # unknown device
def test_udp_keyed_edge_answers_nothing_to_what_does_not_authenticate(udp, data):
    udp.send(data)
    assert udp.silent()
    dev = FleetDevice(8)
    assert udp.ask(dev, dev.frame(6)).label == 6  # still alive


def test_udp_random_flood_is_counted_silently_and_server_stays_up(udp, edge):
    reasons = ("length", "damaged", "version", "bad_frame", "auth", "rate_limited")
    before = httpx.get(edge.http + "/metrics").text
    rnd = random.Random(1)
    n = 300
    for _ in range(n):
        udp.send(os.urandom(rnd.randint(0, 300)))
    assert udp.silent(0.5)
    time.sleep(0.2)
    after = httpx.get(edge.http + "/metrics").text
    counted = sum(metric(after, "snn_edge_rejects_total", reason=r) - metric(before, "snn_edge_rejects_total", reason=r)
                  for r in reasons)
    assert counted == n
    assert httpx.get(edge.http + "/healthz").json()["status"] == "ok"


def test_a_failing_source_gets_the_cheap_path_only(tmp_path, keys_file):
    """Beyond its budget of authentication failures a source's frames are not BCH-decoded: a
    clean keyed frame from the same address still gets through, garbage costs a CRC-32."""
    server = start_standin(tmp_path, "--keys", keys_file, "--auth-failures-per-s", "5")
    client = UdpClient(server.udp)
    try:
        for _ in range(200):
            client.send(os.urandom(50))       # a length the fleet sends: decoded until limited
        assert client.silent(0.5)
        m = httpx.get(server.http + "/metrics").text
        assert metric(m, "snn_edge_rejects_total", reason="rate_limited") >= 150
        dev = FleetDevice(15)
        assert client.ask(dev, dev.frame(2)).label == 2
    finally:
        client.close()
        server.stop()


def test_a_device_over_its_rate_gets_an_authenticated_busy(tmp_path, keys_file):
    server = start_standin(tmp_path, "--keys", keys_file, "--device-rate", "5")
    client = UdpClient(server.udp)
    try:
        dev = FleetDevice(16)
        answers = [client.ask(dev, dev.frame(1)) for _ in range(14)]   # burst 10, then 5/s
        busy = [a for a in answers if a.kind == Kind.ERROR]
        assert busy and all(a.code == ErrorCode.BUSY for a in busy)
        assert sum(a.kind == Kind.REPLY for a in answers) >= 10
        other = FleetDevice(17)                                         # keyed per device
        assert client.ask(other, other.frame(2)).label == 2
    finally:
        client.close()
        server.stop()


def test_fragments_reassembled_missing_erased_late_fragment_unanswered(udp, edge):
    dev = FleetDevice(2, counter=300)
    frames = dev.frames(5, mtu=30)
    assert len(frames) > 2
    for f in reversed(frames):  # any order
        udp.send(f)
    assert dev.read(udp.recv()).label == 5
    incomplete0 = metric(httpx.get(edge.http + "/metrics").text, "snn_edge_incomplete_inferences_total")
    frames = dev.frames(5, mtu=30)
    t0 = time.monotonic()
    for f in frames[:-1]:  # the last fragment is lost: answered after the reassembly timeout
        udp.send(f)
    r = dev.read(udp.recv())
    assert r.kind == Kind.REPLY and r.counter == dev.counter - 1
    assert time.monotonic() - t0 >= 0.25
    assert metric(httpx.get(edge.http + "/metrics").text,
                  "snn_edge_incomplete_inferences_total") == incomplete0 + 1
    replays = rejects(edge, "replay")
    udp.send(frames[-1])        # late: its inference was answered already
    assert udp.silent()
    assert rejects(edge, "replay") == replays + 1


def test_header_bit_errors_set_the_ber_estimate(udp):
    clean = FleetDevice(40, counter=1)
    assert udp.ask(clean, clean.frame(1)).ber < 1e-2
    noisy = FleetDevice(41, counter=1)
    for _ in range(5):
        data = bytearray(noisy.frame(1))
        for i in (0, 3, 6, 9):  # four flipped header bits of 104: the BCH corrects them
            data[i] ^= 0x10
        r = udp.ask(noisy, bytes(data))
    assert r.ber > 0.015


def test_device_flood_keeps_table_bounded(udp, edge):
    for chunk in range(1000, 1300, 50):  # in chunks: replies must not overflow our socket buffer
        devs = [FleetDevice(d, counter=1) for d in range(chunk, chunk + 50)]
        for dev in devs:
            udp.send(dev.frame(1))
        for _ in range(50):
            udp.recv()
    stats = httpx.get(edge.http + "/v1/stats").json()
    assert stats["devices_total"] <= 64
    m = httpx.get(edge.http + "/metrics").text
    assert metric(m, "snn_edge_devices") <= 64
    assert metric(m, "snn_edge_devices_evicted_total") > 0


# --- HTTP -------------------------------------------------------------------------------------

def test_http_infer(edge):
    dev = FleetDevice(22, counter=2)
    r = httpx.post(edge.http + "/v1/infer", content=dev.frame(3, truth=6), headers=OCTET)
    assert r.status_code == 200
    body = r.json()
    assert body["label"] == 6 and body["class_name"] == "class6" and body["codec"] == FP_B.hex()
    assert dev.read(bytes.fromhex(body["reply"])).label == 6 and body["counter"] == dev.counter - 1
    assert body["truth"] == 6 and 0 <= body["confidence"] <= 1 and body["ber"] > 0
    assert set(body["timings"]) == {"queue_ms", "model_ms", "total_ms"}


@pytest.mark.parametrize("content,headers,status,reason", [
    (frame(1), {"content-type": "text/plain"}, 415, "content_type"),
    (frame(1), {}, 415, "content_type"),
    (b"", OCTET, 400, "length"),
    (os.urandom(80), OCTET, None, None),
    (frame(1)[:-1], OCTET, None, None),
    (FleetDevice(7, key=bytes(16)).frame(1), OCTET, 403, "auth"),
    (frame(1, device=30), OCTET, 404, "unknown_codec"),
    (b"\x00" * 200_000, OCTET, 413, "too_large"),
])
def test_http_bad_input_is_a_clear_problem(edge, content, headers, status, reason):
    r = httpx.post(edge.http + "/v1/infer", content=content, headers=headers)
    assert r.status_code == status if status else 400 <= r.status_code < 500
    body = r.json()
    assert body["detail"] and "Traceback" not in r.text
    if reason:
        assert body["reason"] == reason


def test_http_huge_chunked_body_is_refused(edge):
    def gen():
        for _ in range(40):
            yield b"\x00" * 4096

    r = httpx.post(edge.http + "/v1/infer", content=gen(), headers=OCTET)
    assert r.status_code == 413 and r.json()["reason"] == "too_large"


def test_http_fragment_is_refused_with_reason(edge):
    part = FleetDevice(1).frames(1, mtu=30)[0]
    r = httpx.post(edge.http + "/v1/infer", content=part, headers=OCTET)
    assert r.status_code == 422 and "fragment" in r.json()["detail"]


def test_http_codecs_health_docs_metrics(edge):
    codecs = httpx.get(edge.http + "/v1/codecs").json()
    assert {c["fingerprint"] for c in codecs} == {FP_A.hex(), FP_B.hex()}
    assert codecs[0]["payload_bits"] == 294 and codecs[0]["classes"][0] == "class0"
    health = httpx.get(edge.http + "/healthz").json()
    assert health["status"] == "ok" and health["codecs"] == 2
    assert httpx.get(edge.http + "/docs").status_code == 200
    spec = httpx.get(edge.http + "/openapi.json").json()
    assert "/v1/infer" in spec["paths"] and "application/octet-stream" in \
        spec["paths"]["/v1/infer"]["post"]["requestBody"]["content"]
    m = httpx.get(edge.http + "/metrics")
    assert m.headers["content-type"].startswith("text/plain")
    for name in ("snn_edge_frames_total", "snn_edge_rejects_total", "snn_edge_estimated_ber_bucket",
                 "snn_edge_batch_size_bucket", "snn_edge_latency_seconds_bucket",
                 "snn_edge_udp_kernel_drops"):
        assert name in m.text
    assert httpx.get(edge.http + "/nope").status_code == 404


def test_server_runs_on_asyncio_loop(edge):
    """asyncio's own loop even where uvloop is installed (uvloop measured slower for UDP here)."""
    assert edge.addresses["event_loop"] == "asyncio"


def test_metrics_count_what_was_answered(udp, edge):
    """The per-frame figures (kept as plain counters, exported at scrape time) follow the traffic."""
    before = httpx.get(edge.http + "/metrics").text
    dev = FleetDevice(900)
    for k in range(5):
        reply = udp.ask(dev, dev.frame(k, truth=k))
        assert reply.kind == Kind.REPLY and reply.label == k
    after = httpx.get(edge.http + "/metrics").text
    assert metric(after, "snn_edge_frames_total", transport="udp") - \
        metric(before, "snn_edge_frames_total", transport="udp") == 5
    assert metric(after, "snn_edge_correct_inferences_total") - \
        metric(before, "snn_edge_correct_inferences_total") == 5
    assert metric(after, "snn_edge_estimated_ber_count") - metric(before, "snn_edge_estimated_ber_count") == 5
    total = metric(after, "snn_edge_latency_seconds_count", stage="total")
    assert total >= 5 and metric(after, "snn_edge_latency_seconds_bucket", le="+Inf", stage="total") == total


# --- overload, lifecycle ------------------------------------------------------------------------

def test_overload_busy_replies_all_accounted_health_responsive(tmp_path, keys_file):
    server = start_standin(tmp_path, "--queue", "8", "--max-batch", "4", "--delay", "0.05", "--keys", keys_file)
    client = UdpClient(server.udp)
    devs = [FleetDevice(1 + d) for d in range(4)]
    try:
        n = 200
        for i in range(n):
            client.send(devs[i % 4].frame(i % 8))
        t = time.monotonic()
        health = httpx.get(server.http + "/healthz", timeout=2.0)
        assert health.status_code == 200 and time.monotonic() - t < 1.0
        answered = busy = 0
        for _ in range(n):
            data = client.recv(timeout=10)
            r = next(d.read(data) for d in devs if int.from_bytes(data[1:3], "big") == d.keys.device_id)
            if r.kind == Kind.REPLY:
                answered += 1
            else:
                assert r.code == ErrorCode.BUSY
                busy += 1
        assert answered + busy == n and busy > 0 and answered >= 8
        m = httpx.get(server.http + "/metrics").text
        assert metric(m, "snn_edge_rejects_total", reason="busy") == busy
        r = httpx.post(server.http + "/v1/infer", content=devs[0].frame(1), headers=OCTET)
        assert r.status_code in (200, 503)
    finally:
        client.close()
        server.stop()


def test_sigterm_drains_and_exits_within_5s(tmp_path, keys_file):
    server = start_standin(tmp_path, "--delay", "0.02", "--keys", keys_file)
    client = UdpClient(server.udp)
    dev = FleetDevice(1)
    for i in range(50):
        client.send(dev.frame(1))
    time.sleep(0.05)
    elapsed = server.stop()
    client.close()
    assert elapsed < 5.0
    assert server.proc.returncode == 0, server.log()
    assert "Traceback" not in server.log()


def _snn(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "snn", *args], cwd=str(ROOT), capture_output=True,
                          text=True, timeout=timeout)


def test_cli_port_in_use_is_one_line_and_exit_2():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = _snn("edge", "serve", "--http", f"127.0.0.1:{port}", "--udp", "127.0.0.1:0", "--insecure")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "in use" in lines[0] and str(port) in lines[0], r.stderr
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        r = _snn("edge", "serve", "--http", "127.0.0.1:0", "--udp", f"127.0.0.1:{port}", "--insecure")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "udp" in r.stderr


def test_cli_bad_arguments_exit_2():
    r = _snn("edge", "serve", "--http", "nonsense", "--udp", "none")
    assert r.returncode == 2 and "HOST:PORT" in r.stderr
    r = _snn("edge", "serve", "--http", "127.0.0.1:0", "--udp", "none", "--bundle", "/nonexistent.snn",
             "--insecure")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = _snn("edge", "serve", "--http", "127.0.0.1:0", "--udp", "none")
    assert r.returncode == 2 and "--keys" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_insecure_edge_answers_the_all_zero_key(tmp_path):
    server = start_standin(tmp_path, "--insecure")
    client = UdpClient(server.udp)
    try:
        dev = FleetDevice(77, key=bytes(16))
        assert client.ask(dev, dev.frame(5)).label == 5
        assert "INSECURE" in server.log()
    finally:
        client.close()
        server.stop()


def test_http_concurrent_requests(edge):
    results = []

    def worker(k):
        dev = FleetDevice(500 + k)
        with httpx.Client() as c:
            for i in range(10):
                r = c.post(edge.http + "/v1/infer", content=dev.frame(k % 10), headers=OCTET)
                results.append((r.status_code, r.json()["label"], k % 10))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 80 and all(s == 200 and got == want for s, got, want in results)
