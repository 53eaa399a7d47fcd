"""`snn bench ...`: benchmarks that print their figures and, with --json, save them."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bench", metavar="BENCH", required=True)
    wire = sub.add_parser("wire", help="packing and frame parsing throughput")
    wire.add_argument("--frames", type=int, default=10_000)
    wire.add_argument("--symbols", type=int, default=392)
    wire.add_argument("--levels", type=int, default=8)
    wire.add_argument("--json", type=Path, metavar="PATH")
    edge = sub.add_parser("edge", help="edge server load test: UDP/HTTP throughput, latency, soak")
    from edge.loadgen import add_bench_arguments
    add_bench_arguments(edge)
    from bench.run import add_end_to_end_arguments
    add_end_to_end_arguments(sub)


def write_json(path: Path | None, result: dict) -> None:
    """Save a benchmark's figures where --json asked for them."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2) + "\n")


def run(args: argparse.Namespace) -> int:
    if args.bench == "wire":
        from bench.wire import format_wire, run_wire_bench
        result = run_wire_bench(args.frames, args.symbols, args.levels)
        print(format_wire(result))
        write_json(args.json, result)
    elif args.bench == "edge":
        from edge.loadgen import run_bench
        return run_bench(args, write_json)
    elif args.bench in ("accuracy", "latency", "all"):
        from bench.run import run_end_to_end
        return run_end_to_end(args, write_json)
    return 0
