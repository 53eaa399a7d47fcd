"""`snn train backbone|codec`: argument parsing only; the loops live in train_backbone / train."""
from __future__ import annotations

import argparse
import inspect
import json
import shlex
from pathlib import Path

from snn.errors import SnnError
from snn.options import add_field_options, from_arguments


_PARSERS: dict[str, argparse.ArgumentParser] = {}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from codec.model.backbones import BACKBONES   # torch: `snn train` loads it anyway
    from codec.training.recipe import CodecRecipe
    from codec.training.train_backbone import train_backbone

    # `snn train backbone` takes its defaults from train_backbone's keywords: one place per default
    default = {name: p.default for name, p in inspect.signature(train_backbone).parameters.items()}

    sub = parser.add_subparsers(dest="what", metavar="backbone|codec", required=True)
    b = sub.add_parser("backbone", help="train a float backbone on a data set")
    _PARSERS["backbone"] = b
    b.add_argument("--data", default="fmnist",
                   help="fmnist, or a spec such as cifar10:PATH or folder:PATH; training reads its :train split "
                        "and scores its :test split (:val where a tree has no test/) (default fmnist)")
    b.add_argument("--arch", default="resnet14", help=f"backbone: {', '.join(BACKBONES)} (default resnet14)")
    b.add_argument("-o", "--out", required=True, type=Path)
    b.add_argument("--epochs", type=int, default=None,
                   help="epochs (default: at least 12 and at least 3,000 optimisation steps, so a small data set "
                        "gets more epochs)")
    b.add_argument("--batch-size", type=int, default=default["batch_size"])
    b.add_argument("--optimizer", choices=["sgd", "adamw"], default=default["optimizer"])
    b.add_argument("--lr", type=float, default=None, help="learning rate (default: 0.1 for sgd, 2e-3 for adamw)")
    b.add_argument("--width", type=float, default=default["width"], help="width multiplier")
    b.add_argument("--split", default=None, help="split-point stage name (default: per arch)")
    b.add_argument("--seed", type=int, default=default["seed"])
    b.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice, one per "
                                                             "core)")
    b.add_argument("--count", type=int, default=None, help="use only the first N train/test images (default: every "
                                                           "image)")
    b.add_argument("--resume", action="store_true", help="continue from OUT.ckpt")
    b.add_argument("--device", default=default["device"], help="auto (CUDA when present), cpu or cuda (default "
                                                               "%(default)s)")
    b.add_argument("--holdout", type=float, default=None, metavar="F",
                   help="folder:PATH as one tree: hold this fraction of each class out as the test split "
                        "(default: the tree must have train/ and test/ sub-folders)")
    b.add_argument("--split-seed", type=int, default=default["split_seed"], help="seed of the --holdout split "
                                                                                 "(default %(default)s)")
    _add_scale_arguments(b)

    c = sub.add_parser("codec", help="train the semantic codec on a frozen backbone")
    _PARSERS["codec"] = c
    add_field_options(c, CodecRecipe, flags={"out": ("-o", "--out")})   # defaults: the recipe's fields
    c.add_argument("--no-ber-conditioning", action="store_true",
                   help="the decoder ignores BER (the default; kept so that older commands still run)")
    _add_scale_arguments(c)


def _add_scale_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nproc", type=int, default=None, metavar="N",
                   help="data-parallel over N local processes (torch.distributed: gloo on the CPU, NCCL on CUDA); "
                        "--batch-size stays the global batch. Under torchrun the group is torchrun's "
                        "(default: one process)")
    p.add_argument("--json", type=Path, default=None, metavar="PATH",
                   help="write world_size, test_accuracy and timings as JSON to PATH (default: not written)")


def run(args: argparse.Namespace) -> int:
    from codec.training.distributed import launch

    recipe = codec_recipe(args) if args.what == "codec" else None   # refused here, before any rank starts
    if recipe is not None and (recipe.board or recipe.device_budget is not None):
        recipe = fit_device_shape(recipe, args)
    launch(train_rank, args.nproc, args, command_line(args), recipe, device=args.device)
    return 0


def fit_device_shape(recipe, args: argparse.Namespace):
    """--board / --device-budget: the recipe with the first shape that fits (export/device_fit.py),
    found once, before any rank starts; the arguments follow it so the recorded command line names
    the chosen flags."""
    import dataclasses

    from export.device_fit import fit_recipe

    fitted = fit_recipe(recipe, log=lambda line: print(line, flush=True))
    for f in dataclasses.fields(fitted):
        if hasattr(args, f.name):
            setattr(args, f.name, getattr(fitted, f.name))
    return fitted


