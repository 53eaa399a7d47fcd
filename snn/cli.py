"""Thin dispatcher for the `snn` command.

Each subcommand is a module exposing `add_arguments(parser)` and `run(args) -> int`: in its
component (`<component>/cli.py`), or here in `snn/` when it composes several components (see
`snn/__init__.py`). Modules are imported only when their subcommand runs, so `snn device ...`
never imports torch.

Every parser, down to the sub-subcommands the modules add, is a `SnnParser`, whose help shows
each flag's default (`DefaultsHelpFormatter`): a flag whose help does not say its default gets
"(default: X)" appended, an on/off flag "(default: off)". A flag whose default is None must say
in words what happens without it (tests/snn/test_help_defaults.py checks every one).
"""
from __future__ import annotations

import argparse
import copy
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


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Appends "(default: X)" to a flag's help unless the help already names its default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        return help_with_default(action)

    def _format_action(self, action: argparse.Action) -> str:
        if action.help is None and help_with_default(action):   # argparse prints nothing for help=None
            action = copy.copy(action)
            action.help = help_with_default(action)
        return super()._format_action(action)


def help_with_default(action: argparse.Action) -> str:
    """The help text of `action` as --help shows it (with its default, where one is known)."""
    text = action.help or ""
    if action.help == argparse.SUPPRESS or "default" in text.lower():
        return text
    if isinstance(action, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
        return text
    if action.required or (not action.option_strings and action.nargs not in ("?", "*")):
        return text
    if isinstance(action, argparse._StoreTrueAction):
        shown = "off"
    elif isinstance(action, argparse._StoreFalseAction):
        shown = "on"
    elif action.default is None or action.default is argparse.SUPPRESS:
        return text           # the help must say it in words: a None default means "derived" or "not done"
    elif isinstance(action.default, (list, tuple)):
        shown = ",".join(str(v) for v in action.default).replace("%", "%%") or "none"
    else:
        shown = "%(default)s"
    return f"{text} (default: {shown})" if text else f"default: {shown}"


class SnnParser(argparse.ArgumentParser):
    """An ArgumentParser whose help shows defaults; its subparsers are SnnParsers too."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", DefaultsHelpFormatter)
        super().__init__(*args, **kwargs)

    def add_subparsers(self, **kwargs):
        action = super().add_subparsers(**kwargs)
        cls = action._parser_class
        if not issubclass(cls, SnnParser):      # a module's own parser class (e.g. one-line errors): mix us in
            action._parser_class = type(cls.__name__, (cls, SnnParser), {})
        return action


def _load(module_name: str):
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return None
        raise


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = SnnParser(prog="snn", description=__doc__.splitlines()[0])
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
