"""`snn train backbone|codec`: argument parsing only; the loops live in train_backbone / train."""
from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path


_PARSERS: dict[str, argparse.ArgumentParser] = {}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="what", metavar="backbone|codec", required=True)
    b = sub.add_parser("backbone", help="train a float backbone on a data set")
    _PARSERS["backbone"] = b
    b.add_argument("--data", default="fmnist",
                   help="fmnist, or a spec such as cifar10:PATH or folder:PATH; training reads its :train split "
                        "and scores its :test split (:val where a tree has no test/) (default fmnist)")
    b.add_argument("--arch", default="resnet14", help="resnet8/14/20, resnet18/50, mobilenetv2[_small]")
    b.add_argument("-o", "--out", required=True, type=Path)
    b.add_argument("--epochs", type=int, default=None,
                   help="epochs (default: at least 12 and at least 3,000 optimisation steps, so a small data set "
                        "gets more epochs)")
    b.add_argument("--batch-size", type=int, default=128)
    b.add_argument("--optimizer", choices=["sgd", "adamw"], default="sgd")
    b.add_argument("--lr", type=float, default=None)
    b.add_argument("--width", type=float, default=1.0, help="width multiplier")
    b.add_argument("--split", default=None, help="split-point stage name (default: per arch)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--threads", type=int, default=None)
    b.add_argument("--count", type=int, default=None, help="use only the first N train/test images")
    b.add_argument("--resume", action="store_true", help="continue from OUT.ckpt")
    _device_flag(b)
    _split_flags(b, "default: the tree must have train/ and test/ sub-folders")
    _add_scale_arguments(b)

    c = sub.add_parser("codec", help="train the semantic codec on a frozen backbone")
    _PARSERS["codec"] = c
    c.add_argument("--backbone", required=True, type=Path)
    c.add_argument("-o", "--out", required=True, type=Path)
    c.add_argument("--data", default=None,
                   help="data set spec (fmnist, cifar10:PATH, folder:PATH); training reads its :train split and "
                        "scores its :test split (:val where a tree has no test/) (default: the backbone's data set)")
    c.add_argument("--split", default=None, help="last stage on the device (default: the backbone's split)")
    c.add_argument("--decode-to", default=None,
                   help="stage whose output the decoder reconstructs; the edge runs only the stages after it "
                        "(default: the split stage)")
    c.add_argument("--levels", type=int, default=8, help="quantization centres L (default 8 = 3 bits)")
    c.add_argument("--channels", type=int, default=2, help="symbol channels C_b")
    c.add_argument("--enc-kernel", type=int, default=3)
    c.add_argument("--enc-stride", type=int, default=1)
    c.add_argument("--enc-hidden", type=int, default=32, help="encoder hidden channels")
    c.add_argument("--dec-hidden", type=int, default=48, help="decoder hidden channels")
    c.add_argument("--usage-weight", type=float, default=0.02, help="centre-usage loss weight")
    c.add_argument("--int8-aware", action="store_true",
                   help="device-side weights on the int8 grid 'snn export' uses (backbone head snapped, encoder "
                        "trained through it), so the int8 encoder picks the symbols torch picks")
    c.add_argument("--crop", type=float, default=1.0, help="spatial crop ratio: send a centred sub-window")
    c.add_argument("--stage1-steps", type=int, default=400,
                   help="stage-1 optimisation steps; the epochs are derived from the data size, at least 2 "
                        "(default %(default)s)")
    c.add_argument("--stage2-steps", type=int, default=1400,
                   help="stage-2 optimisation steps; the epochs are derived from the data size, at least "
                        "14 (default %(default)s)")
    c.add_argument("--stage1-epochs", type=int, default=None, help="override --stage1-steps with an epoch count")
    c.add_argument("--stage2-epochs", type=int, default=None, help="override --stage2-steps with an epoch count")
    c.add_argument("--finetune-head", action="store_true",
                   help="stage 2 also trains the device-side backbone stages (int8-aware with --int8-aware), "
                        "distilled from the frozen original backbone")
    c.add_argument("--head-lr", type=float, default=1e-4, help="learning rate of --finetune-head (default 1e-4)")
    c.add_argument("--init", type=Path, default=None, metavar="BUNDLE",
                   help="start from this bundle's codec (e.g. to fine-tune it with --finetune-head); --backbone "
                        "may name a bundle too")
    c.add_argument("--batch-size", type=int, default=256)
    c.add_argument("--lr", type=float, default=3e-3)
    c.add_argument("--ber-min", type=float, default=1e-4)
    c.add_argument("--ber-max", type=float, default=0.2)
    c.add_argument("--clean-share", type=float, default=0.15, help="share of clean (BER 0) samples")
    c.add_argument("--erasure-prob", type=float, default=0.05, help="per-image chance of a lost fragment")
    c.add_argument("--xai", action="store_true", help="add the IG asymmetry-compensation loss (captum)")
    c.add_argument("--xai-weight", type=float, default=0.1)
    c.add_argument("--xai-every", type=int, default=8, help="compute IG on every k-th batch")
    c.add_argument("--ber-conditioning", action="store_true",
                   help="condition the decoder's attention blocks on the frame's BER (the research method; "
                        "off by default since it measured no gain: codec/zoo/TRAINING.md, ablations)")
    c.add_argument("--no-ber-conditioning", action="store_true",
                   help="the decoder ignores BER (the default; kept so that older commands still run)")
    c.add_argument("--binary", action="store_true", help="ablation: natural binary codes instead of Gray")
    c.add_argument("--soft-demapper", action="store_true",
                   help="the edge reads each received symbol as its MMSE centre given the frame's BER "
                        "(posterior over the centres its bits may have been sent as) instead of its centre")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--threads", type=int, default=None)
    c.add_argument("--count", type=int, default=None, help="use only the first N train/test images")
    c.add_argument("--resume", action="store_true", help="continue from OUT.ckpt")
    _device_flag(c)
    _split_flags(c, "default: the split the backbone was trained with")
    _add_scale_arguments(c)


def _add_scale_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nproc", type=int, default=None, metavar="N",
                   help="data-parallel over N local processes (torch.distributed: gloo on the CPU, NCCL on CUDA); "
                        "--batch-size stays the global batch. Under torchrun the group is torchrun's")
    p.add_argument("--json", type=Path, default=None, metavar="PATH",
                   help="write world_size, test_accuracy and timings as JSON to PATH")


def _device_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda (default auto)")


def _split_flags(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument("--holdout", type=float, default=None, metavar="F",
                        help=f"folder:PATH as one tree: hold this fraction of each class out as the test split "
                             f"({default})")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the --holdout split (default 0)")


def run(args: argparse.Namespace) -> int:
    from codec.training.distributed import launch

    launch(train_rank, args.nproc, args, command_line(args), device=args.device)
    return 0


def train_rank(args: argparse.Namespace, command: str) -> None:
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
        train_codec(args, command=command, make_errors=make_error_model)
        figures = None
    dist = current()
    if args.what != "backbone" and dist.is_main:
        # the bundle carries its ONNX edge half, so a torch-free edge (the default engine) serves it
        from export.onnx_export import add_edge_to_bundle
        add_edge_to_bundle(args.out)
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
