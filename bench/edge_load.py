"""`snn bench edge`: a load generator of our own against a real `snn edge serve` on loopback.

The server runs as its own process (``python -m snn edge serve`` on ephemeral ports); this
process generates load with non-blocking sockets and no torch in the loop. Phases, each
``--duration`` seconds:

1. ``model``: the decoder + task head alone, batched (``--max-batch``), in this process, one
   torch thread like the server: ``model_fps`` — the ceiling the server is compared with (two
   slices, just before and just after phase 2; their median).
2. ``udp_max``: closed loop, ``--window`` frames in flight (each answered frame is sent again
   at once): the sustained UDP throughput ``throughput_fps``.
3. ``udp_rate``: open loop at ``--rate`` frames/s (``--garbage`` fraction of bad frames mixed
   in, sent from a second socket: another source address): reply latency p50/p99 per frame,
   matched by frame counter.
4. ``http``: ``--http-clients`` keep-alive connections posting frames to /v1/infer.

5. ``overload`` (with ``--overload K``): open loop at K x the closed-loop throughput of phase 2
   (same run): the rate really sent, goodput against that capacity, p50/p99 of answered frames,
   and the accounting sent = answered + refused + kernel drops from the server's own counters
   (/metrics, parsed with prometheus_client).

Phase 1 and the server use the same engine (``--engine``, default onnx). ``--engines onnx,torch``
adds a side-by-side comparison: one server per engine, closed loops alternated (``--reps``
each), and the model alone per engine, in the same run.

The server is keyed (protocol v2): the benchmark provisions keys for its devices, and every
frame it sends takes a fresh frame counter (a resent datagram would be a replay). Every frame
must end answered (REPLY), refused with an authenticated ERROR (e.g. BUSY), refused silently
(garbage, replays: the server answers nothing to what fails authentication, so these are read
from its ``snn_edge_rejects_total`` counters) or dropped by the kernel
(``snn_edge_udp_kernel_drops``): the benchmark checks sent = answered + rejected + kernel drops
and reports ``lost`` otherwise. ``--soak`` runs phase 3 for that many seconds and reports the
server's RSS growth instead of the other phases.
"""
from __future__ import annotations

import asyncio
import gc
import json
import os
import random
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from codec.wire.crypto import DOWNLINK, xor_keystream
from codec.wire.frame import BLOCK_BYTES, REPLY_BLOCK_BYTES, ErrorCode, Kind, encode_inference
from codec.wire.keys import new_keys, write_keys
from codec.wire.packing import pack_symbols
from snn.errors import SnnError

GARBAGE_DEVICE = 0xFFFF
# the server's silent refusals (docs/PROTOCOL.md §6): read from /metrics, since they get no reply
SILENT_REASONS = ("length", "damaged", "version", "kind", "fragment", "auth", "bad_length", "replay", "late",
                  "duplicate", "rate_limited", "expired", "shed")


# --- frames ------------------------------------------------------------------------------------

class FrameMaker:
    """Valid, authenticated DATA frames with random symbols for one codec, and garbage.

    Every frame takes the next counter of one sequence shared by all devices (so a counter's
    low 16 bits, which a reply echoes, identify the frame among the last 65,536 made); device =
    1 + counter % n_devices, so each device's counters only grow."""

    def __init__(self, codec: dict, keys: dict[int, bytes], seed: int = 0, n_devices: int = 64,
                 start: int = 1) -> None:
        self.fp = bytes.fromhex(codec["fingerprint"])
        self.levels = int(codec["levels"])
        self.n_symbols = int(codec["n_symbols"])
        self.keys = keys
        self.n_devices = n_devices
        self.counter = start
        self.rng = np.random.default_rng(seed)
        self._payloads = [pack_symbols(self.rng.integers(0, self.levels, self.n_symbols), self.levels)
                          .tobytes() for _ in range(64)]
        self._bad_source = self.frame()

    def frame(self) -> bytes:
        """The next frame (a fresh counter)."""
        counter = self.counter
        self.counter += 1
        device = 1 + counter % self.n_devices
        return encode_inference(self._payloads[counter % len(self._payloads)], key=self.keys[device],
                                device_id=device, fingerprint=self.fp, counter=counter)[0]

    def device_of(self, counter: int) -> int:
        return 1 + counter % self.n_devices

    def garbage(self, rnd: random.Random) -> bytes:
        """Random bytes, a truncated frame, or a frame with its header smashed beyond repair."""
        pick = rnd.random()
        if pick < 0.4:
            return os.urandom(rnd.randint(0, 120))
        if pick < 0.7:
            return self._bad_source[: rnd.randint(0, len(self._bad_source) - 1)]
        data = bytearray(self._bad_source)
        data[:BLOCK_BYTES] = os.urandom(BLOCK_BYTES)
        return bytes(data)


def provision(path: Path, n_devices: int) -> dict[int, bytes]:
    """A keys file for devices 1..n_devices (any served codec); their keys by id."""
    keys = new_keys(list(range(1, n_devices + 1)))
    write_keys(path, keys, force=True)
    return {k.device_id: k.key for k in keys}


def _classify(data: bytes):
    """(kind, counter low 16 bits) of a reply, cheaply (loopback: no BCH decoding or MIC check;
    the fields sit at fixed places of a clean first block)."""
    if len(data) < REPLY_BLOCK_BYTES or len(data) % REPLY_BLOCK_BYTES:
        return None
    return (data[9] >> 4) & 3, int.from_bytes(data[:2], "big")


def error_code(data: bytes, maker: FrameMaker, counter: int) -> int:
    """The code of an ERROR reply to `counter` (decrypted with its device's key; no MIC check)."""
    device = maker.device_of(counter)
    return xor_keystream(maker.keys[device], DOWNLINK, device, counter, 0, data[2:5])[0]


