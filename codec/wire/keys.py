"""Provisioning files: per-device keys (read by the torch-free device and the edge) and the
device's persisted frame counter.

Keys file (JSON, mode 0600; docs/PROTOCOL.md §6)::

    {"format": "snn-keys/1",
     "devices": [{"id": 7, "key": "000102…0f", "fingerprint": "1234abcd"}, …]}

`id` is the 16-bit device id, `key` the 128-bit key in hex, `fingerprint` the codec the device
runs (hex, or null: the edge's default codec). The codec being bound here is why a v2 frame has
no fingerprint and no length field: the edge knows each device's payload length.

Counter state (beside the key file, `<keys file>.<id>.counter`): `{"reserved": N}` — every
counter below N may have been used. A device starting up sends from N and first writes
N + COUNTER_BLOCK (fsync'ed); it writes the next block before it crosses it. A crash loses at
most a block of counters, and never reuses one: AES-CTR keystream is never repeated.
"""
from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from codec.wire.crypto import KEY_BYTES
from snn.errors import SnnError

FORMAT = "snn-keys/1"
COUNTER_BLOCK = 256
COUNTER_LIMIT = 1 << 32


@dataclass(frozen=True)
class KeyEntry:
    device_id: int
    key: bytes
    fingerprint: bytes | None = None

    def to_json(self) -> dict:
        return {"id": self.device_id, "key": self.key.hex(),
                "fingerprint": None if self.fingerprint is None else self.fingerprint.hex()}


def new_entries(device_ids: list[int], fingerprint: bytes | None = None) -> list[KeyEntry]:
    """Fresh random keys (os CSPRNG) for these device ids."""
    if len(set(device_ids)) != len(device_ids):
        raise SnnError("each --device may be given once")
    for dev in device_ids:
        if not 0 <= dev <= 0xFFFF:
            raise SnnError(f"device id {dev} outside 0..65535")
    return [KeyEntry(dev, secrets.token_bytes(KEY_BYTES), fingerprint) for dev in device_ids]


def write_keys(path: str | Path, entries: list[KeyEntry], force: bool = False) -> None:
    """Write a keys file with mode 0600; refuse to overwrite unless `force`."""
    path = Path(path)
    if path.exists() and not force:
        raise SnnError(f"{path} exists; refusing to overwrite keys (use --force)")
    text = json.dumps({"format": FORMAT, "devices": [e.to_json() for e in entries]}, indent=1) + "\n"
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def load_keys(path: str | Path) -> dict[int, KeyEntry]:
    """device id -> entry; any defect is one SnnError line."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise SnnError(f"keys file {path} not found (make one: snn keys new --device ID -o {path})") from None
    except (OSError, ValueError) as exc:
        raise SnnError(f"keys file {path} is not readable JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("devices"), list):
        raise SnnError(f"keys file {path} is not a {FORMAT} file")
    out: dict[int, KeyEntry] = {}
    for item in doc["devices"]:
        try:
            dev = int(item["id"])
            key = bytes.fromhex(item["key"])
            fp = item.get("fingerprint")
            fp = None if fp is None else bytes.fromhex(fp)
        except (KeyError, TypeError, ValueError):
            raise SnnError(f"keys file {path}: malformed entry {item!r}") from None
        if not 0 <= dev <= 0xFFFF or len(key) != KEY_BYTES or (fp is not None and len(fp) != 4):
            raise SnnError(f"keys file {path}: entry for device {dev} needs an id in 0..65535, "
                           f"a {KEY_BYTES}-byte key and a 4-byte fingerprint or null")
        if dev in out:
            raise SnnError(f"keys file {path}: device {dev} listed twice")
        out[dev] = KeyEntry(dev, key, fp)
    return out


def counter_path(keys_path: str | Path, device_id: int) -> Path:
    return Path(f"{keys_path}.{device_id}.counter")


class CounterStore:
    """A device's 32-bit frame counter, persisted a block ahead so a restart never reuses one."""

    def __init__(self, path: str | Path | None, block: int = COUNTER_BLOCK) -> None:
        self.path = None if path is None else Path(path)
        self.block = block
        self.next = self._read()
        self.reserved = self.next
        self._reserve()

    def _read(self) -> int:
        if self.path is None or not self.path.exists():
            return 0
        try:
            value = int(json.loads(self.path.read_text())["reserved"])
        except (OSError, ValueError, KeyError, TypeError):
            raise SnnError(f"counter state {self.path} is damaged; refusing to risk reusing a "
                           f"counter (re-provision the device with a new key)") from None
        return value

    def _reserve(self) -> None:
        self.reserved = self.next + self.block
        if self.reserved >= COUNTER_LIMIT:
            raise SnnError("the 32-bit frame counter of this key is exhausted: provision a new key")
        if self.path is None:
            return
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, json.dumps({"reserved": self.reserved}).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)

    def take(self) -> int:
        """The next unused counter (persists the next block first when this one runs out)."""
        if self.next >= self.reserved:
            self._reserve()
        value = self.next
        self.next += 1
        return value


def device_credentials(key_file: str | Path | None, device_id: int, fingerprint: bytes | None = None,
                       warn=None):
    """(DeviceKeys, CounterStore) of one device from its keys file, checked against the codec it
    runs (`fingerprint`). Without a keys file: the public all-zero key of an `--insecure` edge and
    an unpersisted counter, after `warn(text)`."""
    from codec.wire.crypto import INSECURE_KEY, DeviceKeys

    if not 0 <= device_id <= 0xFFFF:
        raise SnnError(f"--device-id must lie in 0..65535, got {device_id}")
    if key_file is None:
        if warn:
            warn("no --key-file: sending under the public all-zero key (only an edge run with "
                 "--insecure answers; anyone can read and forge these frames)")
        return DeviceKeys(device_id, INSECURE_KEY), CounterStore(None)
    entry = load_keys(key_file).get(device_id)
    if entry is None:
        raise SnnError(f"{key_file} has no key for device {device_id}")
    if fingerprint is not None and entry.fingerprint is not None and entry.fingerprint != fingerprint:
        raise SnnError(f"device {device_id} is provisioned for codec {entry.fingerprint.hex()}, but its "
                       f"encoder is codec {fingerprint.hex()}: use the matching encoder or re-provision")
    return DeviceKeys(device_id, entry.key), CounterStore(counter_path(key_file, device_id))
