"""Every flag of every `snn` subcommand shows its default in --help (issue 24)."""
import argparse
import subprocess
import sys

import pytest

from snn.cli import SUBCOMMANDS, DefaultsHelpFormatter, build_parser, help_with_default


def _parsers():
    """(prog, parser) of every subcommand and sub-subcommand, as the dispatcher builds them."""
    for name in SUBCOMMANDS:
        stack = [build_parser([name])._subparsers._group_actions[0].choices[name]]
        while stack:
            parser = stack.pop()
            yield parser.prog, parser
            for action in parser._actions:
                if isinstance(action, argparse._SubParsersAction):
                    stack.extend(action.choices.values())


def _shown_default(action) -> bool:
    if isinstance(action, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
        return True
    if action.required or (not action.option_strings and action.nargs not in ("?", "*")):
        return True         # nothing to default
    return "default" in help_with_default(action).lower()


def test_every_flag_of_every_subcommand_shows_its_default():
    missing, flags = [], 0
    for prog, parser in _parsers():
        assert issubclass(parser.formatter_class, DefaultsHelpFormatter), prog   # inherited by every subparser
        for action in parser._actions:
            flags += 1
            if not _shown_default(action):
                missing.append(f"{prog} {'/'.join(action.option_strings) or action.dest}")
    assert flags > 250
    assert not missing, "flags whose --help does not say their default:\n  " + "\n  ".join(missing)


@pytest.mark.parametrize("argv, needles", [
    (["train", "codec", "--help"], ["--channels CHANNELS symbol channels C_b (default: 2)",
                                    "(default: 3)", "(default: 0.003)"]),
    (["device", "run", "--help"], ["--jsonl write one JSON line", "(default: off)"]),
])
def test_the_rendered_help_carries_the_defaults(argv, needles):
    out = subprocess.run([sys.executable, "-m", "snn", *argv], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())
    for needle in needles:
        assert needle in text, needle