def _waiting_replies(sock: socket.socket):
    """Every datagram waiting on non-blocking `sock` that looks like a reply: (kind, low, data)."""
    recv = sock.recv
    while True:
        try:
            data = recv(2048)
        except BlockingIOError:
            return
        info = _classify(data)
        if info is not None:
            yield info[0], info[1], data


def _drain(sock: socket.socket) -> int:
    n = 0
    while True:
        try:
            sock.recv(2048)
        except BlockingIOError:
            return n
        n += 1


def _percentiles(lat_ms: list[float]) -> dict:
    if not lat_ms:
        return {"p50_ms": None, "p99_ms": None, "mean_ms": None, "max_ms": None}
    arr = np.asarray(lat_ms)
    return {"p50_ms": round(float(np.percentile(arr, 50)), 3),
            "p99_ms": round(float(np.percentile(arr, 99)), 3),
            "mean_ms": round(float(arr.mean()), 3), "max_ms": round(float(arr.max()), 3)}


def _udp_socket(target: tuple[str, int]) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, 4 << 20)
        except OSError:
            pass
    sock.connect(target)
    sock.setblocking(False)
    return sock


# --- UDP: closed loop (throughput) ---------------------------------------------------------------

def udp_closed_loop(target: tuple[str, int], maker: FrameMaker, duration: float, window: int = 256,
                    warmup: float = 1.0, grace: float = 5.0, busy_backoff: float = 0.005) -> dict:
    """`window` frames in flight; each answered frame is followed at once by a new one, a refused
    (BUSY) one after a jittered back-off that doubles with each BUSY in a row (`busy_backoff` x
    2^k, at most 64x; as a device backs off), so the window shrinks to what the edge admits and
    the loop measures what the edge answers rather than how fast it can refuse."""
    import heapq

    sock = _udp_socket(target)
    backoff: list[tuple[float, int]] = []     # (due, slot) of refused frames waiting to go again
    busy_run = [0] * window                    # BUSY replies in a row per slot
    rnd = random.Random(0)
    slot_of: dict[int, int] = {}      # counter low 16 bits -> slot
    sent_at = [0.0] * window
    in_flight = [False] * window
    sent = answered = rejected = 0
    lat: list[float] = []
    free = list(range(window))
    t0 = time.perf_counter()
    t_measure, t_end = t0 + warmup, t0 + warmup + duration
    measured_answers = 0
    while True:
        now = time.perf_counter()
        while backoff and backoff[0][0] <= now:
            free.append(heapq.heappop(backoff)[1])
        if now < t_end:
            while free:
                j = free.pop()
                low = maker.counter & 0xFFFF
                frame = maker.frame()
                try:
                    sock.send(frame)
                except BlockingIOError:
                    free.append(j)
                    break
                slot_of[low] = j
                sent_at[j] = time.perf_counter()
                in_flight[j] = True
                sent += 1
        elif not any(in_flight) or now > t_end + grace:
            break
        timeout = 0.05 if not backoff else max(0.0, min(0.05, backoff[0][0] - now))
        ready, _, _ = select.select([sock], [], [], timeout)
        if not ready:
            continue
        for kind, low, _ in _waiting_replies(sock):
            j = slot_of.pop(low, -1)
            if j < 0 or not in_flight[j]:
                continue
            in_flight[j] = False
            t = time.perf_counter()
            if kind == Kind.REPLY:
                answered += 1
                if t_measure <= t <= t_end:
                    measured_answers += 1
                    lat.append((t - sent_at[j]) * 1e3)
                busy_run[j] = 0
                free.append(j)
            else:
                rejected += 1
                delay = busy_backoff * (1 << min(busy_run[j], 6)) * rnd.uniform(0.5, 1.5)
                busy_run[j] += 1
                heapq.heappush(backoff, (t + delay, j))
    sock.close()
    lost = sent - answered - rejected
    return {"sent": sent, "answered": answered, "rejected": rejected, "lost": lost,
            "window": window, "duration_s": duration,
            "throughput_fps": round(measured_answers / duration, 1), **_percentiles(lat)}


# --- UDP: open loop (latency at an offered rate, soak) -----------------------------------------

