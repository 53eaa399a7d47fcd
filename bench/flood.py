"""`snn bench flood`: a keyed device against a keyed edge while an attacker floods it.

Why: an edge on a reachable address gets datagrams from anyone, from as many addresses as they
like, and some spoof a device's own address. It must answer none of them (no reflection), spend
a bounded amount of CPU on all of them together, and keep serving its devices (docs/PROTOCOL.md
§6, edge/budgets.py). A second process floods for the whole run; this process runs one keyed
device at `--rate` frames/s (`bench.loadgen.udp.udp_open_loop`, fresh counters, replies matched by
counter).

Attacks (`--attack`):

- ``garbage``: random datagrams of mixed lengths (many of a valid frame's length);
- ``bad-mic``: frames with a valid header block claiming the device's own id and a wrong MIC
  (an online forger's guesses, each costing the edge a MIC check).

Sources: `--sources N` ordinary sockets (N distinct source ports, no privilege), or `--spoof`:
raw IPv4 packets carrying the device's own source address and port (needs root: CAP_NET_RAW;
loopback only). Reported: the device's answered fraction and latency, the server's refusals by
reason, replies the attacker's sockets received (must be 0), the edge's answers beyond the
device's (must be 0), and whether /healthz still answers.

Order: the device is answered once, then the attack starts (a device the edge serves, which the
attack must not stop). `--cold` starts the attack first: the device has no trusted (address, id)
pair yet, so its frames compete with the attacker's for the budgets of unauthenticated work (for
bad-MIC frames claiming its id: `--claim-fail-rate` MIC checks/s in all) until one authenticates;
reported as `first_answer_s`.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import random
import select
import socket
import struct
import time

from bench.loadgen.frames import FrameMaker
from bench.loadgen.metrics import refusals, silent_refusals
from bench.loadgen.server import edge_server
from bench.loadgen.udp import udp_open_loop, udp_socket
from snn.errors import SnnError

ATTACKS = ("garbage", "bad-mic")


def _garbage_pool(n: int = 512) -> list[bytes]:
    rnd = random.Random(1)
    lengths = (49, 13, 100, 0, 37, 61, 52, 73, 40, 85)
    return [os.urandom(lengths[i % len(lengths)] if i % 3 else rnd.randint(1, 128)) for i in range(n)]


def _bad_mic_pool(codec: dict, device: int, n: int = 512) -> list[bytes]:
    """Frames for `device` whose header decodes (BCH) but whose MIC is a guess."""
    from codec.wire.frame import encode_inference
    payload = bytes(-(-int(codec["n_symbols"]) * max(1, (int(codec["levels"]) - 1).bit_length()) // 8))
    rnd = random.Random(2)
    return [encode_inference(payload, key=os.urandom(16), device_id=device, fingerprint=bytes.fromhex(codec["fingerprint"]),
                             counter=rnd.randrange(1 << 32), long_counter=True)[0] for _ in range(n)]


def _udp_packet(src: tuple[str, int], dst: tuple[str, int], payload: bytes) -> bytes:
    """An IPv4 + UDP packet (UDP checksum 0: none, allowed on IPv4) for a raw socket."""
    length = 20 + 8 + len(payload)
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, length, 0, 0, 64, socket.IPPROTO_UDP, 0,
                         socket.inet_aton(src[0]), socket.inet_aton(dst[0]))
    words = struct.unpack("!10H", header)
    total = sum(words)
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    header = header[:10] + struct.pack("!H", ~total & 0xFFFF) + header[12:]
    return header + struct.pack("!HHHH", src[1], dst[1], 8 + len(payload), 0) + payload


def _flood(target: tuple[str, int], blobs: list[bytes], rate: float, seconds: float, sources: int,
           spoof_from: tuple[str, int] | None, out) -> None:
    """Send `rate` datagrams/s from `sources` sockets (or raw packets from `spoof_from`)."""
    if spoof_from is not None:
        raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        packets = [_udp_packet(spoof_from, target, b) for b in blobs]
        send = [lambda i: raw.sendto(packets[i % len(packets)], (target[0], 0))]
        socks = []
    else:
        socks = [udp_socket(target) for _ in range(sources)]   # one source port each
        send = [lambda i, s=s: s.send(blobs[i % len(blobs)]) for s in socks]
    replies = sent = look = 0
    t0 = time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < seconds:
        while sent < int(elapsed * rate):
            try:
                send[sent % len(send)](sent)
            except (BlockingIOError, PermissionError, ConnectionRefusedError):
                break
            sent += 1
        for s in socks[look:look + 64]:    # a few sockets per pass: a reply waits at most a moment
            try:
                while s.recv(2048):
                    replies += 1
            except (BlockingIOError, ConnectionRefusedError):
                pass
        look = look + 64 if look + 64 < len(socks) else 0
        time.sleep(0.0005)
    for s in socks:                        # a last look at every socket: any reply at all counts
        try:
            while s.recv(2048):
                replies += 1
        except (BlockingIOError, ConnectionRefusedError):
            pass
    out.put((sent, replies))


def _first_answer(sock: socket.socket, maker: FrameMaker, timeout: float) -> tuple[float | None, int]:
    """Send the device's frames (fresh counters, every 20 ms) until one is answered: (the seconds
    that took or None after `timeout`, the replies read: the first and any that followed it)."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        sock.send(maker.frame())
        ready, _, _ = select.select([sock], [], [], 0.02)
        if ready and sock.recv(2048):
            seconds, replies = round(time.perf_counter() - t0, 3), 1
            time.sleep(0.05)
            try:
                while sock.recv(2048):
                    replies += 1
            except BlockingIOError:
                pass
            return seconds, replies
    return None, 0


