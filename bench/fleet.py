"""`snn bench fleet`: thousands of simulated devices at mixed rates and BERs against one edge.

One real keyed `snn edge serve` on loopback (``--engine``, default onnx; one key per simulated
device) and one load generator that plays every device over one UDP socket (the device id is in
each frame's header; the edge answers the address a frame came from). Device classes
(`CLASSES`): many slow sensors on a clean link, a few fast cameras, and far nodes on a bad link
that send 3 header copies; every frame's bits really flip at its class's BER
(`channel.bit_errors`), header included, so the edge estimates each link's BER from the header's
own decoding, and a header beyond repair is refused silently (counted by the server).

Steps:

1. the closed-loop UDP capacity of this edge on this machine (`bench.loadgen.udp.udp_closed_loop`),
2. for each ``--loads`` factor F: every device sends Poisson arrivals at F x its class's share of
   that capacity for ``--duration`` s, open loop (no retries: this is offered load); replies are
   matched by (device id, sequence number). Per class and in total: offered and really-sent
   rate, goodput, BUSY, no reply, p50/p99 of answered frames; from the server's /metrics: its
   answered/refused/kernel-drop counts (every datagram accounted), devices tracked and evicted.

The edge's per-device table is an LRU of ``--max-devices`` entries (`edge.stats.DeviceTable`): a
fleet larger than that evicts (counted) and never grows the server's state.
"""
from __future__ import annotations

import gc
import os
import select
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.loadgen.frames import FrameMaker
from bench.loadgen.metrics import Metrics, server_counts
from bench.loadgen.replies import ReplyMatcher, error_code, waiting_replies
from bench.loadgen.server import edge_server
from bench.loadgen.stats import percentiles
from bench.loadgen.udp import udp_closed_loop, udp_socket
from bench.loadgen.usage import rss_kb
from codec.wire.frame import ErrorCode, Kind, encode_inference
from codec.wire.packing import pack_symbols
from snn.errors import SnnError


@dataclass(frozen=True)
class DeviceClass:
    name: str
    share_devices: float   # fraction of the fleet
    weight: float          # relative frame rate of one device of this class
    ber: float             # bit error rate of its uplink (the whole frame)
    copies: int = 1        # header copies it sends


CLASSES = (DeviceClass("sensor", 0.80, 1.0, 1e-4),
           DeviceClass("camera", 0.05, 20.0, 1e-3),
           DeviceClass("far", 0.15, 2.0, 2e-2, copies=3))


def fleet_devices(n: int, first_id: int = 1) -> list[tuple[int, DeviceClass]]:
    """(device id, class) for n devices, classes in their shares."""
    out, start = [], first_id
    for i, cls in enumerate(CLASSES):
        k = n - len(out) if i == len(CLASSES) - 1 else int(round(cls.share_devices * n))
        out += [(start + j, cls) for j in range(k)]
        start += k
    if out[-1][0] > 0xFFFF:
        raise SnnError(f"at most {0xFFFF - first_id + 1} devices (16-bit device ids)")
    return out