def udp_open_loop(target: tuple[str, int], maker: FrameMaker, rate: float, duration: float,
                  garbage: float = 0.0, grace: float = 5.0, seed: int = 0,
                  on_tick=None, silent_rejects=None) -> dict:
    """Send `rate` frames/s for `duration` s (a `garbage` fraction of them bad, from a second
    socket), collect replies. `silent_rejects()` reads the server's count of frames it refused
    without a reply; without it garbage cannot be accounted."""
    n = int(rate * duration)
    rnd = random.Random(seed)
    is_garbage = [rnd.random() < garbage for _ in range(n)]
    frames: list[bytes] = []
    first = maker.counter
    for g in is_garbage:
        frames.append(maker.garbage(rnd) if g else maker.frame())
    n_valid = maker.counter - first
    sent_at = np.zeros(max(1, n_valid), dtype=np.float64)
    done = np.zeros(max(1, n_valid), dtype=bool)
    lat: list[float] = []
    silent0 = silent_rejects() if silent_rejects else 0.0
    sock = _udp_socket(target)
    bad_sock = _udp_socket(target)
    sent = sent_valid = sent_garbage = answered = rejected = busy = garbage_answered = 0
    t0 = time.perf_counter()
    i = valid_i = 0
    last_tick = t0
    t_last = None
    t_sent = t0
    while True:
        now = time.perf_counter()
        if i < n:
            # at most 64 sends between two looks at the replies (a load generator that falls
            # behind must not let replies wait in its own socket)
            due = min(n, int((now - t0) * rate) + 1, i + 64)
            while i < due:
                try:
                    (bad_sock if is_garbage[i] else sock).send(frames[i])
                except BlockingIOError:
                    break
                if is_garbage[i]:
                    sent_garbage += 1
                else:
                    sent_at[valid_i] = time.perf_counter()
                    valid_i += 1
                    sent_valid += 1
                i += 1
                sent += 1
            t_sent = time.perf_counter()
            next_due = t0 + (i / rate) if i < n else now + 0.01
            timeout = max(0.0, min(0.01, next_due - time.perf_counter()))
        else:
            if t_last is None:
                t_last = now
            if answered + rejected >= sent_valid or now > t_last + grace:
                break
            timeout = 0.02
        if on_tick is not None and now - last_tick >= 1.0:
            on_tick(now - t0)
            last_tick = now
        ready, _, _ = select.select([sock], [], [], timeout)
        if not ready:
            continue
        garbage_answered += _drain(bad_sock)   # must stay 0: garbage gets no reply
        for kind, low, data in _waiting_replies(sock):
            # the frame with these low bits: the newest sent (replies come within 65,536 frames)
            j = (valid_i - 1) - ((((first + valid_i - 1) & 0xFFFF) - low) & 0xFFFF)
            if not 0 <= j < valid_i or done[j]:
                continue
            done[j] = True
            if kind == Kind.REPLY:
                answered += 1
                lat.append((time.perf_counter() - sent_at[j]) * 1e3)
            else:
                rejected += 1
                busy += error_code(data, maker, first + j) == ErrorCode.BUSY
    if silent_rejects is not None:   # the server's silent refusals settle within a moment
        deadline = time.perf_counter() + 2.0
        while True:
            silent = int(silent_rejects() - silent0)
            if answered + rejected + silent >= sent or time.perf_counter() > deadline:
                break
            time.sleep(0.05)
    else:
        silent = 0
    elapsed = time.perf_counter() - t0
    sock.close()
    bad_sock.close()
    return {"offered_fps": rate, "duration_s": duration, "sent": sent, "sent_valid": sent_valid,
            "sent_garbage": sent_garbage, "answered": answered, "rejected": rejected + silent, "busy": busy,
            "refused_silently": silent, "valid_unanswered": sent_valid - answered - rejected,
            "garbage_answered": garbage_answered, "lost": sent - answered - rejected - silent,
            "sent_fps": round(sent / max(t_sent - t0, 1e-9), 1),
            "throughput_fps": round(answered / max(duration, 1e-9), 1),
            "elapsed_s": round(elapsed, 2), **_percentiles(lat)}


# --- HTTP ----------------------------------------------------------------------------------------

async def _http_client(host: str, port: int, maker: FrameMaker, t_end: float, out: dict) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < t_end:
            body = maker.frame()   # a fresh counter per request: a repeated frame is a replay (409)
            t = time.perf_counter()
            writer.write((f"POST /v1/infer HTTP/1.1\r\nHost: {host}:{port}\r\n"
                          f"Content-Type: application/octet-stream\r\nContent-Length: {len(body)}\r\n\r\n"
                          ).encode() + body)
            out["sent"] += 1
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            if status == 200:
                out["answered"] += 1
                out["lat"].append((time.perf_counter() - t) * 1e3)
            else:
                out["rejected"] += 1
                out["status"][status] = out["status"].get(status, 0) + 1
    finally:
        writer.close()


def http_load(url: str, maker: FrameMaker, clients: int, duration: float, warmup: float = 1.0) -> dict:
    """`clients` keep-alive connections posting frames to /v1/infer as fast as answered."""
    host, port = url.split("//", 1)[1].rsplit(":", 1)
    port = int(port)

    async def main(seconds: float, out: dict):
        t_end = time.perf_counter() + seconds
        await asyncio.gather(*(_http_client(host, port, maker, t_end, out) for c in range(clients)))

    if warmup:
        asyncio.run(main(warmup, {"sent": 0, "answered": 0, "rejected": 0, "lat": [], "status": {}}))
    out = {"sent": 0, "answered": 0, "rejected": 0, "lat": [], "status": {}}
    t0 = time.perf_counter()
    asyncio.run(main(duration, out))
    elapsed = time.perf_counter() - t0
    lat = out.pop("lat")
    return {"clients": clients, "duration_s": duration, **out,
            "lost": out["sent"] - out["answered"] - out["rejected"],
            "throughput_rps": round(out["answered"] / elapsed, 1), **_percentiles(lat)}


# --- the model alone -----------------------------------------------------------------------------

_LOADED: dict = {}


def measure_model_fps(bundles: list[str] | None, batch: int, duration: float, threads: int = 1,
                      engine: str = "onnx") -> dict:
    """Decoder + task head alone, batched, random payloads, on the server's engine: inferences/s."""
    from edge.codecs import load_codecs

    key = (tuple(bundles or ()), engine, threads)
    if key not in _LOADED:
        _LOADED[key] = next(iter(load_codecs(bundles, engine=engine, threads=threads)))
    codec = _LOADED[key]
    rng = np.random.default_rng(0)
    payloads = [pack_symbols(rng.integers(0, codec.levels, codec.n_symbols), codec.levels).tobytes()
                for _ in range(batch)]
    bers = np.full(batch, 1e-3, dtype=np.float32)
    for _ in range(3):
        codec.infer(payloads, None, bers)
    n, t0, c0 = 0, time.perf_counter(), _own_cpu_s()
    times = []
    while time.perf_counter() - t0 < duration:
        t = time.perf_counter()
        codec.infer(payloads, None, bers)
        times.append(time.perf_counter() - t)
        n += batch
    elapsed = time.perf_counter() - t0
    cpu = _own_cpu_s() - c0
    return {"model_fps": round(n / elapsed, 1), "batch": batch, "threads": threads, "engine": engine,
            "cpu_us_per_frame": round(1e6 * cpu / n, 1), "cpu_share": round(cpu / elapsed, 2),
            "batch_ms_median": round(1e3 * float(np.median(times)), 3), "codec": codec.describe()}


