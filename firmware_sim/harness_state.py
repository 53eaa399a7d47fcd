"""The counter record of a firmware image whose flash cannot keep it (QEMU, boards without a flash
driver), kept by the host that drives its UART: the key's device state file of docs/PROTOCOL.md 4.3.

    {"format": "snn-device-state", "version": 1, "key": "5b4ac3c4", "next": 16898, "limit": 33281}

beside the keys file (``KEYFILE.dev<ID>.state``), or ``counter.state`` in the firmware folder for
the insecure all-zero key. The firmware asks for writes ahead ('W', main.c) and uses a counter only
after the host has answered that the record is durable (atomic write: temporary file, fsync,
rename, fsync of the folder). A missing file, or one for another key, is no state: the firmware
then resynchronises (4.7) -- except with the insecure key, whose first counter comes from the
clock (microseconds / 16, mod 2^32) with no limit, as 4.5 states for an insecure device. A malformed file is an error, never a fresh start. While the harness
runs it holds the state's lock (``STATE.lock``), so a second process on the same key and id refuses.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from snn.errors import SnnError

FORMAT = "snn-device-state"
MAX_COUNTER = 0xFFFFFFFF


class HarnessState:
    """The record (have, next, limit) of one device key, read at start and written on request."""

    def __init__(self, path: Path, key: bytes, insecure: bool = False):
        from codec.wire.files import hold_lock
        from codec.wire.keys import key_id

        self.path = Path(path)
        self.key_id = key_id(key)
        self.insecure = insecure
        self.lock = hold_lock(self.path.with_name(self.path.name + ".lock"), "the device's counter state")
        self.have, self.next, self.limit = self._load()
        self.floor = self.next if self.have else 0   # counters below it may have been used

    def _load(self) -> tuple[bool, int, int]:
        from codec.wire.files import load_json, strict_int
        from codec.wire.replay import MAX_GAP

        if not self.path.exists():
            if self.insecure:                                           # 4.5: from the clock, no gap rule
                return True, (time.time_ns() // 16_000) % (MAX_COUNTER + 1), MAX_COUNTER
            return False, 0, 0
        data = load_json(self.path, 4096, "device counter state", private=True)
        if isinstance(data, dict) and set(data) == {"next"}:           # a v2 file: {"next": N}
            nxt = strict_int(data["next"], 0, MAX_COUNTER + 1)
            if nxt is None:
                raise SnnError(f"{self.path}: 'next' must be an integer in 0..2^32")
            return True, nxt, max(0, min(MAX_COUNTER, nxt - 1 + MAX_GAP))
        if not isinstance(data, dict) or set(data) != {"format", "version", "key", "next", "limit"} \
                or data["format"] != FORMAT or data["version"] != 1 or not isinstance(data["key"], str):
            raise SnnError(f"{self.path}: not a device counter state file (docs/PROTOCOL.md 4.3)")
        nxt, limit = strict_int(data["next"], 0, MAX_COUNTER + 1), strict_int(data["limit"], 0, MAX_COUNTER)
        if nxt is None or limit is None:
            raise SnnError(f"{self.path}: 'next' and 'limit' must be integers in range")
        if data["key"] != self.key_id:
            return False, 0, 0                                          # a previous key's state
        return True, nxt, limit

    def save(self, nxt: int, limit: int) -> None:
        """Make (next, limit) durable; the firmware uses nothing it has not been told is written."""
        from codec.wire.files import atomic_write

        if not (0 <= nxt <= MAX_COUNTER + 1 and 0 <= limit <= MAX_COUNTER) or nxt < self.floor:
            raise SnnError(f"{self.path}: the firmware asked to write next {nxt}, limit {limit}: refused "
                           f"(counters up to {self.floor - 1} may have been used)")
        record = {"format": FORMAT, "version": 1, "key": self.key_id, "next": int(nxt), "limit": int(limit)}
        atomic_write(self.path, (json.dumps(record) + "\n").encode())
        self.have, self.next, self.limit = True, int(nxt), int(limit)

    def used_below(self, nxt: int) -> None:
        """The firmware reported `nxt` as its next counter: those below it may have been used (a
        record it writes later, at a clean stop included, may go no lower)."""
        self.floor = max(self.floor, nxt)

    def message(self) -> bytes:
        """The harness's 00 'C' message: have, next, limit (next capped at 2^32 - 1 on the wire)."""
        return (bytes([0, ord("C"), int(self.have)]) + min(self.next, MAX_COUNTER).to_bytes(4, "big")
                + self.limit.to_bytes(4, "big"))

    def close(self) -> None:
        from codec.wire.files import release_lock
        release_lock(self.lock)
        self.lock = None
