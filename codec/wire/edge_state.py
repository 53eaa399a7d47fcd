"""The edge's replay state: the highest counter used under each device's key, kept across restarts
(``KEYS.edge-state`` beside the keys file, docs/PROTOCOL.md §4.8)::

    {"format": "snn-edge-state", "version": 1,
     "devices": {"7": {"key": "5b4ac3c4", "highest": 513},
                 "9": {"key": "0c1d2e3f", "unknown": true}}}

`key` names the key the entry is for (`codec.wire.keys.key_id`); `highest` (0..2^32−1) is the
highest counter authenticated or committed by a resynchronisation, every counter at or below it
counting as used; `unknown` marks a device whose history the edge lost (its state was reset:
`--reset-replay-state`). A device id absent from the file, or whose entry names another key (an
earlier key of that id), is a new device. A missing or malformed file is an error, never a fresh
start (fail closed): the loader accepts exactly this format (and the v2 edge's
``{"format": "snn-edge-counters/1", "highest": {"7": 513}}``, read once and rewritten), and
refuses a `highest` that is negative, ≥ 2^32, a string, a float, a boolean or an object.

`snn keys new/add/rotate/revoke` create and update the file under its lock; the edge writes it
(whole, atomically) under the same lock, so neither ever writes back a stale copy of the other's
entries.
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from codec.wire.files import atomic_write, hold_lock, load_json, release_lock, strict_int
from codec.wire.keys import key_id
from codec.wire.replay import MAX_COUNTER
from snn.errors import SnnError

EDGE_STATE_FORMAT = "snn-edge-state"
EDGE_STATE_VERSION = 1
LEGACY_FORMAT = "snn-edge-counters/1"
MAX_EDGE_STATE_BYTES = 16 << 20


@dataclass(frozen=True, slots=True)
class CounterRecord:
    """One device's entry: the key it is for, and its highest used counter (None: unknown)."""

    key_id: str | None          # None only in a legacy (v2) file, which named no key
    highest: int | None

    @property
    def unknown(self) -> bool:
        return self.highest is None

    def as_json(self) -> dict:
        out: dict = {"key": self.key_id}
        if self.highest is None:
            out["unknown"] = True
        else:
            out["highest"] = self.highest
        return out


@dataclass
class EdgeState:
    """Every device's CounterRecord by device id."""

    devices: dict[int, CounterRecord] = field(default_factory=dict)
    legacy: bool = False        # read from a v2 file (rewritten in this format at the next write)

    def record_for(self, device_id: int, key: bytes) -> CounterRecord | None:
        """The record that applies to this device under this key; None: a new device (no entry, or
        the entry of an earlier key of that id)."""
        rec = self.devices.get(device_id)
        if rec is None or (rec.key_id is not None and rec.key_id != key_id(key)):
            return None
        return rec

    def adopt(self, keys: dict) -> None:
        """Name the key of every legacy entry (a v2 file named none) from `keys` (id -> DeviceKey);
        an entry for no provisioned device is dropped."""
        for dev, rec in list(self.devices.items()):
            if rec.key_id is None:
                if dev in keys:
                    self.devices[dev] = CounterRecord(key_id(keys[dev].key), rec.highest)
                else:
                    del self.devices[dev]
        self.legacy = False

    def to_json(self) -> bytes:
        devices = {str(dev): rec.as_json() for dev, rec in sorted(self.devices.items()) if rec.key_id}
        return (json.dumps({"format": EDGE_STATE_FORMAT, "version": EDGE_STATE_VERSION, "devices": devices},
                           separators=(",", ":")) + "\n").encode()


def edge_state_path(keys_path: str | Path) -> Path:
    keys_path = Path(keys_path)
    return keys_path.with_name(keys_path.name + ".edge-state")


def _device_id(text) -> int | None:
    if not isinstance(text, str) or not text.isascii() or not text.isdigit() or (len(text) > 1 and text[0] == "0"):
        return None
    value = int(text)
    return value if value <= 0xFFFF else None