def report_device_fit(bundle_path: Path) -> None:
    """After training: export the int8 encoder once and say which boards it fits; a codec that
    fits none says so here, not only at `snn export`."""
    import os
    import sys
    import tempfile

    import numpy as np

    from codec.bundle import load_bundle
    from export.device_fit import boards_fitting, export_bar
    from export.pipeline import build_encoders

    bundle = load_bundle(bundle_path)
    c, h, w = bundle.input_shape
    cal = np.random.default_rng(0).integers(0, 256, (8, h, w, c), dtype=np.uint8)   # sizes, not accuracy
    with tempfile.TemporaryDirectory(prefix="snn-size-") as tmp:
        _, int8_path, _ = build_encoders(bundle, tmp, cal, method="minmax", activations="16", log=lambda _m: None)
        size = os.path.getsize(int8_path)
        fits = boards_fitting(int8_path)
    good = [name for name, ok in fits.items() if ok]
    if good:
        print(f"device: int8 encoder ~{size:,} B fits {', '.join(good)} (snn export makes and checks it)")
    else:
        print(f"snn train codec: warning: its int8 encoder is ~{size:,} B, over the export's {export_bar():,} B "
              f"bar, so it fits none of the boards ({', '.join(fits)}); 'snn export' will miss that bar. "
              f"Retrain with --board NAME (e.g. --board stm32f411) or --device-budget BYTES to get a shape that "
              f"fits", file=sys.stderr)


def codec_recipe(args: argparse.Namespace):
    """The validated `CodecRecipe` of `snn train codec`'s arguments."""
    from codec.training.recipe import CodecRecipe

    if args.ber_conditioning and args.no_ber_conditioning:
        raise SnnError("--ber-conditioning and --no-ber-conditioning contradict each other: give one")
    return from_arguments(CodecRecipe, args)


def train_rank(args: argparse.Namespace, command: str, recipe=None) -> None:
    """One rank's whole run (the only rank unless --nproc/torchrun); rank 0 writes --json."""
    import time

    from codec.training.distributed import current

    t0 = time.time()
    if args.what == "backbone":
        from codec.training.train_backbone import train_backbone
        record = train_backbone(args.data, args.arch, args.out, epochs=args.epochs, batch_size=args.batch_size,
                                optimizer=args.optimizer, lr=args.lr, width=args.width, split=args.split,
                                seed=args.seed, threads=args.threads, resume=args.resume, count=args.count,
                                command=command, holdout=args.holdout, split_seed=args.split_seed,
                                device=args.device)
        figures = {"test_accuracy": record["accuracy"], "train_seconds": record["train_seconds"],
                   "epoch_seconds": record["epoch_seconds"]}
    else:
        from channel.bit_errors import make_error_model
        from codec.training.train_codec import train_codec
        from export.onnx_export import edge_onnx_bytes
        # the bundle carries its ONNX edge half, so a torch-free edge (the default engine) serves it
        train_codec(recipe, command=command, make_errors=make_error_model, export_edge=edge_onnx_bytes)
        figures = None
    dist = current()
    if args.what == "codec" and dist.is_main:
        report_device_fit(recipe.out)
    if not (args.json and dist.is_main):
        return
    if figures is None:
        from codec.bundle import load_bundle
        manifest = load_bundle(args.out).manifest
        results = manifest["metrics"]["results"]
        figures = {"test_accuracy": next(r["accuracy"] for r in results if r["ber"] == 0.0), "results": results,
                   "train_seconds": manifest.get("train_seconds")}
    figures = {"what": args.what, "world_size": dist.world_size, "global_batch": args.batch_size,
               "out": str(args.out), "command": command, **figures,
               "wall_seconds": round(time.time() - t0, 2)}
    args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


def command_line(args: argparse.Namespace) -> str:
    """The equivalent command line (only options that differ from their defaults), for the record."""
    parts = ["snn", "train", args.what]
    for action in _PARSERS[args.what]._actions:
        if not action.option_strings or action.dest in ("help", "json"):
            continue
        value = getattr(args, action.dest, None)
        if value == action.default and action.dest != "seed":
            continue
        flag = max(action.option_strings, key=len)
        if isinstance(action, argparse._StoreTrueAction):
            parts.append(flag)
        else:
            parts += [flag, str(value)]
    return shlex.join(parts)