class FleetSchedule:
    """Every frame of one load level, pre-encoded and ordered by send time. Frame j carries
    counter `start + j` (one sequence for the whole fleet, so each device's counters grow and a
    reply's low 16 counter bits name the frame among the last 65,536 sent)."""

    def __init__(self, codec: dict, devices, keys: dict[int, bytes], total_fps: float, duration: float,
                 seed: int, start: int) -> None:
        from channel.bit_errors import make_error_model

        rng = np.random.default_rng(seed)
        fp = bytes.fromhex(codec["fingerprint"])
        levels, n_sym = int(codec["levels"]), int(codec["n_symbols"])
        payloads = [pack_symbols(rng.integers(0, levels, n_sym), levels).tobytes() for _ in range(32)]
        weights = np.array([cls.weight for _, cls in devices])
        rates = total_fps * weights / weights.sum()
        times, idx = [], []
        for i, rate in enumerate(rates):
            k = rng.poisson(rate * duration)
            times.append(np.sort(rng.uniform(0, duration, k)))
            idx.append(np.full(k, i, dtype=np.int32))
        times, idx = np.concatenate(times), np.concatenate(idx)
        order = np.argsort(times, kind="stable")
        self.times, self.device_index = times[order], idx[order]
        self.classes = [cls.name for _, cls in devices]
        models = {cls.name: make_error_model("iid", ber=cls.ber) for cls in CLASSES}
        self.start, self.devices, self.keys = start, devices, keys
        self.frames: list[bytes] = []
        for j, i in enumerate(self.device_index):
            dev, cls = devices[i]
            frame = encode_inference(payloads[j % len(payloads)], key=keys[dev], device_id=dev,
                                     fingerprint=fp, counter=start + j, copies=cls.copies,
                                     long_counter=True)[0]
            flipped, _ = models[cls.name].corrupt(np.frombuffer(frame, dtype=np.uint8), rng)
            self.frames.append(flipped.tobytes())

    def is_busy(self, j: int, data: bytes) -> bool:
        """Whether the ERROR reply `data` to frame j says BUSY (decrypted; loopback, no MIC check)."""
        dev = self.devices[self.device_index[j]][0]
        return error_code(data, self.keys[dev], dev, self.start + j) == ErrorCode.BUSY

    def __len__(self) -> int:
        return len(self.frames)


def play(target: tuple[str, int], sched: FleetSchedule, grace: float = 3.0) -> dict:
    """Send each frame at its time, collect replies; per-frame outcome and latency."""
    n = len(sched)
    outcome = np.zeros(n, dtype=np.int8)            # 0 no reply, 1 answered, 2 busy, 3 other error
    latency = np.full(n, np.nan)
    sent_at = np.zeros(n)
    sock = udp_socket(target)
    frames, times = sched.frames, sched.times
    matcher = ReplyMatcher(sched.start)
    i = replies = 0
    t0 = time.perf_counter()
    t_last_send = t0
    while True:
        now = time.perf_counter()
        if i < n:
            burst = 0
            # at most 64 sends between two looks at the replies: a load generator that falls
            # behind must not let replies wait in its own socket (that would be its latency)
            while i < n and times[i] <= now - t0 and burst < 64:
                burst += 1
                try:
                    sock.send(frames[i])
                except BlockingIOError:
                    break
                sent_at[i] = time.perf_counter()
                i += 1
            t_last_send = time.perf_counter()
            timeout = 0.0 if i < n and times[i] <= time.perf_counter() - t0 else \
                (min(0.01, max(0.0, t0 + times[i] - time.perf_counter())) if i < n else 0.01)
        elif replies >= n or now > t_last_send + grace:
            break
        else:
            timeout = 0.02
        ready, _, _ = select.select([sock], [], [], timeout)
        if not ready:
            continue
        for kind, low, data in waiting_replies(sock):
            j = matcher.frame_of(low, i)
            if j < 0 or outcome[j]:
                continue
            replies += 1
            if kind == Kind.REPLY:
                outcome[j] = 1
                latency[j] = (time.perf_counter() - sent_at[j]) * 1e3
            else:
                outcome[j] = 2 if sched.is_busy(j, data) else 3
    sock.close()
    return {"sent": i, "send_s": t_last_send - t0, "outcome": outcome, "latency": latency}


def _class_rows(sched: FleetSchedule, run: dict, duration: float) -> dict:
    out = {}
    names = np.array(sched.classes)[sched.device_index] if len(sched) else np.array([])
    for cls in CLASSES:
        sel = names == cls.name
        oc, lat = run["outcome"][sel], run["latency"][sel]
        ok = lat[oc == 1]
        out[cls.name] = {"ber": cls.ber, "frames": int(sel.sum()),
                         "answered": int((oc == 1).sum()), "busy": int((oc == 2).sum()),
                         "errors": int((oc == 3).sum()), "no_reply": int((oc == 0).sum()),
                         "goodput_fps": round(float((oc == 1).sum()) / duration, 1),
                         **percentiles(ok.tolist())}
    return out


