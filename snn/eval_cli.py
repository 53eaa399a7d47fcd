"""`snn eval [BUNDLE] --ber LIST [--model iid|ge|iid,ge] [--json PATH]`: accuracy per BER.

Prints a table of top-1 accuracy per BER (mean ± spread over channel seeds) on the full test set,
the payload bytes per inference and the float backbone's accuracy; --speed adds the edge half's
MACs, params and batched throughput. Without BUNDLE it evaluates the shipped default.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from snn.errors import SnnError


def _bers(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--ber takes comma-separated numbers, got {text!r}") from None
    if not values or any(not 0.0 <= v <= 0.5 for v in values):
        raise argparse.ArgumentTypeError(f"BER values must lie in [0, 0.5], got {text!r}")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", nargs="?", default=None, help="bundle file (default: the shipped default)")
    parser.add_argument("--ber", type=_bers, default=_bers("0,1e-3,1e-2,5e-2,1e-1"),
                        help="comma-separated bit error rates (default 0,1e-3,1e-2,5e-2,1e-1)")
    parser.add_argument("--model", default="iid", help="error model(s): iid, ge, or iid,ge (default iid)")
    parser.add_argument("--burst", type=float, default=None, help="mean burst length in bits for ge (default 8)")
    parser.add_argument("--seeds", type=int, default=3, help="channel seeds per BER (default 3)")
    parser.add_argument("--data", default=None,
                        help="data set spec with an optional :train|:test|:val suffix (no suffix: :test), e.g. "
                             "folder:PATH:val (default: the bundle's data set, :test split)")
    parser.add_argument("--count", type=int, default=None, help="evaluate only the first N test images (default: "
                                                                "the whole test split)")
    parser.add_argument("--speed", action="store_true", help="also measure the edge half (MACs, params, images/s)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures to this JSON file (default: not "
                                                                "written)")


def run(args: argparse.Namespace) -> int:
    import torch

    from channel.bit_errors import make_error_model
    from codec.bundle import load_bundle
    from codec.datasets import load_dataset, split_options
    from codec.evaluate import edge_speed, evaluate
    from codec.training.common import data_specs

    torch.set_num_threads(max(1, args.threads))
    models = [m.strip() for m in args.model.split(",") if m.strip()]
    for m in models:
        if m not in ("iid", "ge"):
            raise SnnError(f"unknown error model '{m}': use iid, ge or iid,ge")
    if args.seeds < 1:
        raise SnnError("--seeds must be at least 1")
    bundle = load_bundle(args.bundle)
    spec = args.data or data_specs(bundle.config["backbone"].get("data") or "fmnist")[1]
    data = load_dataset(spec, shape=bundle.input_shape, **split_options(bundle.config["backbone"])).take(args.count)
    if tuple(data.images.shape[1:3]) != tuple(bundle.input_shape[1:]) or data.images.shape[3] != bundle.input_shape[0]:
        raise SnnError(f"data set {spec} has images {data.images.shape[1:]} (H, W, C); bundle {bundle.name} expects "
                       f"{bundle.input_shape} (C, H, W)")
    figures = evaluate(bundle, data, args.ber, models, make_error_model, seeds=args.seeds, burst=args.burst)
    if args.speed:
        figures["edge"] = edge_speed(bundle, threads=args.threads)
    print(format_table(figures))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


def format_table(fig: dict) -> str:
    lines = [f"bundle {fig['bundle']} (codec {fig['fingerprint']}) on {fig['data']}, {fig['count']} images",
             f"payload: {fig['n_symbols']} symbols x {fig['bits_per_symbol']} bits = {fig['payload_bytes']} bytes "
             f"per inference ({'Gray' if fig['gray'] else 'binary'} codes)",
             f"float backbone accuracy: {100 * fig['backbone_accuracy']:.2f}%", "",
             f"{'model':<6}{'BER':>9}  {'top-1 %':>8}  {'± %':>6}  seeds"]
    for r in fig["results"]:
        lines.append(f"{r['model']:<6}{r['ber']:>9g}  {100 * r['accuracy']:>8.2f}  {100 * r['accuracy_std']:>6.2f}  {r['seeds']}")
    if "edge" in fig:
        e = fig["edge"]
        lines += ["", f"edge half (decoder + tail): {e['edge_mflops_per_image']:.2f} MFLOPs "
                      f"({e['edge_macs_per_image'] / 1e6:.2f} M MACs), {e['edge_params']} params per image; "
                      f"{e['edge_images_per_s']:.0f} images/s (batch {e['batch_size']}, {e['threads']} threads)"]
    return "\n".join(lines)
