"""One way to choose a thing by name: a registry per family (transports, links, error models, ...).

    ERROR_MODELS = Registry("error model")

    @ERROR_MODELS.register("ge", "gilbert-elliott", "burst", summary="Gilbert-Elliott bursts")
    def _gilbert_elliott(...): ...

    ERROR_MODELS.get("burst")      # the function registered as "ge"
    ERROR_MODELS.names()           # ("iid", "ge", ...) in registration order, for --help
    ERROR_MODELS.choices()         # "iid, ge, awgn, lora or none", for errors and --help

Names are matched case-insensitively after stripping blanks. An unknown name raises the
family's error (an `SnnError` by default, so the CLI prints one line and exits 2) listing every
name, or each entry's `example` (e.g. "cifar10:PATH:test") where the bare name would not say how
to write it. A name registered twice is a programming error (ValueError at import).

Part of the project's floor (with snn.errors): it imports nothing else of the project, so every
component may register its entries here and another component may add entries to a family it
imports (a new error model, a device data source, a lowering op).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Generic, Iterator, TypeVar

from snn.errors import SnnError

T = TypeVar("T")


class UnknownNameError(SnnError, ValueError):
    """A name no entry of the family has. A ValueError too: a bad value for a by-name argument."""


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered thing: its name, the other names it answers to, a line for --help."""

    name: str
    value: T
    aliases: tuple[str, ...] = ()
    summary: str = ""
    example: str = ""


class Registry(Generic[T]):
    """Named entries of one family, looked up by name (see the module docstring)."""

    def __init__(self, family: str, error: type[Exception] = UnknownNameError) -> None:
        self.family = family
        self.error = error
        self._entries: dict[str, Entry[T]] = {}     # primary name -> entry, registration order
        self._lookup: dict[str, str] = {}           # every name and alias -> primary name

    @staticmethod
    def _key(name: str) -> str:
        return str(name).strip().lower()

    def add(self, name: str, value: T, *aliases: str, summary: str = "", example: str = "") -> T:
        """Register `value` under `name` (and `aliases`); returns it."""
        entry = Entry(self._key(name), value, tuple(self._key(a) for a in aliases), summary, example)
        for key in (entry.name, *entry.aliases):
            if key in self._lookup:
                raise ValueError(f"{self.family} {key!r} is registered twice")
            self._lookup[key] = entry.name
        self._entries[entry.name] = entry
        return value

    def register(self, name: str, *aliases: str, summary: str = "",
                 example: str = "") -> Callable[[T], T]:
        """Decorator form of `add`."""
        def decorate(value: T) -> T:
            return self.add(name, value, *aliases, summary=summary, example=example)
        return decorate

    def entry(self, name: str) -> Entry[T]:
        """The entry `name` (or an alias of it) names; the family's error otherwise."""
        primary = self._lookup.get(self._key(name))
        if primary is None:
            raise self.error(f"unknown {self.family} {str(name)!r}; use {self.choices()}")
        return self._entries[primary]

    def get(self, name: str) -> T:
        """The value registered under `name` (or an alias of it)."""
        return self.entry(name).value

    def names(self) -> tuple[str, ...]:
        """Primary names, in registration order."""
        return tuple(self._entries)

    def entries(self) -> tuple[Entry[T], ...]:
        return tuple(self._entries.values())

    def choices(self) -> str:
        """"a, b or c": each entry's example (else its name), for errors and --help."""
        shown = [e.example or e.name for e in self._entries.values()]
        if len(shown) < 2:
            return shown[0] if shown else "nothing (none registered)"
        return ", ".join(shown[:-1]) + " or " + shown[-1]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._key(name) in self._lookup

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