# --- the server under test -----------------------------------------------------------------------

def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


@contextmanager
def _server_accounting(addr: dict, out: dict):
    """Add the datagrams the kernel dropped for the server during the block, and those it
    refused without a reply, to `out` (the closed loop cannot see either)."""
    before, silent0 = server_counts(addr), silent_refusals(addr)
    yield
    time.sleep(0.1)
    out["kernel_drops"] = int(server_counts(addr)["kernel_drops"] - before["kernel_drops"])
    out["server_refused_silently"] = int(silent_refusals(addr) - silent0)


@contextmanager
def _cpu_account(pid: int, out: dict, key: str = "answered"):
    """Add server and load-generator CPU microseconds per answered frame to `out`."""
    s0, c0, w0 = _cpu_s(pid), _own_cpu_s(), time.perf_counter()
    yield
    s1, c1, w1 = _cpu_s(pid), _own_cpu_s(), time.perf_counter()
    n = max(1, out.get(key, 0))
    out["server_cpu_us_per_frame"] = round(1e6 * (s1 - s0) / n, 1)
    out["loadgen_cpu_us_per_frame"] = round(1e6 * (c1 - c0) / n, 1)
    out["server_cpu_share"] = round((s1 - s0) / (w1 - w0), 2)


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


@contextmanager
def edge_server(bundles: list[str] | None, extra: list[str] | None = None, timeout: float = 60.0,
                n_devices: int = 64):
    """Start a keyed `snn edge serve` on ephemeral loopback ports; yield (process, addresses),
    the addresses with "keys": the provisioned devices' keys by id."""
    with tempfile.TemporaryDirectory() as tmp:
        ready = Path(tmp) / "ready.json"
        keys = provision(Path(tmp) / "keys.json", n_devices)
        cmd = [sys.executable, "-m", "snn", "edge", "serve", "--http", "127.0.0.1:0",
               "--udp", "127.0.0.1:0", "--ready-json", str(ready), "--keys", str(Path(tmp) / "keys.json")]
        for b in bundles or []:
            cmd += ["--bundle", str(b)]
        cmd += extra or []
        log = open(Path(tmp) / "server.log", "w+")
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                cwd=str(Path(__file__).resolve().parents[1]))
        try:
            t0 = time.monotonic()
            while not ready.exists() or not ready.read_text().strip().endswith("}"):
                if proc.poll() is not None or time.monotonic() - t0 > timeout:
                    log.seek(0)
                    raise SnnError("the edge server did not start: " + log.read().strip()[-500:])
                time.sleep(0.05)
            yield proc, dict(json.loads(ready.read_text()), keys=keys)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            log.close()


def _stalls(addr: dict) -> dict:
    """Server-side stalls so far: loop timer wake-ups and model batches later/longer than 100 ms."""
    text = _get(addr["http"] + "/metrics")
    out = {}
    for key, prefix in (("loop_lag_over_100ms", "snn_edge_loop_lag_seconds_bucket{"),
                        ("model_batches_over_100ms", 'snn_edge_latency_seconds_bucket{')):
        le_01 = total = 0.0
        for line in text.splitlines():
            if not line.startswith(prefix) or ("model" in key and 'stage="model"' not in line):
                continue
            if 'le="0.1"' in line:
                le_01 = float(line.rsplit(" ", 1)[1])
            elif 'le="+Inf"' in line:
                total = float(line.rsplit(" ", 1)[1])
        out[key] = int(total - le_01)
    return out


def silent_refusals(addr: dict) -> float:
    """Frames the server refused without a reply so far (docs/PROTOCOL.md §6), from /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    text = _get(addr["http"] + "/metrics")
    return sum(float(s.value) for family in text_string_to_metric_families(text) for s in family.samples
               if s.name == "snn_edge_rejects_total" and s.labels.get("reason") in SILENT_REASONS)


def server_counts(addr: dict) -> dict:
    """The server's own accounting, read from /metrics with prometheus_client's parser:
    frames received over UDP, inferences answered, refusals (all and BUSY), kernel drops."""
    from prometheus_client.parser import text_string_to_metric_families

    out = {"udp_frames": 0.0, "answered": 0.0, "rejected": 0.0, "busy": 0.0, "kernel_drops": 0.0,
           "total_le_50ms": 0.0, "total_le_100ms": 0.0}
    for family in text_string_to_metric_families(_get(addr["http"] + "/metrics")):
        for sample in family.samples:
            if sample.name == "snn_edge_latency_seconds_bucket" and sample.labels.get("stage") == "total":
                # the server's own view of answered frames: arrival on the socket to reply sent
                le = sample.labels.get("le")
                if le in ("0.05", "0.1"):
                    out["total_le_50ms" if le == "0.05" else "total_le_100ms"] += sample.value
            elif sample.name == "snn_edge_frames_total" and sample.labels.get("transport") == "udp":
                out["udp_frames"] += sample.value
            elif sample.name == "snn_edge_inferences_total":
                out["answered"] += sample.value
            elif sample.name == "snn_edge_rejects_total":
                out["rejected"] += sample.value
                if sample.labels.get("reason") == "busy":
                    out["busy"] += sample.value
            elif sample.name == "snn_edge_udp_kernel_drops":
                out["kernel_drops"] += sample.value
    return out


def udp_overload(target: tuple[str, int], maker: FrameMaker, capacity_fps: float, factor: float,
                 duration: float, addr: dict) -> dict:
    """Offer `factor` x `capacity_fps` (open loop) and account for every datagram with the
    server's counters: sent = answered + rejected + kernel drops."""
    before = server_counts(addr)
    run = udp_open_loop(target, maker, factor * capacity_fps, duration,
                        silent_rejects=lambda: silent_refusals(addr))
    time.sleep(0.2)  # the last replies and the kernel's drop counter settle
    after = server_counts(addr)
    srv = {k: int(after[k] - before[k]) for k in after}
    goodput = run["answered"] / duration
    answered = max(1, srv["answered"])
    return {**run, "factor": factor, "capacity_fps": capacity_fps,
            "server_answered_within_50ms": round(srv["total_le_50ms"] / answered, 4),
            "server_answered_within_100ms": round(srv["total_le_100ms"] / answered, 4),
            "goodput_fps": round(goodput, 1),
            "goodput_share": round(goodput / capacity_fps, 3) if capacity_fps else None,
            "server_counts": srv,
            # what the server did with every datagram sent (replies the load generator missed
            # under its own load are still accounted: the server counted them)
            "server_accounted": run["sent"] == srv["answered"] + srv["rejected"] + srv["kernel_drops"],
            "unaccounted": run["sent"] - srv["answered"] - srv["rejected"] - srv["kernel_drops"],
            "replies_missed_by_loadgen": srv["answered"] + srv["rejected"] - run["answered"] - run["rejected"]}


