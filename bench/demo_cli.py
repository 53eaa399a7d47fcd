"""`snn demo`: the README's main job on the embedded default (Fashion-MNIST + shipped bundle)."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--count", type=int, default=2000,
                        help="test images for the accuracy-per-BER table (default 2000)")
    parser.add_argument("--ber", default="0,1e-2,5e-2,1e-1", help="comma-separated bit error rates")
    parser.add_argument("--live-count", type=int, default=200,
                        help="images sent through the live edge + proxy (default 200; 0 skips)")
    parser.add_argument("--live-ber", type=float, default=1e-2, help="BER of the live link (default 1e-2)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the demo's figures as JSON to PATH "
                                                                  "(default: not written)")


def run(args: argparse.Namespace) -> int:
    from bench.cli import write_json
    from bench.demo import format_demo, run_demo
    bers = [float(b) for b in args.ber.split(",")]
    result = run_demo(count=args.count, bers=bers, live_count=args.live_count, live_ber=args.live_ber)
    print(format_demo(result))
    write_json(args.json, result)
    return 0
