"""Provisioned device keys (the keys file) and a device's persistent frame counter (its state file).

Keys file (JSON, mode 0600, docs/PROTOCOL.md §4.4)::

    {"format": "snn-keys", "version": 1,
     "devices": [{"id": 7, "key": "<32 hex digits>", "fingerprint": "2bf16127"}, ...]}

`id` is the 16-bit device id, `key` its AES-128 key, `fingerprint` the codec it is provisioned
for (optional: absent means "whichever codec the edge serves that authenticates it"). The edge
reads the whole file, a device only its own entry. This module needs no torch: the device reads
it too.

State file (beside the key file: ``KEYFILE.dev<ID>.state``): the next frame counter the device
may use, written *ahead* by `RESERVE` before any of those counters goes on the air, so a crash
can skip counters but never reuse one (a reused counter would repeat a CTR keystream).
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from snn.errors import SnnError

KEYS_FORMAT = "snn-keys"
KEYS_VERSION = 1
RESERVE = 256
MAX_COUNTER = 0xFFFFFFFF


def key_id(key: bytes) -> str:
    """A short public name of a key (8 hex digits of SHA-256, docs/PROTOCOL.md §4.3): state files
    name the key they are for, so a state made under an old key is never taken for the new one's."""
    return hashlib.sha256(b"snn key id\0" + key).hexdigest()[:8]


@dataclass(frozen=True, slots=True)
class DeviceKey:
    """One provisioned device."""

    device_id: int
    key: bytes
    fingerprint: bytes | None = None

    def as_json(self) -> dict:
        entry = {"id": self.device_id, "key": self.key.hex()}
        if self.fingerprint is not None:
            entry["fingerprint"] = self.fingerprint.hex()
        return entry


def new_keys(device_ids: list[int], fingerprint: bytes | None = None) -> list[DeviceKey]:
    """Fresh random 128-bit keys (from `secrets`) for distinct device ids."""
    if len(set(device_ids)) != len(device_ids):
        raise SnnError("each --device id may appear once")
    for dev in device_ids:
        if not 0 <= dev <= 0xFFFF:
            raise SnnError(f"device id {dev} is outside 0..65535")
    if fingerprint is not None and len(fingerprint) != 4:
        raise SnnError("a codec fingerprint is 4 bytes (8 hex digits)")
    return [DeviceKey(dev, secrets.token_bytes(16), fingerprint) for dev in device_ids]


def write_keys(path: str | Path, keys: list[DeviceKey], force: bool = False) -> Path:
    """Write a keys file readable by its owner only; refuse to overwrite unless `force`."""
    path = Path(path)
    if path.exists() and not force:
        raise SnnError(f"{path} exists: refusing to overwrite keys (use --force to replace them)")
    text = json.dumps({"format": KEYS_FORMAT, "version": KEYS_VERSION,
                       "devices": [k.as_json() for k in keys]}, indent=1) + "\n"
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, 0o600)
    tmp.replace(path)
    return path


def load_keys(path: str | Path) -> dict[int, DeviceKey]:
    """Every entry of a keys file by device id; SnnError with one clear line on any defect."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise SnnError(f"cannot read keys file {path}: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise SnnError(f"{path} is not a keys file (not JSON); make one with 'snn keys new'") from None
    if not isinstance(doc, dict) or doc.get("format") != KEYS_FORMAT or doc.get("version") != KEYS_VERSION:
        raise SnnError(f"{path} is not an {KEYS_FORMAT} v{KEYS_VERSION} file; make one with 'snn keys new'")
    out: dict[int, DeviceKey] = {}
    for n, entry in enumerate(doc.get("devices") or []):
        try:
            dev = int(entry["id"])
            key = bytes.fromhex(entry["key"])
            fp = bytes.fromhex(entry["fingerprint"]) if entry.get("fingerprint") else None
        except (KeyError, TypeError, ValueError):
            raise SnnError(f"{path}: device entry {n} needs an integer id and a hex key") from None
        if not 0 <= dev <= 0xFFFF or len(key) != 16 or (fp is not None and len(fp) != 4):
            raise SnnError(f"{path}: device entry {n}: id 0..65535, a 16-byte key, a 4-byte fingerprint")
        if dev in out:
            raise SnnError(f"{path}: device {dev} appears twice")
        out[dev] = DeviceKey(dev, key, fp)
    if not out:
        raise SnnError(f"{path} holds no device keys")
    return out


def device_key(path: str | Path, device_id: int) -> DeviceKey:
    keys = load_keys(path)
    if device_id not in keys:
        raise SnnError(f"{path} has no key for device {device_id} (it holds {sorted(keys)[:10]})")
    return keys[device_id]


def state_path(key_file: str | Path, device_id: int) -> Path:
    key_file = Path(key_file)
    return key_file.with_name(f"{key_file.name}.dev{device_id}.state")


class CounterStore:
    """A device's frame counter, persisted ahead of use (see the module docstring).

    One process per device id at a time: two processes sharing a state file would both take the
    same block of counters."""

    def __init__(self, path: str | Path | None, start: int = 0) -> None:
        self.path = Path(path) if path is not None else None
        self.next = start
        if self.path is not None and self.path.exists():
            try:
                self.next = max(start, int(json.loads(self.path.read_text())["next"]))
            except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError):
                raise SnnError(f"counter state file {self.path} is unreadable: move it away only if you also "
                               f"provision a new key (a reused counter repeats the keystream)") from None
        self.reserved = self.next
        self._reserve()

    def _reserve(self) -> None:
        self.reserved = self.next + RESERVE
        if self.reserved > MAX_COUNTER:
            raise SnnError("the frame counter of this key is exhausted: provision a new key")
        if self.path is None:
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(json.dumps({"next": self.reserved}) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            tmp.replace(self.path)
        except OSError as exc:
            raise SnnError(f"cannot write the frame-counter state {self.path}: {exc.strerror or exc} (the "
                           f"device must persist its counter before sending; give --state PATH)") from None

    def take(self) -> int:
        """A counter never used before under this key."""
        if self.next >= self.reserved:
            self._reserve()
        value = self.next
        self.next += 1
        return value