def compare_engines(bundles, engines: list[str], extra: list[str], duration: float, window: int,
                    reps: int, max_batch: int, log) -> dict:
    """Closed-loop UDP throughput and the model alone per engine, side by side: one server per
    engine started up front, the closed loops alternated (A B A B ...), medians reported."""
    from contextlib import ExitStack

    out: dict = {e: {"throughput_fps": [], "p99_ms": [], "model_fps": []} for e in engines}
    with ExitStack() as stack:
        servers = {}
        for engine in engines:
            proc, addr = stack.enter_context(edge_server(bundles, extra + ["--engine", engine]))
            codec = json.loads(_get(addr["http"] + "/v1/codecs"))[0]
            host, port = addr["udp"][len("udp://"):].rsplit(":", 1)
            servers[engine] = ((host, int(port)), FrameMaker(codec, addr["keys"]), addr)
            if addr.get("engine") != engine:
                raise SnnError(f"asked for engine {engine}, the server runs {addr.get('engine')}")
        for rep in range(reps):
            for engine in engines:
                target, maker, _ = servers[engine]
                log(f"engines: {engine} closed loop, rep {rep + 1}/{reps} ...")
                r = udp_closed_loop(target, maker, duration, window)
                out[engine]["throughput_fps"].append(r["throughput_fps"])
                out[engine]["p99_ms"].append(r["p99_ms"])
                m = measure_model_fps(bundles, max_batch, min(duration, 5.0) / 2, engine=engine)
                out[engine]["model_fps"].append(m["model_fps"])
    for engine in engines:
        for key in ("throughput_fps", "model_fps"):
            out[engine][key + "_median"] = round(float(np.median(out[engine][key])), 1)
    base = engines[-1]
    for engine in engines[:-1]:
        out[f"{engine}_vs_{base}"] = {
            key: round(out[engine][key + "_median"] / out[base][key + "_median"], 3)
            for key in ("throughput_fps", "model_fps") if out[base][key + "_median"]}
    out["reps"] = reps
    return out


def _metric_sum(text: str, name: str) -> float:
    """The sum of a metric's samples over its labels (prometheus_client's parser, not by hand)."""
    from prometheus_client.parser import text_string_to_metric_families

    return sum(float(s.value) for family in text_string_to_metric_families(text)
               for s in family.samples if s.name == name)


def _batch_stats(addr: dict) -> tuple[float, float]:
    text = _get(addr["http"] + "/metrics")
    return _metric_sum(text, "snn_edge_batch_size_sum"), _metric_sum(text, "snn_edge_batch_size_count")


def _mean_batch(before: tuple[float, float], after: tuple[float, float]) -> float | None:
    count = after[1] - before[1]
    return round((after[0] - before[0]) / count, 2) if count else None


