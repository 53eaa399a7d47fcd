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
from standin import FP_A, FP_B, payload_for

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


def frame(first: int, fp: bytes = FP_A, device: int = 7, seq: int = 1, **kw) -> bytes:
    payload, bits = payload_for(first)
    return encode_inference(payload, bits, fp, device, seq, **kw)[0]


# --- UDP --------------------------------------------------------------------------------------

def test_udp_reply_routes_by_fingerprint(udp):
    for fp, first, want in ((FP_A, 4, 4), (FP_B, 4, 7), (FP_A, 9, 9), (FP_B, 8, 1)):
        r = udp.ask(frame(first, fp, device=3, seq=first))
        assert r.kind == Kind.REPLY and r.fingerprint == fp and (r.device_id, r.seq) == (3, first)
        reply = r.reply()
        assert reply.label == want and reply.confidence > 0.9
        assert 1e-5 <= reply.ber <= 0.5


@pytest.mark.parametrize("copies", [3, 5])
def test_udp_reply_mirrors_header_copies(udp, copies):
    r = udp.ask(frame(6, device=12, seq=copies, header_copies=copies))
    assert r.kind == Kind.REPLY and r.header_copies == copies and r.reply().label == 6


def test_udp_retry_of_same_seq_is_answered_again(udp):
    data = frame(2, device=11, seq=77)
    assert udp.ask(data).reply().label == 2
    assert udp.ask(data).reply().label == 2


def test_udp_unknown_fingerprint_gets_error(udp, edge):
    r = udp.ask(frame(1, b"\x01\x02\x03\x04", device=5, seq=9))
    assert r.kind == Kind.ERROR and (r.device_id, r.seq) == (5, 9)
    code, reason = r.error()
    assert code == ErrorCode.UNKNOWN_CODEC and "01020304" in reason and FP_A.hex() in reason
    assert metric(httpx.get(edge.http + "/metrics").text, "snn_edge_rejects_total",
                  reason="unknown_codec") >= 1


@pytest.mark.parametrize("data", [b"", b"\x00", os.urandom(17), os.urandom(64), os.urandom(1400),
                                  frame(1)[:20], frame(1)[:-3], frame(1) + b"xx"])
def test_udp_bad_input_gets_error_and_listener_survives(udp, data):
    udp.send(data)
    r = udp.recv()
    assert r.kind == Kind.ERROR and r.error()[0] == ErrorCode.BAD_FRAME
    assert udp.ask(frame(6, seq=1234)).reply().label == 6  # still alive


