"""The Ray Serve model half against the in-process one, side by side in one run.

    python -m bench.ray_edge [--replicas 2] [--count 200] [--duration 8] [--rounds 1] [--json PATH]

For each engine (in-process torch; `--ray local --replicas N`), in alternating rounds: start a
real `snn edge serve` on loopback, run `snn device run` with the shipped int8 encoder on
`--count` Fashion-MNIST test images (answered, accuracy, labels, round-trip p50/p99), then a UDP
closed loop of 256 frames in flight for `--duration` s (throughput, p50/p99), and stop it with
SIGTERM. Reports each engine's figures, the Ray/in-process ratios, and whether the two servers
gave the same label for every image.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.loadgen.frames import FrameMaker
from bench.loadgen.server import EdgeServer, edge_server
from bench.loadgen.udp import udp_closed_loop

ROOT = Path(__file__).resolve().parents[1]


def device_run(encoder: Path, server: EdgeServer, count: int) -> dict:
    """`snn device run` as device 64 of the server's provisioned keys (the closed loop uses 1-63)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "device.json"
        key_file = server.write_device_keys(Path(tmp) / "keys.json", [64])
        run = subprocess.run([sys.executable, "-m", "snn", "device", "run", "--encoder", str(encoder),
                              "--to", server.udp,
                              "--data", "fmnist:test", "--count", str(count), "--quiet", "--json", str(out),
                              "--key-file", str(key_file), "--device-id", "64"],
                             capture_output=True, text=True, timeout=600, cwd=str(ROOT))
        if run.returncode != 0:
            raise RuntimeError(f"snn device run failed: {run.stderr.strip()[-500:]}")
        return json.loads(out.read_text())


def one_engine(name: str, extra: list[str], encoder: Path, count: int, duration: float) -> dict:
    t0 = time.perf_counter()
    with edge_server(None, extra, timeout=300.0) as server:
        started = time.perf_counter() - t0
        dev = device_run(encoder, server, count)
        loop = udp_closed_loop(server.udp_target, FrameMaker(server.codec(), server.keys, n_devices=63), duration,
                               window=256)
        stopped = server.stop(timeout=120)
    addr = server.addresses
    return {"engine": addr.get("engine"), "replicas": addr.get("replicas"), "name": name,
            "start_s": round(started, 1), "sigterm_exit_s": round(stopped, 1), "exit_code": server.proc.returncode,
            "device": {k: dev[k] for k in ("count", "answered", "accuracy", "rtt_p50_ms", "rtt_p99_ms")},
            "labels": [r["label"] for r in dev["inferences"]],
            "udp_closed_loop": {k: loop[k] for k in ("sent", "answered", "rejected", "lost", "throughput_fps",
                                                     "p50_ms", "p99_ms")}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ray_edge", description=__doc__.split("\n\n")[0])
    p.add_argument("--replicas", type=int, default=2)
    p.add_argument("--count", type=int, default=200)
    p.add_argument("--duration", type=float, default=8.0)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    os.environ.setdefault("PYTHONPATH", str(ROOT))
    from export.shipped import default_int8_encoder

    encoder = default_int8_encoder()
    engines = [("in-process", []), ("ray", ["--ray", "local", "--replicas", str(args.replicas)])]
    runs: dict[str, list[dict]] = {name: [] for name, _ in engines}
    for r in range(args.rounds):
        for name, extra in (engines if r % 2 == 0 else engines[::-1]):
            print(f"round {r + 1}: {name} ...", flush=True)
            runs[name].append(one_engine(name, extra, encoder, args.count, args.duration))
    best = {name: max(rs, key=lambda x: x["udp_closed_loop"]["throughput_fps"]) for name, rs in runs.items()}
    a, b = best["in-process"], best["ray"]
    same = all(x["labels"] == runs["in-process"][0]["labels"] for rs in runs.values() for x in rs)
    result = {"bench": "ray_edge", "replicas": args.replicas, "count": args.count, "duration_s": args.duration,
              "rounds": args.rounds, "cpus": os.cpu_count(), "labels_identical": same,
              "runs": {name: [{k: v for k, v in x.items() if k != "labels"} for x in rs] for name, rs in runs.items()},
              "ratio_ray_to_in_process": {
                  "throughput": round(b["udp_closed_loop"]["throughput_fps"] / a["udp_closed_loop"]["throughput_fps"], 3),
                  "closed_loop_p50": round(b["udp_closed_loop"]["p50_ms"] / a["udp_closed_loop"]["p50_ms"], 2),
                  "device_rtt_p50": round(b["device"]["rtt_p50_ms"] / a["device"]["rtt_p50_ms"], 2)}}
    for name, rs in runs.items():
        for x in rs:
            d, u = x["device"], x["udp_closed_loop"]
            print(f"{name:10s} engine {x['engine']} x{x['replicas']}: device {d['answered']}/{d['count']} "
                  f"acc {d['accuracy']:.4f} rtt p50 {d['rtt_p50_ms']:.2f} p99 {d['rtt_p99_ms']:.2f} ms | closed loop "
                  f"{u['throughput_fps']:.0f}/s p50 {u['p50_ms']} p99 {u['p99_ms']} ms (lost {u['lost']}) | start "
                  f"{x['start_s']} s, SIGTERM exit {x['sigterm_exit_s']} s (code {x['exit_code']})")
    print(f"labels identical: {same}; ray/in-process: {result['ratio_ray_to_in_process']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