def _get(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.read().decode()


def run_edge_bench(bundles: list[str] | None = None, rate: float = 1000.0, duration: float = 10.0,
                   window: int = 256, http_clients: int = 16, max_batch: int = 64,
                   max_wait_ms: float = 2.0, garbage: float = 0.0, soak: float | None = None,
                   server_args: list[str] | None = None, log=print, engine: str = "onnx",
                   overload: float | None = None, engines: list[str] | None = None,
                   reps: int = 2) -> dict:
    """The whole benchmark (see the module docstring); returns the JSON figures."""
    extra = ["--max-batch", str(max_batch), "--max-wait-ms", str(max_wait_ms)] + (server_args or [])
    result: dict = {"bench": "edge", "rate_offered_fps": rate, "duration_s": duration,
                    "max_batch": max_batch, "max_wait_ms": max_wait_ms, "cpus": os.cpu_count(),
                    "engine": engine, "overload": overload}
    if engines:
        log(f"engines side by side: {', '.join(engines)}, {reps} alternated closed loops each ...")
        result["engines"] = compare_engines(bundles, engines, extra, duration, window, reps,
                                            max_batch, log)
    if soak is None:
        # the model alone in two slices, just before and just after the UDP closed loop, so that
        # a busy machine (other jobs come and go) weighs on both sides of the ratio alike; the
        # median is reported
        log(f"model alone: batches of {max_batch}, {min(duration, 5.0) / 2:.1f} s ...")
        model = measure_model_fps(bundles, max_batch, min(duration, 5.0) / 2, engine=engine)
        result["model"] = {k: v for k, v in model.items() if k != "codec"}
        result["model"]["slices_fps"] = [model["model_fps"]]
        result["model"]["cpu_us_per_frame_slices"] = [model["cpu_us_per_frame"]]
        result["model_fps"] = model["model_fps"]
    # the load generator's own timing must not include GC pauses (torch is loaded in this
    # process for the model phase): freeze what exists and pause the collector while measuring
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        return _phases(result, bundles, extra + ["--engine", engine], rate, duration, window, http_clients,
                       garbage, soak, log, overload)
    finally:
        gc.enable()


def _phases(result, bundles, extra, rate, duration, window, http_clients, garbage, soak, log,
            overload=None) -> dict:
    with edge_server(bundles, extra) as (proc, addr):
        codec = json.loads(_get(addr["http"] + "/v1/codecs"))[0]
        result["codec"] = codec["fingerprint"] + " " + codec["name"]
        host, port = addr["udp"][len("udp://"):].rsplit(":", 1)
        target = (host, int(port))
        maker = FrameMaker(codec, addr["keys"])
        rss0 = _rss_kb(proc.pid)
        if soak is not None:
            return _soak(result, proc, target, maker, rate, soak, garbage, addr, log)
        log(f"udp closed loop: {window} in flight, {duration:.0f} s ...")
        batches0 = _batch_stats(addr)
        udp_max: dict = {}
        with _cpu_account(proc.pid, udp_max), _server_accounting(addr, udp_max):
            udp_max.update(udp_closed_loop(target, maker, duration, window))
        udp_max["mean_batch"] = _mean_batch(batches0, _batch_stats(addr))
        result["udp_max"] = udp_max
        if "model" in result:
            # right after the closed loop, so that the two model slices bracket it closely
            log("model alone, second slice ...")
            again = measure_model_fps(bundles, result["max_batch"], min(duration, 5.0) / 2,
                                      engine=result["engine"])
            result["model"]["slices_fps"].append(again["model_fps"])
            result["model"]["cpu_us_per_frame_slices"].append(again["cpu_us_per_frame"])
            result["model_fps"] = round(float(np.median(result["model"]["slices_fps"])), 1)
        log(f"udp open loop: {rate:.0f} frames/s offered, {duration:.0f} s ...")
        batches0 = _batch_stats(addr)
        udp_rate: dict = {}
        with _cpu_account(proc.pid, udp_rate), _server_accounting(addr, udp_rate):
            rate_maker = FrameMaker(codec, addr["keys"], seed=1, start=maker.counter)
            udp_rate.update(udp_open_loop(target, rate_maker, rate, duration, garbage,
                                          silent_rejects=lambda: silent_refusals(addr)))
        maker.counter = rate_maker.counter   # counters only grow per device
        udp_rate["mean_batch"] = _mean_batch(batches0, _batch_stats(addr))
        result["udp_rate"] = udp_rate
        if overload:
            capacity = udp_max["throughput_fps"]
            log(f"udp overload: {overload:g} x {capacity:.0f} = {overload * capacity:.0f} frames/s "
                f"offered, {duration:.0f} s ...")
            over: dict = {}
            with _cpu_account(proc.pid, over):
                over_maker = FrameMaker(codec, addr["keys"], seed=2, start=maker.counter)
                over.update(udp_overload(target, over_maker, capacity, overload, duration, addr))
            maker.counter = over_maker.counter
            result["udp_overload"] = over
        log(f"http: {http_clients} clients, {duration:.0f} s ...")
        batches0 = _batch_stats(addr)
        http: dict = {}
        with _cpu_account(proc.pid, http):
            http.update(http_load(addr["http"], maker, http_clients, duration))
        http["mean_batch"] = _mean_batch(batches0, _batch_stats(addr))
        result["http"] = http
        metrics = _get(addr["http"] + "/metrics")
        batches = _metric_sum(metrics, "snn_edge_batch_size_count")
        result["server"] = {"mean_batch": round(_metric_sum(metrics, "snn_edge_batch_size_sum")
                                                / max(batches, 1), 2),
                            "rss_start_kb": rss0, "rss_end_kb": _rss_kb(proc.pid),
                            "udp_kernel_drops": _metric_sum(metrics, "snn_edge_udp_kernel_drops"),
                            **_stalls(addr)}
        t_stop = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
        result["server"]["sigterm_exit_s"] = round(time.perf_counter() - t_stop, 2)
        result["server"]["exit_code"] = proc.returncode
    result["sent"] = udp_max["sent"] + udp_rate["sent"]
    result["answered"] = udp_max["answered"] + udp_rate["answered"]
    result["rejected"] = udp_max["rejected"] + udp_rate["rejected"]
    result["lost"] = udp_max["lost"] + udp_rate["lost"]
    result["throughput_fps"] = udp_max["throughput_fps"]
    result["ratio"] = round(result["throughput_fps"] / result["model_fps"], 3) if result["model_fps"] else None
    result["p50_ms"] = udp_rate["p50_ms"]
    result["p99_ms"] = udp_rate["p99_ms"]
    result["kernel_drops"] = udp_max["kernel_drops"] + udp_rate["kernel_drops"]
    # the open loop already counts the server's silent refusals as rejected; the closed loop cannot
    result["accounted"] = result["lost"] <= result["kernel_drops"] + udp_max["server_refused_silently"]
    if "udp_overload" in result:
        over = result["udp_overload"]
        result["accounted"] = result["accounted"] and over["server_accounted"]
        result["overload_goodput_share"] = over["goodput_share"]
        result["overload_p99_ms"] = over["p99_ms"]
    result["loadavg"] = round(os.getloadavg()[0], 2)
    return result


def _soak(result, proc, target, maker, rate, seconds, garbage, addr, log) -> dict:
    samples = []
    t_start = time.perf_counter()

    def tick(t):
        samples.append((round(t, 1), _rss_kb(proc.pid)))
        if int(t) % 10 == 0:
            log(f"  soak t={t:.0f}s rss={samples[-1][1] / 1024:.1f} MiB")

    log(f"soak: {rate:.0f} frames/s, {garbage:.0%} garbage, {seconds:.0f} s ...")
    run = udp_open_loop(target, maker, rate, seconds, garbage, on_tick=tick,
                        silent_rejects=lambda: silent_refusals(addr))
    health = json.loads(_get(addr["http"] + "/healthz"))
    result["server"] = _stalls(addr)
    alive = proc.poll() is None
    warm = [kb for t, kb in samples if t >= min(5.0, seconds / 4)]
    base = warm[0] if warm else _rss_kb(proc.pid)
    end = _rss_kb(proc.pid)
    result.update({"soak": run, "sent": run["sent"], "answered": run["answered"],
                   "rejected": run["rejected"], "lost": run["lost"],
                   "throughput_fps": run["throughput_fps"], "p50_ms": run["p50_ms"],
                   "p99_ms": run["p99_ms"], "alive": alive, "health": health["status"],
                   "rss_samples_kb": samples, "rss_base_kb": base, "rss_end_kb": end,
                   "rss_growth": round(end / base - 1, 4) if base else None,
                   "elapsed_s": round(time.perf_counter() - t_start, 1),
                   "accounted": run["lost"] == 0})
    result["model_fps"] = None
    return result


def format_edge(r: dict) -> str:
    """The human-readable table."""
    lines = [f"edge bench — codec {r.get('codec')}, {r.get('cpus')} CPUs, batch <= {r['max_batch']}, "
             f"wait <= {r['max_wait_ms']} ms"]
    if "soak" in r:
        s = r["soak"]
        lines += [f"soak {s['duration_s']:.0f} s at {s['offered_fps']:.0f} fps offered "
                  f"({s['sent_garbage']} garbage of {s['sent']}):",
                  f"  sent {s['sent']}  answered {s['answered']}  rejected {s['rejected']} "
                  f"(garbage answered {s['garbage_answered']}, busy {s['busy']})  lost {s['lost']}",
                  f"  p50 {s['p50_ms']} ms  p99 {s['p99_ms']} ms  server alive {r['alive']}  "
                  f"server stalls > 100 ms: loop {r['server']['loop_lag_over_100ms']}, model batches "
                  f"{r['server']['model_batches_over_100ms']}",
                  f"  RSS {r['rss_base_kb'] / 1024:.1f} MiB (after warm-up) -> {r['rss_end_kb'] / 1024:.1f} MiB"
                  f"  growth {100 * r['rss_growth']:.1f} %"]
        return "\n".join(lines)
    u, o, h = r["udp_max"], r["udp_rate"], r["http"]
    lines[0] += f", engine {r.get('engine')}"
    lines += [
        f"{'phase':<28}{'sent':>8}{'answered':>10}{'rejected':>10}{'lost':>6}{'per s':>10}{'p50 ms':>9}{'p99 ms':>9}",
        f"{'model alone (batched)':<28}{'':>8}{'':>10}{'':>10}{'':>6}{r['model_fps']:>10.0f}"
        f"{'':>9}{'':>9}   (median of slices {r['model']['slices_fps']})",
        f"{'udp closed loop (' + str(u['window']) + ')':<28}{u['sent']:>8}{u['answered']:>10}"
        f"{u['rejected']:>10}{u['lost']:>6}{u['throughput_fps']:>10.0f}{u['p50_ms']:>9}{u['p99_ms']:>9}",
        f"{'udp @ ' + format(o['offered_fps'], '.0f') + ' fps offered':<28}{o['sent']:>8}{o['answered']:>10}"
        f"{o['rejected']:>10}{o['lost']:>6}{o['throughput_fps']:>10.0f}{o['p50_ms']:>9}{o['p99_ms']:>9}",
        f"{'http ' + str(h['clients']) + ' clients':<28}{h['sent']:>8}{h['answered']:>10}"
        f"{h['rejected']:>10}{h['lost']:>6}{h['throughput_rps']:>10.0f}{h['p50_ms']:>9}{h['p99_ms']:>9}",
    ]
    if "udp_overload" in r:
        v = r["udp_overload"]
        c = v["server_counts"]
        lines += [
            f"{'udp overload ' + format(v['factor'], 'g') + 'x':<28}{v['sent']:>8}{v['answered']:>10}"
            f"{v['rejected']:>10}{v['lost']:>6}{v['goodput_fps']:>10.0f}{v['p50_ms']:>9}{v['p99_ms']:>9}",
            f"  offered {v['offered_fps']:.0f}/s, really sent {v['sent_fps']:.0f}/s; goodput "
            f"{v['goodput_fps']:.0f}/s = {100 * v['goodput_share']:.1f} % of the closed loop's "
            f"{v['capacity_fps']:.0f}/s; the server answered {100 * v['server_answered_within_50ms']:.1f} % "
            f"within 50 ms and {100 * v['server_answered_within_100ms']:.1f} % within 100 ms of arrival",
            f"  server: answered {c['answered']} + rejected {c['rejected']} (busy {c['busy']}) + kernel "
            f"drops {c['kernel_drops']} = {c['answered'] + c['rejected'] + c['kernel_drops']} of "
            f"{v['sent']} sent (accounted: {v['server_accounted']}; replies the load generator "
            f"missed: {v['replies_missed_by_loadgen']})"]
    lines += [
        f"mean batch: udp closed loop {u.get('mean_batch')}, udp @ rate {o.get('mean_batch')}, "
        f"http {h.get('mean_batch')}",
        f"CPU us per frame: model alone {r['model'].get('cpu_us_per_frame_slices')}; "
        f"(server / load generator) udp closed loop "
        f"{u.get('server_cpu_us_per_frame')} / {u.get('loadgen_cpu_us_per_frame')}, http "
        f"{h.get('server_cpu_us_per_frame')} / {h.get('loadgen_cpu_us_per_frame')}; load average "
        f"{r.get('loadavg')}",
        f"server stalls > 100 ms (all phases): loop {r['server'].get('loop_lag_over_100ms')}, "
        f"model batches {r['server'].get('model_batches_over_100ms')}",
        f"udp throughput / model alone = {r['ratio']}   "
        f"accounted (sent = answered + rejected + kernel drops): {r['accounted']}   "
        f"SIGTERM exit {r['server']['sigterm_exit_s']} s (code {r['server']['exit_code']})",
    ]
    if "engines" in r:
        e = r["engines"]
        names = [k for k in e if isinstance(e[k], dict) and "throughput_fps_median" in e[k]]
        lines.append(f"engines side by side ({e['reps']} alternated closed loops each):")
        for name in names:
            lines.append(f"  {name:<8} udp closed loop {e[name]['throughput_fps']} -> median "
                         f"{e[name]['throughput_fps_median']:.0f}/s (p99 ms {e[name]['p99_ms']}); model alone "
                         f"median {e[name]['model_fps_median']:.0f}/s")
        for key, ratio in e.items():
            if key.count("_vs_"):
                lines.append(f"  {key}: udp throughput x{ratio.get('throughput_fps')}, model alone "
                             f"x{ratio.get('model_fps')}")
    return "\n".join(lines)


# --- `snn bench edge` ------------------------------------------------------------------------------

def add_bench_arguments(parser) -> None:
    """Flags of `snn bench edge` (the parser lives in bench/cli.py)."""
    parser.add_argument("--bundle", action="append", metavar="B",
                        help="bundle to serve (default: the shipped default bundle)")
    parser.add_argument("--rate", type=float, default=1000.0, metavar="FPS",
                        help="offered frames/s of the open-loop UDP phase (default %(default)s)")
    parser.add_argument("--duration", type=float, default=10.0, metavar="S",
                        help="seconds per phase (default %(default)s)")
    parser.add_argument("--window", type=int, default=256,
                        help="frames in flight in the closed-loop UDP phase (default %(default)s)")
    parser.add_argument("--http-clients", type=int, default=16)
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--max-wait-ms", type=float, default=2.0)
    parser.add_argument("--garbage", type=float, default=0.0, metavar="P",
                        help="fraction of bad frames mixed into the open-loop phase")
    parser.add_argument("--soak", type=float, metavar="S",
                        help="instead: S seconds at --rate (with --garbage) and report RSS growth (default: no soak)")
    parser.add_argument("--engine", choices=["onnx", "torch"], default="onnx",
                        help="the server's model engine, also used by the model-alone phase (default onnx)")
    parser.add_argument("--engines", metavar="A,B",
                        help="also compare engines side by side, e.g. onnx,torch: one server each, "
                             "alternated closed loops (--reps each) and the model alone (default: the onnx engine "
                             "alone)")
    parser.add_argument("--reps", type=int, default=2, help="alternations of --engines (default 2)")
    parser.add_argument("--overload", type=float, metavar="K",
                        help="add a phase offering K x the closed-loop throughput measured in this run (default: no "
                             "overload phase)")
    parser.add_argument("--deadline-ms", type=float, metavar="MS",
                        help="the server's --deadline-ms (default: the server's default)")
    parser.add_argument("--quick", action="store_true", help="3 s phases")
    parser.add_argument("--out", type=Path, metavar="DIR", help="also write DIR/edge.json (default: not written)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the figures as JSON to PATH (default: not "
                                                                  "written)")


def run_bench(args, write_json) -> int:
    duration = 3.0 if args.quick else args.duration
    if duration <= 0 or args.rate <= 0 or not 0 <= args.garbage < 1:
        raise SnnError("--duration and --rate must be positive and --garbage in [0, 1)")
    if args.overload is not None and not 0 < args.overload <= 50:
        raise SnnError(f"--overload takes a factor in (0, 50], got {args.overload:g}")
    engines = [e.strip() for e in args.engines.split(",") if e.strip()] if args.engines else None
    if engines and (len(engines) < 2 or any(e not in ("onnx", "torch") for e in engines)):
        raise SnnError(f"--engines takes two or more of onnx,torch, got {args.engines!r}")
    if args.reps < 1:
        raise SnnError("--reps must be at least 1")
    server_args = [] if args.deadline_ms is None else ["--deadline-ms", str(args.deadline_ms)]
    result = run_edge_bench(args.bundle, args.rate, duration, args.window, args.http_clients,
                            args.max_batch, args.max_wait_ms, args.garbage, args.soak,
                            server_args=server_args,
                            log=lambda msg: print(msg, file=sys.stderr, flush=True),
                            engine=args.engine, overload=args.overload, engines=engines,
                            reps=args.reps)
    write_json(args.json, result)
    print(format_edge(result), flush=True)
    if args.out is not None:
        write_json(args.out / ("edge_soak.json" if args.soak else "edge.json"), result)
    return 0 if result.get("accounted") else 1
