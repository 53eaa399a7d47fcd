"""`snn bench accuracy|latency|all`: run the end-to-end benchmarks and write JSON, markdown and PNGs.

    snn bench accuracy [--quick] [--out DIR] [--json PATH]   # DIR/accuracy.{json,md}, 2 plots
    snn bench latency  [--quick] [--out DIR] [--json PATH]   # DIR/latency.{json,md}, 1 plot
    snn bench all      [--quick] [--out DIR] [--json PATH]   # DIR/bench.{json,md}, 3 plots (+ edge)

`all` runs accuracy, latency (its baseline picked from the accuracy rows) and the edge server's
load benchmark (`bench.edge_load`, UDP and HTTP) in one process and one JSON with the date, the
machine and the exact command.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import shlex
import sys
import time
from pathlib import Path

from snn.errors import SnnError


def add_end_to_end_arguments(sub) -> None:
    for name, text in (("accuracy", "accuracy vs BER vs bytes on air, SemanticNN vs baselines"),
                       ("latency", "latency breakdown per inference (device, air, edge)"),
                       ("all", "accuracy + latency + edge throughput: the README's figures")):
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("--quick", action="store_true",
                       help="a test-set subset and fewer variants (about a minute)")
        p.add_argument("--out", type=Path, default=Path("results"), metavar="DIR",
                       help="where the JSON, markdown and PNG files go (default results/)")
        p.add_argument("--json", type=Path, metavar="PATH", help="also write the JSON figures here (default: not "
                                                                 "written)")
        p.add_argument("--bundle", default=None, help="the SemanticNN bundle (default: the shipped one)")
        p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
        if name in ("accuracy", "all"):
            p.add_argument("--count", type=int, default=None, help="test images (default: all; --quick: 300)")
            p.add_argument("--side-count", type=int, default=None,
                           help="limit the *-plain (decode-and-classify) rows to the first N images "
                                "(default: as --count)")
            p.add_argument("--link", default="lora-sf7", help="link whose MTU fragments the frames")
            p.add_argument("--cap", type=int, default=8, help="ARQ/resend cap per fragment (default 8)")
            p.add_argument("--seed", type=int, default=0)
            p.add_argument("--ablation", action="append", default=[], metavar="NAME=PATH",
                           help="an extra ablation bundle (default: found in codec/zoo by name)")
            p.add_argument("--deepcod", default="auto",
                           help="DeepCOD-style codec checkpoint (default bench/zoo/deepcod_fmnist.pt; 'none')")
            p.add_argument("--train-deepcod-minutes", type=float, default=6.0,
                           help="when the cached DeepCOD-style codec does not match the bundle, train one for "
                                "this long first (full runs only; 0: skip the row instead)")
        if name == "all":
            p.add_argument("--edge-duration", type=float, default=None,
                           help="seconds per edge load phase (default 10, --quick 3)")
            p.add_argument("--no-edge", action="store_true", help="skip the edge load benchmark")


def machine() -> dict:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}


def _command() -> str:
    argv = sys.argv[1:] if sys.argv and Path(sys.argv[0]).name == "snn" else None
    return "snn " + shlex.join(argv) if argv else "snn bench"


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _accuracy(args) -> dict:
    from bench.accuracy import run_accuracy
    ablations = {}
    for item in args.ablation:
        if "=" not in item:
            raise SnnError(f"--ablation wants NAME=PATH, got {item!r}")
        k, v = item.split("=", 1)
        ablations[k] = v
    deepcod = None if str(args.deepcod).lower() == "none" else args.deepcod
    return run_accuracy(args.bundle, quick=args.quick, count=args.count, side_count=args.side_count, link=args.link,
                        cap=args.cap, seed=args.seed, ablations=ablations, deepcod=deepcod, threads=args.threads,
                        train_minutes=args.train_deepcod_minutes,
                        log=_log)


def run_end_to_end(args: argparse.Namespace, write_json) -> int:
    from bench import report

    if args.quick is False and getattr(args, "count", None) is not None and args.count <= 0:
        raise SnnError("--count must be positive")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    command = _command()
    t0 = time.time()
    stamp = {"date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
             "command": command}
    md: list[str] = []
    result: dict = {}
    if args.bench in ("accuracy", "all"):
        acc = _accuracy(args)
        result = dict(acc) if args.bench == "accuracy" else {"rows": acc["rows"], "accuracy": acc}
        md.append(report.accuracy_markdown(acc, command))
        report.plot_accuracy_vs_ber(acc, out / "accuracy_vs_ber.png")
        report.plot_accuracy_vs_bytes(acc, out / "accuracy_vs_bytes.png")
        print(report.bars_text(acc["bars"]))
        print(report.headline_table(acc))
    if args.bench in ("latency", "all"):
        from bench.latency import run_latency
        lat = run_latency(args.bundle, accuracy=result.get("accuracy") or (result if "rows" in result else None)
                          or _previous_accuracy(out), quick=args.quick, log=_log)
        if args.bench == "latency":
            result = dict(lat)
        else:
            result["latency"] = lat
        md.append(report.latency_markdown(lat, command))
        report.plot_latency(lat, out / "latency.png")
        print(report.latency_markdown(lat, command))
    fps = {r.get("bundle_fingerprint") or (r.get("config") or {}).get("bundle_fingerprint")
           for r in (result.get("accuracy"), result.get("latency")) if r}
    if len(fps) > 1:
        result["warning"] = f"the bundle changed during the run (fingerprints {sorted(fps)}): rerun"
        _log("WARNING: " + result["warning"])
    if args.bench == "all" and not args.no_edge:
        result["edge"] = _edge(args)
        md.append(report.edge_markdown(result["edge"], command))
    result.update(stamp)
    result["total_seconds"] = round(time.time() - t0, 1)
    name = "bench" if args.bench == "all" else args.bench
    header = (f"# SemanticNN benchmarks\n\n{stamp['date']} on {stamp['machine']['cpu']} "
              f"({stamp['machine']['cpus']} CPUs), `{command}`, {result['total_seconds']:.0f} s in all.\n")
    (out / f"{name}.md").write_text(header + "\n" + "\n".join(md))
    write_json(out / f"{name}.json", result)
    write_json(args.json, result)
    _log(f"wrote {out / (name + '.json')}, {out / (name + '.md')} and plots in {result['total_seconds']:.0f} s")
    return 0


def _previous_accuracy(out: Path) -> dict | None:
    """The accuracy figures of an earlier run in the same folder (to pick the latency baseline)."""
    import json
    for name in ("accuracy.json", "bench.json"):
        try:
            r = json.loads((out / name).read_text())
        except (OSError, ValueError):
            continue
        r = r.get("accuracy", r)
        if r.get("rows"):
            return r
    return None


def _edge(args) -> dict:
    try:
        from bench.edge_load import run_edge_bench
    except ImportError as exc:  # the edge extras are missing: say so in the results, do not fail the run
        return {"skipped": f"edge load benchmark unavailable: {exc}"}
    duration = args.edge_duration or (3.0 if args.quick else 10.0)
    try:
        return run_edge_bench([args.bundle] if args.bundle else None, duration=duration, log=_log)
    except SnnError as exc:
        return {"skipped": f"edge load benchmark failed: {exc}"}