def run_flood(rate: float = 100.0, garbage_rate: float = 20000.0, duration: float = 10.0,
              bundles: list[str] | None = None, sources: int = 1, attack: str = "garbage",
              spoof: bool = False, cold: bool = False) -> dict:
    if attack not in ATTACKS:
        raise SnnError(f"--attack takes one of {', '.join(ATTACKS)}, not {attack!r}")
    if sources < 1 or sources > 4096:
        raise SnnError(f"--sources takes 1..4096, got {sources}")
    if spoof and os.geteuid() != 0:
        raise SnnError("--spoof sends raw packets with the device's own address: it needs root (CAP_NET_RAW)")
    with edge_server(bundles, n_devices=1) as server:
        codec = server.codec()
        target = server.udp_target
        maker = FrameMaker(codec, server.keys, n_devices=1)
        device = udp_socket(target)
        blobs = _garbage_pool() if attack == "garbage" else _bad_mic_pool(codec, 1)
        first_answer, joined = (None, 0) if cold else _first_answer(device, maker, 10.0)
        if not cold and first_answer is None:
            raise SnnError("the device got no answer before the attack started: is the edge up?")
        before = server.metrics().sum("snn_edge_inferences_total")
        out = mp.get_context("spawn").Queue()
        flood = mp.get_context("spawn").Process(
            target=_flood, args=(target, blobs, garbage_rate, duration + 2, sources,
                                 device.getsockname() if spoof else None, out))
        flood.start()
        time.sleep(1.0)
        if cold:
            first_answer, joined = _first_answer(device, maker, duration)
        run = udp_open_loop(target, maker, rate, duration, silent_rejects=lambda: silent_refusals(server.metrics()),
                            sock=device)
        t = time.perf_counter()
        health = json.loads(server.get("/healthz"))
        health_ms = (time.perf_counter() - t) * 1e3
        flood.join()
        g_sent, g_replies = out.get()
        metrics = server.metrics()
    return {"bench": "flood", "attack": attack, "sources": 1 if spoof else sources, "spoofed": spoof, "cold": cold,
            "first_answer_s": first_answer,
            "device_rate": rate, "garbage_rate_offered": garbage_rate, "duration_s": duration,
            "garbage_sent": g_sent, "garbage_rate": round(g_sent / (duration + 2)), "garbage_replies": g_replies,
            "answers_beyond_the_device": int(metrics.sum("snn_edge_inferences_total") - before - run["answered"]
                                              - (joined if cold else 0)),
            "device_sent": run["sent_valid"], "answered": run["answered"],
            "answered_fraction": round(run["answered"] / max(1, run["sent_valid"]), 4),
            "p50_ms": run["p50_ms"], "p99_ms": run["p99_ms"], "rejects": refusals(metrics),
            "kernel_drops": int(metrics.sum("snn_edge_udp_kernel_drops")),
            "healthz": health.get("status"), "healthz_ms": round(health_ms, 1), "loadavg": os.getloadavg()[0]}


def format_flood(r: dict) -> str:
    where = "spoofing the device's own address" if r["spoofed"] else f"from {r['sources']} source port(s)"
    return (f"flood ({r['attack']}): {r['garbage_sent']} datagrams {where} ({r['garbage_rate']}/s), "
            f"{r['garbage_replies']} replies to them, {r['answers_beyond_the_device']} answers beyond the device's\n"
            f"first answer of the device {'under the attack' if r['cold'] else 'before the attack'} after "
            f"{r['first_answer_s']} s\n"
            f"keyed device at {r['device_rate']:.0f} frames/s: {r['answered']}/{r['device_sent']} answered "
            f"({100 * r['answered_fraction']:.1f} %), p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms\n"
            f"server refusals by reason: {r['rejects']}; kernel drops {r['kernel_drops']}\n/healthz {r['healthz']} in {r['healthz_ms']} ms; "
            f"load average {r['loadavg']:.2f}")
