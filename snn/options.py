"""Command-line options from a config dataclass's fields: one place per default.

A library entry point takes a validated dataclass (`codec.training.recipe.CodecRecipe`, ...);
its CLI adds one option per field with the field's default, type and help, and builds the
dataclass back from the parsed arguments, so a default is written once, in the dataclass:

    add_field_options(parser, CodecRecipe, flags={"out": ("-o", "--out")})
    recipe = from_arguments(CodecRecipe, args)

A field's ``metadata`` may carry ``help`` (the option's help; a field whose default is None
must say in words what happens without it, e.g. "(default: the backbone's split)") and
``required`` (the option must be given). Booleans become ``store_true`` flags. Part of the
project's floor: it imports nothing else of the project.
"""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from pathlib import Path


def _value_type(hint) -> type | None:
    """The argparse `type=` of a field annotation (`int`, `float | None`, `Path | None`, ...)."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        hint = args[0] if len(args) == 1 else None
    return hint if hint in (int, float, Path) else None


def add_field_options(parser: argparse.ArgumentParser, cls, names: list[str] | None = None,
                      flags: dict[str, tuple[str, ...]] | None = None) -> None:
    """One option per field of dataclass `cls` (or of the fields in `names`, in that order)."""
    hints = typing.get_type_hints(cls)
    by_name = {f.name: f for f in dataclasses.fields(cls)}
    for name in names or list(by_name):
        field = by_name[name]
        option = (flags or {}).get(name) or ("--" + name.replace("_", "-"),)
        kw: dict = {"dest": name, "help": field.metadata.get("help")}
        if field.metadata.get("required") or field.default is dataclasses.MISSING:
            kw["required"] = True
        else:
            kw["default"] = field.default
        if hints[name] is bool:
            kw["action"] = "store_true"
        else:
            kw["type"] = _value_type(hints[name])
            if field.metadata.get("metavar"):
                kw["metavar"] = field.metadata["metavar"]
        parser.add_argument(*option, **kw)


def from_arguments(cls, args: argparse.Namespace, **overrides):
    """The dataclass `cls` from parsed arguments (fields the parser lacks keep their default)."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    return cls(**{**values, **overrides})
