"""`snn bench edge`: phases of our own load generator (`bench.loadgen`) against a real `snn edge serve`.

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

import gc
import json
import os
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from bench.loadgen.frames import FrameMaker
from bench.loadgen.http import http_load
from bench.loadgen.metrics import silent_refusals, stalls
from bench.loadgen.phases import measure_model_fps, measured, udp_overload
from bench.loadgen.server import EdgeServer, edge_server
from bench.loadgen.udp import udp_closed_loop, udp_open_loop
from bench.loadgen.usage import cpu_account, rss_kb
from snn.errors import SnnError


def compare_engines(bundles, engines: list[str], extra: list[str], duration: float, window: int,
                    reps: int, max_batch: int, log) -> dict:
    """Closed-loop UDP throughput and the model alone per engine, side by side: one server per
    engine started up front, the closed loops alternated (A B A B ...), medians reported."""
    out: dict = {e: {"throughput_fps": [], "p99_ms": [], "model_fps": []} for e in engines}
    with ExitStack() as stack:
        servers = {}
        for engine in engines:
            server = stack.enter_context(edge_server(bundles, extra + ["--engine", engine]))
            servers[engine] = (server, FrameMaker(server.codec(), server.keys))
            if server.addresses.get("engine") != engine:
                raise SnnError(f"asked for engine {engine}, the server runs {server.addresses.get('engine')}")
        for rep in range(reps):
            for engine in engines:
                server, maker = servers[engine]
                log(f"engines: {engine} closed loop, rep {rep + 1}/{reps} ...")
                r = udp_closed_loop(server.udp_target, maker, duration, window)
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
        with edge_server(bundles, extra + ["--engine", engine]) as server:
            codec = server.codec()
            result["codec"] = codec["fingerprint"] + " " + codec["name"]
            maker = FrameMaker(codec, server.keys)
            if soak is not None:
                return _soak(result, server, maker, rate, soak, garbage, log)
            _phases(result, server, maker, bundles, rate, duration, window, http_clients, garbage, log,
                    overload)
        return _totals(result)
    finally:
        gc.enable()


def _phases(result: dict, server: EdgeServer, maker: FrameMaker, bundles, rate: float, duration: float,
            window: int, http_clients: int, garbage: float, log, overload: float | None) -> None:
    """Phases 2-5 against one server, then its own figures and a timed SIGTERM, into `result`."""
    rss0 = rss_kb(server.proc.pid)
    codec = server.codec()
    log(f"udp closed loop: {window} in flight, {duration:.0f} s ...")
    udp_max: dict = {}
    with measured(server, udp_max):
        udp_max.update(udp_closed_loop(server.udp_target, maker, duration, window))
    result["udp_max"] = udp_max
    if "model" in result:
        # right after the closed loop, so that the two model slices bracket it closely
        log("model alone, second slice ...")
        again = measure_model_fps(bundles, result["max_batch"], min(duration, 5.0) / 2, engine=result["engine"])
        result["model"]["slices_fps"].append(again["model_fps"])
        result["model"]["cpu_us_per_frame_slices"].append(again["cpu_us_per_frame"])
        result["model_fps"] = round(float(np.median(result["model"]["slices_fps"])), 1)
    log(f"udp open loop: {rate:.0f} frames/s offered, {duration:.0f} s ...")
    udp_rate: dict = {}
    with measured(server, udp_rate):
        rate_maker = FrameMaker(codec, server.keys, seed=1, start=maker.counter)
        udp_rate.update(udp_open_loop(server.udp_target, rate_maker, rate, duration, garbage,
                                      silent_rejects=lambda: silent_refusals(server.metrics())))
    maker.counter = rate_maker.counter   # counters only grow per device
    result["udp_rate"] = udp_rate
    if overload:
        capacity = udp_max["throughput_fps"]
        log(f"udp overload: {overload:g} x {capacity:.0f} = {overload * capacity:.0f} frames/s "
            f"offered, {duration:.0f} s ...")
        over: dict = {}
        with cpu_account(server.proc.pid, over):
            over_maker = FrameMaker(codec, server.keys, seed=2, start=maker.counter)
            over.update(udp_overload(server, over_maker, capacity, overload, duration))
        maker.counter = over_maker.counter
        result["udp_overload"] = over
    log(f"http: {http_clients} clients, {duration:.0f} s ...")
    http: dict = {}
    with measured(server, http, accounting=False):
        http.update(http_load(server.http, maker, http_clients, duration))
    result["http"] = http
    metrics = server.metrics()
    batches = metrics.sum("snn_edge_batch_size_count")
    result["server"] = {"mean_batch": round(metrics.sum("snn_edge_batch_size_sum") / max(batches, 1), 2),
                        "rss_start_kb": rss0, "rss_end_kb": rss_kb(server.proc.pid),
                        "udp_kernel_drops": metrics.sum("snn_edge_udp_kernel_drops"), **stalls(metrics)}
    result["server"]["sigterm_exit_s"] = round(server.stop(), 2)
    result["server"]["exit_code"] = server.proc.returncode


def _totals(result: dict) -> dict:
    """The contract's top-level figures (DESIGN.md: sent, answered, ... p99_ms) from the phases."""
    udp_max, udp_rate = result["udp_max"], result["udp_rate"]
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


def _soak(result: dict, server: EdgeServer, maker: FrameMaker, rate: float, seconds: float, garbage: float,
          log) -> dict:
    samples = []
    t_start = time.perf_counter()
    pid = server.proc.pid

    def tick(t):
        samples.append((round(t, 1), rss_kb(pid)))
        if int(t) % 10 == 0:
            log(f"  soak t={t:.0f}s rss={samples[-1][1] / 1024:.1f} MiB")

    log(f"soak: {rate:.0f} frames/s, {garbage:.0%} garbage, {seconds:.0f} s ...")
    run = udp_open_loop(server.udp_target, maker, rate, seconds, garbage, on_tick=tick,
                        silent_rejects=lambda: silent_refusals(server.metrics()))
    health = json.loads(server.get("/healthz"))
    result["server"] = stalls(server.metrics())
    alive = server.proc.poll() is None
    warm = [kb for t, kb in samples if t >= min(5.0, seconds / 4)]
    base = warm[0] if warm else rss_kb(pid)
    end = rss_kb(pid)
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
