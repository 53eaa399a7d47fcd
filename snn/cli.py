"""Thin dispatcher for the `snn` command.

Each subcommand is a module exposing `add_arguments(parser)` and `run(args) -> int`: in its
component (`<component>/cli.py`), or here in `snn/` when it composes several components (see
`snn/__init__.py`). Modules are imported only when their subcommand runs, so `snn device ...`
never imports torch.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from snn.errors import SnnError
from snn.process import passive_omp_threads

# name -> (module, help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("bench.demo_cli", "run the main job on the shipped default bundle"),
    "train": ("snn.train_cli", "train a backbone or a codec"),
    "eval": ("snn.eval_cli", "accuracy per BER of a bundle"),
    "export": ("export.cli", "export the device half to float and int8 ONNX"),
    "device": ("device.cli", "run the device client"),
    "edge": ("edge.cli", "run the edge server"),
    "channel": ("channel.cli", "emulate a lossy link"),
    "mcu": ("firmware_sim.cli", "MCU budget report and serial device emulation"),
    "bench": ("bench.cli", "end-to-end benchmarks"),
    "keys": ("snn.keys_cli", "provision per-device keys"),
}


def _load(module_name: str):
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return None
        raise


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="snn", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = argv[0] if argv and argv[0] in SUBCOMMANDS else None
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == wanted:
            module = _load(module_name)
            if module is not None:
                module.add_arguments(p)
                p.set_defaults(_run=module.run)
            else:
                p.add_argument("rest", nargs=argparse.REMAINDER)
                p.set_defaults(_missing=module_name)
    return parser


def main(argv: list[str] | None = None) -> int:
    passive_omp_threads()   # before any command imports torch (snn/process.py says why)
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if getattr(args, "_missing", None):
        print(f"snn {args.command}: not available yet in this version ({args._missing} has not landed)",
              file=sys.stderr)
        return 2
    try:
        return int(args._run(args) or 0)
    except SnnError as exc:
        print(f"snn {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"snn {args.command}: interrupted", file=sys.stderr)
        return 130
    except ModuleNotFoundError as exc:
        print(f"snn {args.command}: needs the Python package '{exc.name}'; install the extras for this "
              f"side, e.g. pip install -e '.[all]'", file=sys.stderr)
        return 2