def run_fleet_bench(bundles=None, n_devices: int = 2000, loads=(0.25, 0.5, 1.0, 2.0, 4.0),
                    duration: float = 10.0, engine: str = "onnx", max_devices: int = 1024,
                    window: int = 256, seed: int = 0, log=print) -> dict:
    devices = fleet_devices(n_devices)
    extra = ["--engine", engine, "--max-devices", str(max_devices)]
    result: dict = {"bench": "fleet", "devices": n_devices, "engine": engine, "duration_s": duration,
                    "max_devices": max_devices, "cpus": os.cpu_count(),
                    "classes": {c.name: {"devices": sum(1 for _, k in devices if k is c), "rate_weight": c.weight,
                                         "ber": c.ber} for c in CLASSES}, "loads": []}
    gc.collect()
    gc.freeze()
    with edge_server(bundles, extra, n_devices=n_devices) as server:
        codec = server.codec()
        result["codec"] = codec["fingerprint"] + " " + codec["name"]
        target = server.udp_target
        log(f"fleet: closed-loop capacity, {min(duration, 5.0):.0f} s ...")
        maker = FrameMaker(codec, server.keys, seed=seed)
        cap = udp_closed_loop(target, maker, min(duration, 5.0), window)
        capacity = cap["throughput_fps"]
        result["capacity_fps"] = capacity
        result["rss_start_kb"] = rss_kb(server.proc.pid)
        counter = maker.counter
        for k, factor in enumerate(loads):
            offered = factor * capacity
            sched = FleetSchedule(codec, devices, server.keys, offered, duration, seed + k, counter)
            counter += len(sched)
            log(f"fleet: load {factor:g} x capacity = {offered:.0f} frames/s from {n_devices} devices "
                f"({len(sched)} frames), {duration:.0f} s ...")
            before = server_counts(server.metrics())
            gc.disable()
            try:
                run = play(target, sched)
            finally:
                gc.enable()
            time.sleep(0.2)
            after = server_counts(server.metrics())
            srv = {key: int(after[key] - before[key]) for key in after}
            oc, lat = run["outcome"], run["latency"]
            answered = int((oc == 1).sum())
            row = {"factor": factor, "offered_fps": round(offered, 1),
                   "sent": run["sent"], "sent_fps": round(run["sent"] / max(run["send_s"], 1e-9), 1),
                   "answered": answered, "busy": int((oc == 2).sum()), "no_reply": int((oc == 0).sum()),
                   "goodput_fps": round(answered / duration, 1),
                   "goodput_share": round(answered / duration / capacity, 3) if capacity else None,
                   **percentiles(lat[oc == 1].tolist()),
                   "server_counts": srv,
                   "accounted": run["sent"] == srv["answered"] + srv["rejected"] + srv["kernel_drops"],
                   "classes": _class_rows(sched, run, duration)}
            result["loads"].append(row)
        result["server"] = {**_device_metrics(server.metrics()), "rss_end_kb": rss_kb(server.proc.pid),
                            "alive": server.proc.poll() is None}
    result["accounted"] = all(r["accounted"] for r in result["loads"])
    result["loadavg"] = round(os.getloadavg()[0], 2)
    return result


def _device_metrics(m: Metrics) -> dict:
    """The server's per-device table: devices tracked now, evicted so far."""
    tracked, evicted = m.first("snn_edge_devices"), m.first("snn_edge_devices_evicted_total")
    return {"devices_tracked": None if tracked is None else int(tracked),
            "devices_evicted": None if evicted is None else int(evicted)}