def test_udp_random_flood_is_counted_and_server_stays_up(udp, edge):
    before = httpx.get(edge.http + "/metrics").text
    rejects0 = sum(metric(before, "snn_edge_rejects_total", reason=r) for r in ("bad_frame", "crc"))
    rnd = random.Random(1)
    n, got = 300, 0
    for _ in range(n // 50):  # in chunks: replies must not overflow our socket buffer
        for _ in range(50):
            udp.send(os.urandom(rnd.randint(0, 300)))
        for _ in range(50):
            assert udp.recv().kind == Kind.ERROR
            got += 1
    after = httpx.get(edge.http + "/metrics").text
    rejects1 = sum(metric(after, "snn_edge_rejects_total", reason=r) for r in ("bad_frame", "crc"))
    assert got == n and rejects1 - rejects0 == n
    assert httpx.get(edge.http + "/healthz").json()["status"] == "ok"


def test_fragments_reassembled_and_missing_fragment_erased(udp, edge):
    payload, bits = payload_for(5)
    frames = encode_inference(payload, bits, FP_A, 21, 3, mtu=50)
    assert len(frames) > 2
    for f in reversed(frames):  # any order
        udp.send(f)
    r = udp.recv()
    assert r.reply().label == 5
    incomplete0 = metric(httpx.get(edge.http + "/metrics").text, "snn_edge_incomplete_inferences_total")
    t0 = time.monotonic()
    for f in frames[:-1]:  # the last fragment is lost: answered after the reassembly timeout
        udp.send(f)
    r = udp.recv()
    assert r.kind == Kind.REPLY and (r.device_id, r.seq) == (21, 3)
    assert time.monotonic() - t0 >= 0.25
    assert metric(httpx.get(edge.http + "/metrics").text,
                  "snn_edge_incomplete_inferences_total") == incomplete0 + 1


def test_pilots_and_snr_hint_set_ber(udp):
    clean = udp.ask(frame(1, device=40, seq=1, pilot_len=16)).reply().ber
    assert clean < 1e-3
    noisy = bytearray(frame(1, device=41, seq=1, pilot_len=16))
    for i in range(31, 31 + 16):  # flip one bit in every pilot byte: 16 of 128 pilot bits
        noisy[i] ^= 0x01
    assert udp.ask(bytes(noisy)).reply().ber > 0.05
    weak = udp.ask(frame(1, device=42, seq=1, pilot_len=0, snr_hint=-3)).reply().ber
    assert weak > 0.05  # BPSK at -3 dB: ~0.16


def test_device_flood_keeps_table_bounded(udp, edge):
    for chunk in range(1000, 1300, 50):  # in chunks: replies must not overflow our socket buffer
        for dev in range(chunk, chunk + 50):
            udp.send(frame(1, device=dev, seq=1))
        for _ in range(50):
            udp.recv()
    stats = httpx.get(edge.http + "/v1/stats").json()
    assert stats["devices_total"] <= 64
    m = httpx.get(edge.http + "/metrics").text
    assert metric(m, "snn_edge_devices") <= 64
    assert metric(m, "snn_edge_devices_evicted_total") > 0


# --- HTTP -------------------------------------------------------------------------------------

def test_http_infer(edge):
    r = httpx.post(edge.http + "/v1/infer", content=frame(3, FP_B, device=9, seq=2, truth=6),
                   headers=OCTET)
    assert r.status_code == 200
    body = r.json()
    assert body["label"] == 6 and body["class_name"] == "class6" and body["codec"] == FP_B.hex()
    assert body["truth"] == 6 and 0 <= body["confidence"] <= 1 and body["ber"] > 0
    assert set(body["timings"]) == {"queue_ms", "model_ms", "total_ms"}


@pytest.mark.parametrize("content,headers,status,reason", [
    (frame(1), {"content-type": "text/plain"}, 415, "content_type"),
    (frame(1), {}, 415, "content_type"),
    (b"", OCTET, 400, "bad_frame"),
    (os.urandom(80), OCTET, 400, None),
    (frame(1)[:-1], OCTET, 400, "bad_frame"),
    (frame(1, b"\xde\xad\xbe\xef"), OCTET, 404, "unknown_codec"),
    (b"\x00" * 200_000, OCTET, 413, "too_large"),
])
def test_http_bad_input_is_a_clear_problem(edge, content, headers, status, reason):
    r = httpx.post(edge.http + "/v1/infer", content=content, headers=headers)
    assert r.status_code == status
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
    payload, bits = payload_for(1)
    part = encode_inference(payload, bits, FP_A, 1, 1, mtu=50)[0]
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
    for k in range(5):
        reply = udp.ask(frame(k, FP_A, device=900, seq=k, truth=k))
        assert reply.kind == Kind.REPLY and reply.reply().label == k
    after = httpx.get(edge.http + "/metrics").text
    assert metric(after, "snn_edge_frames_total", transport="udp") - \
        metric(before, "snn_edge_frames_total", transport="udp") == 5
    assert metric(after, "snn_edge_correct_inferences_total") - \
        metric(before, "snn_edge_correct_inferences_total") == 5
    assert metric(after, "snn_edge_estimated_ber_count") - metric(before, "snn_edge_estimated_ber_count") == 5
    total = metric(after, "snn_edge_latency_seconds_count", stage="total")
    assert total >= 5 and metric(after, "snn_edge_latency_seconds_bucket", le="+Inf", stage="total") == total


# --- overload, lifecycle ------------------------------------------------------------------------

def test_overload_busy_replies_all_accounted_health_responsive(tmp_path):
    # a deadline long enough that the queue bound, not the deadline, refuses here
    server = start_standin(tmp_path, "--queue", "8", "--max-batch", "4", "--delay", "0.05",
                           "--deadline-ms", "60000")
    client = UdpClient(server.udp)
    try:
        n = 200
        for i in range(n):
            client.send(frame(i % 8, device=1 + i % 4, seq=i))
        t = time.monotonic()
        health = httpx.get(server.http + "/healthz", timeout=2.0)
        assert health.status_code == 200 and time.monotonic() - t < 1.0
        answered = busy = 0
        for _ in range(n):
            r = client.recv(timeout=10)
            if r.kind == Kind.REPLY:
                answered += 1
            else:
                assert r.error()[0] == ErrorCode.BUSY
                busy += 1
        assert answered + busy == n and busy > 0 and answered >= 8
        m = httpx.get(server.http + "/metrics").text
        assert metric(m, "snn_edge_rejects_total", reason="busy") == busy
        r = httpx.post(server.http + "/v1/infer", content=frame(1), headers=OCTET)
        assert r.status_code in (200, 503)
    finally:
        client.close()
        server.stop()


def test_sigterm_drains_and_exits_within_5s(tmp_path):
    server = start_standin(tmp_path, "--delay", "0.02")
    client = UdpClient(server.udp)
    for i in range(50):
        client.send(frame(1, seq=i))
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
        r = _snn("edge", "serve", "--http", f"127.0.0.1:{port}", "--udp", "127.0.0.1:0")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "in use" in lines[0] and str(port) in lines[0], r.stderr
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        r = _snn("edge", "serve", "--http", "127.0.0.1:0", "--udp", f"127.0.0.1:{port}")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "udp" in r.stderr


def test_cli_bad_arguments_exit_2():
    r = _snn("edge", "serve", "--http", "nonsense", "--udp", "none")
    assert r.returncode == 2 and "HOST:PORT" in r.stderr
    r = _snn("edge", "serve", "--http", "127.0.0.1:0", "--udp", "none", "--bundle", "/nonexistent.snn")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_http_concurrent_requests(edge):
    results = []

    def worker(k):
        with httpx.Client() as c:
            for i in range(10):
                r = c.post(edge.http + "/v1/infer", content=frame(k % 10, device=500 + k, seq=i),
                           headers=OCTET)
                results.append((r.status_code, r.json()["label"], k % 10))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 80 and all(s == 200 and got == want for s, got, want in results)


def test_overload_sheds_by_deadline_answered_frames_stay_fast(tmp_path):
    """A burst far beyond what a slow model answers in 80 ms: the excess is refused BUSY at once,
    what is answered is answered within about the deadline, and the server's counters agree."""
    server = start_standin(tmp_path, "--max-batch", "4", "--delay", "0.02", "--deadline-ms", "80")
    client = UdpClient(server.udp)
    try:
        n = 200
        sent_at = {}
        for i in range(n):
            sent_at[i] = time.perf_counter()
            client.send(frame(i % 8, device=1 + i % 4, seq=i))
        answered, busy, rtt = 0, 0, []
        for _ in range(n):
            r = client.recv(timeout=10)
            if r.kind == Kind.REPLY:
                answered += 1
                rtt.append(time.perf_counter() - sent_at[r.seq])
            else:
                assert r.error()[0] == ErrorCode.BUSY
                busy += 1
        assert answered + busy == n and busy > n // 2 and answered >= 4
        assert max(rtt) < 0.08 + 0.1, rtt          # the deadline, plus this busy machine's slack
        m = httpx.get(server.http + "/metrics").text
        assert metric(m, "snn_edge_rejects_total", reason="busy") == busy
    finally:
        client.close()
        server.stop()


def test_saturated_edge_lets_the_kernel_drop_and_counts_every_datagram(tmp_path):
    """Far beyond a slow model with a shallow UDP queue: the listener stops reading while even a
    fresh frame would be refused, the kernel drops the overflow, and the server's counters
    account for every datagram (answered + rejected + kernel drops = sent)."""
    server = start_standin(tmp_path, "--max-batch", "4", "--delay", "0.02", "--deadline-ms", "60",
                           "--udp-queue", "64")
    client = UdpClient(server.udp)
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    try:
        n = 3000
        for i in range(n):
            client.send(frame(i % 8, device=1 + i % 16, seq=i))
        got = {Kind.REPLY: 0, Kind.ERROR: 0}
        try:
            while True:
                got[client.recv(timeout=1.5).kind] += 1
        except socket.timeout:
            pass
        m = httpx.get(server.http + "/metrics").text
        answered = metric(m, "snn_edge_inferences_total", codec="standin-5e5e0001")
        rejected = sum(metric(m, "snn_edge_rejects_total", reason=r) for r in ("busy",))
        drops = metric(m, "snn_edge_udp_kernel_drops")
        assert drops > 0 and answered >= 4
        assert answered + rejected + drops == n, (answered, rejected, drops)
        assert got[Kind.REPLY] == answered and got[Kind.ERROR] == rejected
    finally:
        client.close()
        server.stop()
