"""Provisioned device keys (the keys file) and a device's persistent frame counter (its state file).

Keys file (JSON, mode 0600, docs/PROTOCOL.md §4.4)::

    {"format": "snn-keys", "version": 1,
     "devices": [{"id": 7, "key": "<32 hex digits>", "fingerprint": "2bf16127"}, ...]}

`id` is the 16-bit device id, `key` its AES-128 key, `fingerprint` the codec it is provisioned
for (optional: absent means "whichever codec the edge serves that authenticates it"),
`integrity` (optional, default false) the payload-integrity mode of §4.6. The edge reads the
whole file, a device only its own entry. This module needs no torch: the device reads it too.

State file (beside the key file: ``KEYFILE.dev<ID>.state``, §4.3)::

    {"format": "snn-device-state", "version": 1, "key": "<key id>", "next": N, "limit": L}

`next` is written *ahead* (`RESERVE` counters at a time) before any of those counters goes on the
air, so a crash can skip counters but never reuse one (a reused counter would repeat a CTR
keystream); `limit` is the highest counter the device may use before the edge vouches for more
(§4.3: the highest counter it answered, plus MAX_GAP). The state is locked (`flock`) for as long
as the device runs: a second process on the same key and id refuses. A device with no state,
or a state made for another key, has no counter it may use: it resynchronises first (§4.7).
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path

from codec.wire.crypto import ZERO_KEY
from codec.wire.files import atomic_write, hold_lock, load_json, release_lock, strict_int
from codec.wire.replay import MAX_COUNTER, MAX_GAP
from snn.errors import SnnError

KEYS_FORMAT = "snn-keys"
KEYS_VERSION = 1
DEVICE_STATE_FORMAT = "snn-device-state"
DEVICE_STATE_VERSION = 1
RESERVE = 256
MAX_KEYS_BYTES = 16 << 20       # 65,536 entries of ~100 bytes fit many times over
MAX_STATE_BYTES = 4096
WARN_REMAINING = 1 << 24        # a device says so when fewer counters than this are left
_ENTRY_FIELDS = {"id", "key", "fingerprint", "integrity"}


def key_id(key: bytes) -> str:
    """A short public name of a key (8 hex digits of SHA-256): state files name the key they are
    for, so a state made under an old key is never taken for the new one's."""
    return hashlib.sha256(b"snn key id\0" + key).hexdigest()[:8]


@dataclass(frozen=True, slots=True)
class DeviceKey:
    """One provisioned device."""

    device_id: int
    key: bytes
    fingerprint: bytes | None = None
    integrity: bool = False          # the MIC also covers the encrypted payload (§4.6)

    def as_json(self) -> dict:
        entry = {"id": self.device_id, "key": self.key.hex()}
        if self.fingerprint is not None:
            entry["fingerprint"] = self.fingerprint.hex()
        if self.integrity:
            entry["integrity"] = True
        return entry

    @property
    def key_id(self) -> str:
        return key_id(self.key)


def check_device_ids(device_ids: list[int]) -> None:
    if len(set(device_ids)) != len(device_ids):
        raise SnnError("each --device id may appear once")
    for dev in device_ids:
        if not 0 <= dev <= 0xFFFF:
            raise SnnError(f"device id {dev} is outside 0..65535")


def new_key(device_id: int, fingerprint: bytes | None = None, integrity: bool = False) -> DeviceKey:
    """A fresh random 128-bit key (from `secrets`; never the all-zero key)."""
    if fingerprint is not None and len(fingerprint) != 4:
        raise SnnError("a codec fingerprint is 4 bytes (8 hex digits)")
    key = secrets.token_bytes(16)
    while key == ZERO_KEY:   # probability 2^-128, but the rule is absolute
        key = secrets.token_bytes(16)
    return DeviceKey(device_id, key, fingerprint, integrity)


def new_keys(device_ids: list[int], fingerprint: bytes | None = None, integrity: bool = False) -> list[DeviceKey]:
    """Fresh keys for distinct device ids."""
    check_device_ids(device_ids)
    return [new_key(dev, fingerprint, integrity) for dev in device_ids]