def format_fleet(r: dict) -> str:
    classes = [c.name for c in CLASSES]
    mix = ", ".join(f"{k} {v['devices']}" for k, v in r["classes"].items())
    lines = [f"fleet bench — {r['devices']} devices ({mix}), "
             f"codec {r.get('codec')}, engine {r['engine']}, {r['cpus']} CPUs; closed-loop capacity "
             f"{r['capacity_fps']:.0f}/s",
             f"{'load':>6}{'offered/s':>11}{'sent/s':>9}{'goodput/s':>11}{'share':>7}{'busy':>8}{'no reply':>9}"
             f"{'p50 ms':>9}{'p99 ms':>9}  " + "  ".join(f"{c} goodput/p99" for c in classes)]
    for row in r["loads"]:
        per = "  ".join(f"{row['classes'][c]['goodput_fps']:>8.0f}/{row['classes'][c]['p99_ms']}" for c in classes)
        lines.append(f"{row['factor']:>5g}x{row['offered_fps']:>11.0f}{row['sent_fps']:>9.0f}{row['goodput_fps']:>11.0f}"
                     f"{row['goodput_share']:>7.2f}{row['busy']:>8}{row['no_reply']:>9}{str(row['p50_ms']):>9}"
                     f"{str(row['p99_ms']):>9}  {per}")
    s = r["server"]
    lines.append(f"server: devices tracked {s['devices_tracked']} (table bound {r['max_devices']}), evicted "
                 f"{s['devices_evicted']}; RSS {r['rss_start_kb'] / 1024:.1f} -> {s['rss_end_kb'] / 1024:.1f} MiB; "
                 f"every datagram accounted (sent = answered + rejected + kernel drops): {r['accounted']}; "
                 f"load average {r['loadavg']}")
    return "\n".join(lines)


def plot_fleet(r: dict, path: Path) -> None:
    """Goodput and p99 against offered load (PNG)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [row["offered_fps"] for row in r["loads"]]
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.5))
    ax[0].plot(x, [row["goodput_fps"] for row in r["loads"]], "o-", label="all")
    for c in CLASSES:
        ax[0].plot(x, [row["classes"][c.name]["goodput_fps"] for row in r["loads"]], ".--", label=c.name)
    ax[0].axhline(r["capacity_fps"], color="grey", lw=0.8, ls=":")
    ax[0].set(xlabel="offered frames/s", ylabel="answered frames/s", title="goodput")
    ax[0].legend()
    ax[1].plot(x, [row["p99_ms"] or np.nan for row in r["loads"]], "o-")
    ax[1].set(xlabel="offered frames/s", ylabel="ms", title="p99 of answered frames")
    fig.suptitle(f"snn bench fleet: {r['devices']} devices, engine {r['engine']}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def add_fleet_arguments(parser) -> None:
    parser.add_argument("--bundle", action="append", metavar="B", help="bundle to serve (default: shipped)")
    parser.add_argument("--devices", type=int, default=2000, help="simulated devices (default %(default)s)")
    parser.add_argument("--loads", default="0.25,0.5,1,2,4", metavar="F,F,...",
                        help="offered load as multiples of the measured closed-loop capacity")
    parser.add_argument("--duration", type=float, default=10.0, metavar="S", help="seconds per load level")
    parser.add_argument("--engine", choices=["onnx", "torch"], default="onnx")
    parser.add_argument("--max-devices", type=int, default=1024,
                        help="the edge's per-device table bound (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", type=Path, metavar="PNG", help="also plot goodput and p99 against load (default: "
                                                                 "no plot)")
    parser.add_argument("--quick", action="store_true", help="3 s per level, loads 0.5,2")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the figures as JSON to PATH (default: not "
                                                                  "written)")


def run_fleet(args, write_json) -> int:
    try:
        loads = [float(v) for v in args.loads.split(",") if v.strip()]
    except ValueError:
        raise SnnError(f"--loads takes comma-separated factors, got {args.loads!r}") from None
    duration = 3.0 if args.quick else args.duration
    if args.quick:
        loads = [0.5, 2.0]
    if not loads or any(not 0 < f <= 20 for f in loads) or duration <= 0:
        raise SnnError("--loads factors must lie in (0, 20] and --duration be positive")
    if not 1 <= args.devices <= 60000 or args.max_devices < 1:
        raise SnnError("--devices must lie in 1..60000 and --max-devices be >= 1")
    result = run_fleet_bench(args.bundle, args.devices, loads, duration, args.engine, args.max_devices,
                             seed=args.seed, log=lambda m: print(m, file=sys.stderr, flush=True))
    write_json(args.json, result)
    print(format_fleet(result), flush=True)
    if args.plot:
        plot_fleet(result, args.plot)
        print(f"plot: {args.plot}")
    return 0 if result["accounted"] else 1
