"""`snn bench flood`: a keyed device against a keyed edge while one source floods it with garbage.

Why: an edge on a reachable address gets random datagrams; it must answer none of them (no
reflection), spend almost nothing on each (a length look-up, and past a source's failure budget
a dict look-up: docs/PROTOCOL.md §6) and keep serving its devices. A second process sends
`--garbage-rate` random datagrams/s (0-100 bytes, some of a valid frame's length) from one
socket for the whole run; this process runs a keyed device at `--rate` frames/s for
`--duration` s (`bench.loadgen.udp.udp_open_loop`, fresh counters, replies matched by counter).
Reported: the device's answered fraction and latency, the server's refusals by reason, replies
to garbage (must be 0), and whether /healthz still answers.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import socket
import time

from bench.loadgen.frames import FrameMaker
from bench.loadgen.metrics import refusals, silent_refusals
from bench.loadgen.server import edge_server
from bench.loadgen.udp import udp_open_loop


def _garbage(target: tuple[str, int], rate: float, seconds: float, out) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    blobs = [os.urandom(n) for n in (49, 13, 100, 0, 37, 61, 52, 73) * 40]
    replies = sent = 0
    t0 = time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < seconds:
        while sent < int(elapsed * rate):
            try:
                sock.sendto(blobs[sent % len(blobs)], target)
            except BlockingIOError:
                break
            sent += 1
        try:
            while sock.recv(2048):
                replies += 1
        except BlockingIOError:
            pass
        time.sleep(0.0005)
    out.put((sent, replies))


def run_flood(rate: float = 100.0, garbage_rate: float = 20000.0, duration: float = 10.0,
              bundles: list[str] | None = None) -> dict:
    with edge_server(bundles) as server:
        target = server.udp_target
        out = mp.get_context("spawn").Queue()
        flood = mp.get_context("spawn").Process(target=_garbage, args=(target, garbage_rate, duration + 2, out))
        flood.start()
        time.sleep(1.0)
        run = udp_open_loop(target, FrameMaker(server.codec(), server.keys), rate, duration,
                            silent_rejects=lambda: silent_refusals(server.metrics()))
        t = time.perf_counter()
        health = json.loads(server.get("/healthz"))
        health_ms = (time.perf_counter() - t) * 1e3
        flood.join()
        g_sent, g_replies = out.get()
        rejects = refusals(server.metrics())
    return {"bench": "flood", "device_rate": rate, "garbage_rate_offered": garbage_rate, "duration_s": duration,
            "garbage_sent": g_sent, "garbage_rate": round(g_sent / (duration + 2)), "garbage_replies": g_replies,
            "device_sent": run["sent_valid"], "answered": run["answered"],
            "answered_fraction": round(run["answered"] / max(1, run["sent_valid"]), 4),
            "p50_ms": run["p50_ms"], "p99_ms": run["p99_ms"], "rejects": rejects,
            "healthz": health.get("status"), "healthz_ms": round(health_ms, 1)}


def format_flood(r: dict) -> str:
    return (f"flood: {r['garbage_sent']} garbage datagrams from one source ({r['garbage_rate']}/s), "
            f"{r['garbage_replies']} replies to them\n"
            f"keyed device at {r['device_rate']:.0f} frames/s: {r['answered']}/{r['device_sent']} answered "
            f"({100 * r['answered_fraction']:.1f} %), p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms\n"
            f"server refusals by reason: {r['rejects']}\n/healthz {r['healthz']} in {r['healthz_ms']} ms")