def load_edge_state(path: str | Path) -> EdgeState:
    """The validated replay state; SnnError (one line) when it is missing or malformed."""
    path = Path(path)
    hint = ("the edge will not guess which counters were used: restore the file, or start once with "
            "--reset-replay-state (old frames of every device could then be answered once more)")
    if not path.exists() and not path.is_symlink():
        raise SnnError(f"edge replay state {path} does not exist; {hint}")
    doc = load_json(path, MAX_EDGE_STATE_BYTES, "edge replay state", hint=hint)
    bad = f"edge replay state {path} is malformed"
    if isinstance(doc, dict) and doc.get("format") == LEGACY_FORMAT and set(doc) == {"format", "highest"}:
        return _legacy(doc["highest"], bad, hint)
    if not isinstance(doc, dict) or set(doc) != {"format", "version", "devices"} \
            or doc["format"] != EDGE_STATE_FORMAT \
            or strict_int(doc["version"], EDGE_STATE_VERSION, EDGE_STATE_VERSION) is None:
        raise SnnError(f"{bad}: not a {EDGE_STATE_FORMAT} v{EDGE_STATE_VERSION} file; {hint}")
    if not isinstance(doc["devices"], dict):
        raise SnnError(f"{bad}: 'devices' must be an object; {hint}")
    out = EdgeState()
    for name, entry in doc["devices"].items():
        dev = _device_id(name)
        if dev is None:
            raise SnnError(f"{bad}: device id {name!r} is not a decimal 0..65535; {hint}")
        if not isinstance(entry, dict) or entry.keys() not in ({"key", "highest"}, {"key", "unknown"}):
            raise SnnError(f"{bad}: device {dev}'s entry must be {{\"key\", \"highest\"}} or "
                           f"{{\"key\", \"unknown\": true}}; {hint}")
        kid = entry["key"]
        if not isinstance(kid, str) or len(kid) != 8 or any(c not in "0123456789abcdef" for c in kid):
            raise SnnError(f"{bad}: device {dev}'s 'key' must be 8 lower-case hex digits; {hint}")
        if "unknown" in entry:
            if entry["unknown"] is not True:
                raise SnnError(f"{bad}: device {dev}'s 'unknown' must be true; {hint}")
            out.devices[dev] = CounterRecord(kid, None)
            continue
        top = strict_int(entry["highest"], 0, MAX_COUNTER)
        if top is None:
            raise SnnError(f"{bad}: device {dev}'s 'highest' must be an integer in 0..2^32-1, not "
                           f"{json.dumps(entry['highest'])[:40]}; {hint}")
        out.devices[dev] = CounterRecord(kid, top)
    return out


def _legacy(tops, bad: str, hint: str) -> EdgeState:
    if not isinstance(tops, dict):
        raise SnnError(f"{bad}: 'highest' must be an object; {hint}")
    out = EdgeState(legacy=True)
    for name, top in tops.items():
        dev, value = _device_id(name), strict_int(top, 0, MAX_COUNTER)
        if dev is None or value is None:
            raise SnnError(f"{bad}: device {name!r}: 'highest' must be an integer in 0..2^32-1, not "
                           f"{json.dumps(top)[:40]}; {hint}")
        out.devices[dev] = CounterRecord(None, value)
    return out


def write_edge_state(path: str | Path, state: EdgeState) -> None:
    """Replace the file durably (temporary file, fsync, rename, directory fsync). The caller holds
    `locked(path)` when others may write it too (the edge and `snn keys`)."""
    atomic_write(path, state.to_json(), 0o600)


def lock_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".lock")


@contextmanager
def locked(path: str | Path, wait: bool = True):
    """Hold the replay state's lock (an flock on ``PATH.lock``) for a read-modify-write."""
    fd = hold_lock(lock_path(path), f"the edge replay state {path}", wait=wait)
    try:
        yield
    finally:
        release_lock(fd)


def update_edge_state(path: str | Path, keys: dict, forget=frozenset()) -> EdgeState:
    """Drop the entries of `forget` (revoked or re-keyed devices: a new key starts new) and write
    the file back; `keys` (device id -> DeviceKey) names the keys of a legacy file's entries. The
    caller holds `locked(path)`. A missing file stays missing: whether old frames may be answered
    again is the edge operator's decision (--reset-replay-state), never a tool's."""
    state = load_edge_state(path)
    state.adopt(keys)
    for dev in forget:
        state.devices.pop(dev, None)
    write_edge_state(path, state)
    return state
