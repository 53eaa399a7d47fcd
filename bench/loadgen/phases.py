"""Phases a benchmark is made of: a measured stretch of load, the overload phase, the model alone.

    with measured(server, out):                 # CPU per frame, server accounting, mean batch
        out.update(udp_closed_loop(server.udp_target, maker, 5.0))
"""
from __future__ import annotations

import time
from contextlib import contextmanager

import numpy as np

from bench.loadgen.frames import FrameMaker
from bench.loadgen.metrics import batch_stats, mean_batch, server_counts, silent_refusals
from bench.loadgen.server import EdgeServer
from bench.loadgen.udp import udp_open_loop
from bench.loadgen.usage import cpu_account, own_cpu_s
from codec.wire.packing import pack_symbols


@contextmanager
def measured(server: EdgeServer, out: dict, accounting: bool = True):
    """Around one phase's load, add to `out`: server and load-generator CPU per answered frame;
    with `accounting`, the datagrams the kernel dropped for the server and those it refused
    without a reply during the phase (a closed loop sees neither); the phase's mean batch."""
    batches0 = batch_stats(server.metrics())
    with cpu_account(server.proc.pid, out):
        if accounting:
            m = server.metrics()
            before, silent0 = server_counts(m), silent_refusals(m)
        yield
        if accounting:
            time.sleep(0.1)
            m = server.metrics()
            out["kernel_drops"] = int(server_counts(m)["kernel_drops"] - before["kernel_drops"])
            out["server_refused_silently"] = int(silent_refusals(m) - silent0)
    out["mean_batch"] = mean_batch(batches0, batch_stats(server.metrics()))


def udp_overload(server: EdgeServer, maker: FrameMaker, capacity_fps: float, factor: float,
                 duration: float) -> dict:
    """Offer `factor` x `capacity_fps` (open loop) and account for every datagram with the
    server's counters: sent = answered + rejected + kernel drops."""
    before = server_counts(server.metrics())
    run = udp_open_loop(server.udp_target, maker, factor * capacity_fps, duration,
                        silent_rejects=lambda: silent_refusals(server.metrics()))
    time.sleep(0.2)  # the last replies and the kernel's drop counter settle
    after = server_counts(server.metrics())
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
    n, t0, c0 = 0, time.perf_counter(), own_cpu_s()
    times = []
    while time.perf_counter() - t0 < duration:
        t = time.perf_counter()
        codec.infer(payloads, None, bers)
        times.append(time.perf_counter() - t)
        n += batch
    elapsed = time.perf_counter() - t0
    cpu = own_cpu_s() - c0
    return {"model_fps": round(n / elapsed, 1), "batch": batch, "threads": threads, "engine": engine,
            "cpu_us_per_frame": round(1e6 * cpu / n, 1), "cpu_share": round(cpu / elapsed, 2),
            "batch_ms_median": round(1e3 * float(np.median(times)), 3), "codec": codec.describe()}