def keys_text(keys) -> bytes:
    return (json.dumps({"format": KEYS_FORMAT, "version": KEYS_VERSION,
                        "devices": [k.as_json() for k in sorted(keys, key=lambda k: k.device_id)]}, indent=1)
            + "\n").encode()


def write_keys(path: str | Path, keys, force: bool = False) -> Path:
    """Write a keys file readable by its owner only (atomically); refuse to overwrite unless `force`."""
    path = Path(path)
    if path.exists() and not force:
        raise SnnError(f"{path} exists: refusing to overwrite keys (use --force to replace them, or "
                       f"'snn keys add' to add devices)")
    try:
        return atomic_write(path, keys_text(list(keys.values()) if isinstance(keys, dict) else keys), 0o600)
    except OSError as exc:
        raise SnnError(f"cannot write keys file {path}: {exc.strerror or exc}") from None


def _hex(value, size: int) -> bytes | None:
    if not isinstance(value, str) or len(value) != 2 * size:
        return None
    try:
        return bytes.fromhex(value)
    except ValueError:
        return None


def load_keys(path: str | Path) -> dict[int, DeviceKey]:
    """Every entry of a keys file by device id; SnnError with one clear line on any defect (not a
    regular file, readable by others, not JSON, nested, a field of the wrong type, an all-zero key)."""
    path = Path(path)
    hint = "make one with 'snn keys new'"
    doc = load_json(path, MAX_KEYS_BYTES, "keys file", private=True, hint=hint)
    if not isinstance(doc, dict) or doc.get("format") != KEYS_FORMAT or doc.get("version") != KEYS_VERSION \
            or type(doc.get("version")) is not int:
        raise SnnError(f"{path} is not an {KEYS_FORMAT} v{KEYS_VERSION} file; {hint}")
    entries = doc.get("devices")
    if not isinstance(entries, list):
        raise SnnError(f"{path}: 'devices' must be a list of device entries; {hint}")
    out: dict[int, DeviceKey] = {}
    for n, entry in enumerate(entries):
        if not isinstance(entry, dict) or not set(entry) <= _ENTRY_FIELDS:
            extra = sorted(set(entry) - _ENTRY_FIELDS) if isinstance(entry, dict) else None
            raise SnnError(f"{path}: device entry {n} must be an object with id, key[, fingerprint, integrity]"
                           + (f" (unknown field {extra[0]!r})" if extra else ""))
        dev = strict_int(entry.get("id"), 0, 0xFFFF)
        key = _hex(entry.get("key"), 16)
        fp_raw = entry.get("fingerprint")
        fp = None if fp_raw is None else _hex(fp_raw, 4)
        integrity = entry.get("integrity", False)
        if dev is None or key is None or (fp_raw is not None and fp is None) or type(integrity) is not bool:
            raise SnnError(f"{path}: device entry {n} needs an integer id 0..65535, a key of 32 hex digits, "
                           f"optionally a fingerprint of 8 hex digits and a boolean integrity")
        if key == ZERO_KEY:
            raise SnnError(f"{path}: device {dev} has the all-zero key, which is public (--insecure): give it a "
                           f"real key ('snn keys rotate --device {dev} {path}')")
        if dev in out:
            raise SnnError(f"{path}: device {dev} appears twice")
        out[dev] = DeviceKey(dev, key, fp, integrity)
    return out      # may be empty: every device revoked (the edge then answers nobody)


def device_key(path: str | Path, device_id: int) -> DeviceKey:
    keys = load_keys(path)
    if device_id not in keys:
        raise SnnError(f"{path} has no key for device {device_id} (it holds {sorted(keys)[:10] or 'none'})")
    return keys[device_id]


def state_path(key_file: str | Path, device_id: int) -> Path:
    key_file = Path(key_file)
    return key_file.with_name(f"{key_file.name}.dev{device_id}.state")


