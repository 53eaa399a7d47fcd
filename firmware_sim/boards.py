"""Board profiles: SRAM, flash, core and clock of an MCU, one small JSON file each.

Shipped profiles live in ``firmware_sim/boards/*.json``. A user adds a board with a file of the
same form, passed by path (``--board ./myboard.json``) or dropped in a folder named by
``$SNN_BOARDS_DIR``::

    {"name": "stm32l476", "core": "cortex-m4", "clock_hz": 80000000,
     "sram_bytes": 131072, "flash_bytes": 1048576,
     "reserved_sram_bytes": 16384, "reserved_flash_bytes": 49152}

``reserved_*`` is what the rest of the firmware keeps (stack, HAL, UART buffers, the runtime's
code); the encoder gets the remainder. ``core`` picks the cycle model in `cost_model`. For energy
per inference (`firmware_sim.energy`) a profile may give its run-mode supply current,
``run_amps_per_mhz`` or ``run_amps`` at ``clock_hz``, with ``supply_volts`` and ``power_source``
(the datasheet row); a profile without them gets no compute energy rather than a guess.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from snn.errors import SnnError

BOARDS_DIR = Path(__file__).with_name("boards")
REQUIRED = ("name", "core", "clock_hz", "sram_bytes", "flash_bytes")


@dataclass(frozen=True)
class Board:
    name: str
    core: str
    clock_hz: int
    sram_bytes: int
    flash_bytes: int
    reserved_sram_bytes: int = 0
    reserved_flash_bytes: int = 0
    description: str = ""
    run_amps_per_mhz: float | None = None   # MCU supply current in run mode, per MHz of core clock
    run_amps: float | None = None           # or at the configured clock
    supply_volts: float = 3.3
    power_source: str = ""                  # the datasheet row the current comes from

    @property
    def sram_for_model(self) -> int:
        return self.sram_bytes - self.reserved_sram_bytes

    @property
    def flash_for_model(self) -> int:
        return self.flash_bytes - self.reserved_flash_bytes


def _dirs() -> list[Path]:
    extra = os.environ.get("SNN_BOARDS_DIR")
    return ([Path(p) for p in extra.split(os.pathsep) if p] if extra else []) + [BOARDS_DIR]


def board_names() -> list[str]:
    names = set()
    for d in _dirs():
        if d.is_dir():
            names.update(p.stem for p in d.glob("*.json"))
    return sorted(names)


def board_from_dict(data: dict, source: str = "board") -> Board:
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise SnnError(f"{source}: board profile lacks {', '.join(missing)}")
    from firmware_sim.cost_model import CORES
    if data["core"] not in CORES:
        raise SnnError(f"{source}: unknown core {data['core']!r}; choose one of {', '.join(sorted(CORES))}")
    fields = {k: data[k] for k in Board.__dataclass_fields__ if k in data}
    for k in ("run_amps_per_mhz", "run_amps", "supply_volts"):
        if k in fields and fields[k] is not None:
            try:
                fields[k] = float(fields[k])
            except (TypeError, ValueError):
                raise SnnError(f"{source}: {k} must be a number") from None
            if not 0 < fields[k] < 100:
                raise SnnError(f"{source}: {k} must be positive (amperes, volts)")
    for k in ("clock_hz", "sram_bytes", "flash_bytes", "reserved_sram_bytes", "reserved_flash_bytes"):
        if k in fields:
            fields[k] = int(fields[k])
            if fields[k] < 0 or (k in REQUIRED and fields[k] == 0):
                raise SnnError(f"{source}: {k} must be positive")
    return Board(**fields)


def load_board(name_or_path: str) -> Board:
    """A board by name (shipped or in $SNN_BOARDS_DIR) or by the path of its JSON file."""
    path = Path(name_or_path)
    if path.suffix == ".json" and path.exists():
        candidates = [path]
    else:
        candidates = [d / f"{name_or_path.lower()}.json" for d in _dirs()]
    for cand in candidates:
        if cand.exists():
            try:
                data = json.loads(cand.read_text())
            except ValueError as exc:
                raise SnnError(f"{cand}: not valid JSON ({exc})") from None
            return board_from_dict(data, str(cand))
    raise SnnError(f"unknown board {name_or_path!r}; choose one of {', '.join(board_names())} "
                   "or pass the path of a board .json file")