# --- the device's counter state -------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class DeviceState:
    """What a device's state file says (validated)."""

    key_id: str | None      # None: a v2 file ({"next": N}), which names no key
    next: int               # 0..2^32 (2^32: every counter used)
    limit: int              # 0..2^32-1


def read_device_state(path: str | Path) -> DeviceState | None:
    """The validated state (None when the file does not exist); SnnError with one line when it
    is not exactly a state file: a wrong type, a value out of range, extra fields."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return None
    hint = ("move it away only together with a resync (the device does one when it has no state): a "
            "guessed counter would repeat a keystream")
    doc = load_json(path, MAX_STATE_BYTES, "counter state file", hint=hint)
    bad = f"counter state file {path} is malformed"
    if isinstance(doc, dict) and set(doc) == {"next"}:          # v2 (docs/PROTOCOL.md v2 §4.3)
        nxt = strict_int(doc["next"], 0, MAX_COUNTER + 1)
        if nxt is None:
            raise SnnError(f"{bad}: 'next' must be an integer in 0..2^32, not {doc['next']!r}; {hint}")
        return DeviceState(None, nxt, min(MAX_COUNTER, max(0, nxt - 1 + MAX_GAP)))
    if not isinstance(doc, dict) or doc.get("format") != DEVICE_STATE_FORMAT \
            or strict_int(doc.get("version"), DEVICE_STATE_VERSION, DEVICE_STATE_VERSION) is None \
            or set(doc) != {"format", "version", "key", "next", "limit"}:
        raise SnnError(f"{bad}: not a {DEVICE_STATE_FORMAT} v{DEVICE_STATE_VERSION} file; {hint}")
    kid, nxt, limit = doc["key"], strict_int(doc["next"], 0, MAX_COUNTER + 1), strict_int(doc["limit"], 0, MAX_COUNTER)
    if not isinstance(kid, str) or len(kid) != 8 or _hex(kid, 4) is None:
        raise SnnError(f"{bad}: 'key' must be 8 hex digits; {hint}")
    if nxt is None:
        raise SnnError(f"{bad}: 'next' must be an integer in 0..2^32, not {doc['next']!r}; {hint}")
    if limit is None:
        raise SnnError(f"{bad}: 'limit' must be an integer in 0..2^32-1, not {doc['limit']!r}; {hint}")
    return DeviceState(kid.lower(), nxt, limit)


def write_device_state(path: str | Path, key: bytes, next_counter: int, limit: int) -> None:
    """Write a state file durably (temporary file, fsync, rename, directory fsync)."""
    text = json.dumps({"format": DEVICE_STATE_FORMAT, "version": DEVICE_STATE_VERSION, "key": key_id(key),
                       "next": next_counter, "limit": limit}) + "\n"
    atomic_write(path, text.encode(), 0o600)


class ResyncNeeded(SnnError):
    """The device has no counter it may use until the edge vouches for one (§4.7)."""


def _key_lock_path(key: bytes, device_id: int) -> Path | None:
    """A per-user lock name for (key, device id), so that two state files for one key on this
    machine cannot both hand out counters. None when no private lock directory can be had."""
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    folder = Path(base) / f"snn-{os.getuid()}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        st = folder.lstat()
    except OSError:
        return None
    if st.st_uid != os.getuid() or st.st_mode & 0o077 or not folder.is_dir() or folder.is_symlink():
        return None
    return folder / f"dev{device_id}-{key_id(key)}.lock"


class CounterStore:
    """A device's frame counter: validated, locked, persisted ahead of use (see the module docstring).

    `path` None: no file (an insecure device: counters from `start`, no limit, no lock). With a
    path, `key` is the device's key (the state names it). After `needs_resync` the device may
    take no counter until `resynced(start)`; `vouched(counter)` records an authenticated answer.
    Close it (or let the process end) to release the lock."""

    def __init__(self, path: str | Path | None, start: int = 0, *, key: bytes | None = None,
                 device_id: int | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.key = key
        self._locks: list[int] = []
        self.needs_resync = False
        self.reason = ""
        self.next, self.limit, self.reserved = 0, -1, 0
        if self.path is None:
            self.next, self.limit, self.reserved = start, MAX_COUNTER, MAX_COUNTER + 1
            return
        if key is None:
            raise ValueError("a CounterStore with a state file needs the device's key")
        what = f"the counter state {self.path}"
        self._locks.append(hold_lock(self.path.with_name(self.path.name + ".lock"), what))
        lock = _key_lock_path(key, device_id if device_id is not None else -1) if key != ZERO_KEY else None
        if lock is not None:
            try:
                self._locks.append(hold_lock(lock, f"device {device_id}'s key (another state file on this machine)"))
            except SnnError:
                self.close()
                raise
        try:
            state = read_device_state(self.path)
        except SnnError:
            self.close()
            raise
        if state is None:
            self.needs_resync, self.reason = True, f"no counter state ({self.path} does not exist)"
        elif state.key_id is not None and state.key_id != key_id(key):
            self.needs_resync, self.reason = True, f"{self.path} was written for another key"
        else:
            self.next, self.limit = state.next, state.limit
        self.reserved = self.next
        if not self.needs_resync and self.next <= MAX_COUNTER:
            self._reserve()

    # --- persistence ---

    def _write(self, value: int) -> None:
        try:
            write_device_state(self.path, self.key, value, self.limit)
        except OSError as exc:
            raise SnnError(f"cannot write the frame-counter state {self.path}: {exc.strerror or exc} (the "
                           f"device must persist its counter before sending; give --state PATH)") from None

    def _reserve(self) -> None:
        self.reserved = min(MAX_COUNTER + 1, self.next + RESERVE)
        if self.path is not None:
            self._write(self.reserved)

    # --- use ---

    @property
    def remaining(self) -> int:
        """Counters left under this key."""
        return max(0, MAX_COUNTER + 1 - self.next)

    def take(self) -> int:
        """A counter never used before under this key. ResyncNeeded when the device may not use one
        yet; SnnError when the key's counters are exhausted."""
        if self.needs_resync:
            raise ResyncNeeded(f"{self.reason}: the device resynchronises with the edge first")
        if self.next > MAX_COUNTER:
            raise SnnError("the frame counters of this key are exhausted: give the device a new key "
                           "('snn keys rotate --device ID KEYS')")
        if self.next > self.limit:
            raise ResyncNeeded(f"counter {self.next} is beyond the {MAX_GAP} the edge last vouched for "
                               f"(limit {self.limit}): the device resynchronises with the edge first")
        if self.next >= self.reserved:
            self._reserve()
        value = self.next
        self.next += 1
        return value

    def vouched(self, counter: int) -> None:
        """The edge answered `counter` (authenticated): it holds every counter up to it as used."""
        self.limit = max(self.limit, min(MAX_COUNTER, counter + MAX_GAP))

    @property
    def has_state(self) -> bool:
        """Whether the device knows its own next counter (a valid state for this key)."""
        return self.limit >= 0

    def confirm_start(self, offered: int) -> int:
        """The start a device confirms for an OFFER of `offered` (§4.7): never below its own next
        counter when it has one (the edge may have lost or rolled back its history)."""
        return max(offered, self.next) if self.has_state else offered

    def resynced(self, start: int) -> None:
        """A resynchronisation committed `start` (ACK received): persisted before it is used."""
        if not 0 <= start <= MAX_COUNTER:
            raise ValueError("a start counter is 32 bits")
        self.needs_resync, self.reason = False, ""
        self.next = start
        self.limit = min(MAX_COUNTER, start - 1 + MAX_GAP)
        self._reserve()

    def close(self) -> None:
        """Persist the exact next counter and the limit, then release the locks."""
        try:
            if self.path is not None and self._locks and not self.needs_resync and self.next < self.reserved:
                self._write(self.next)
                self.reserved = self.next
        finally:
            for fd in self._locks:
                release_lock(fd)
            self._locks = []

    def __enter__(self) -> "CounterStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
