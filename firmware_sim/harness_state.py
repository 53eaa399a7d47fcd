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

import time
from pathlib import Path

from snn.errors import SnnError

MAX_COUNTER = 0xFFFFFFFF


class HarnessState:
    """The record (have, next, limit) of one device key, read at start and written on request."""

    def __init__(self, path: Path, key: bytes, insecure: bool = False, device_id: int | None = None):
        from codec.wire.files import hold_lock, release_lock
        from codec.wire.keys import _key_lock_path, key_id

        self.path = Path(path)
        self.key, self.key_id = key, key_id(key)
        self.insecure = insecure
        self.locks = [hold_lock(self.path.with_name(self.path.name + ".lock"), "the device's counter state")]
        # the per-(key, id) lock the Python device takes too: one key, one counter sequence per machine
        lock = None if insecure else _key_lock_path(key, device_id if device_id is not None else -1)
        try:
            if lock is not None:
                self.locks.append(hold_lock(lock, f"device {device_id}'s key (another state file on this machine)"))
            self.have, self.next, self.limit = self._load()
        except SnnError:
            for held in self.locks:
                release_lock(held)
            raise
        self.floor = self.next if self.have else 0   # counters below it may have been used

    def _load(self) -> tuple[bool, int, int]:
        from codec.wire.keys import read_device_state

        state = read_device_state(self.path)                            # validated, one line if not
        if state is None:
            if self.insecure:                                           # 4.5: from the clock, no gap rule
                return True, (time.time_ns() // 16_000) % (MAX_COUNTER + 1), MAX_COUNTER
            return False, 0, 0
        if state.key_id is not None and state.key_id != self.key_id:
            return False, 0, 0                                          # a previous key's state
        return True, state.next, state.limit

    def save(self, nxt: int, limit: int) -> None:
        """Make (next, limit) durable; the firmware uses nothing it has not been told is written."""
        from codec.wire.keys import write_device_state

        if not (0 <= nxt <= MAX_COUNTER + 1 and 0 <= limit <= MAX_COUNTER) or nxt < self.floor:
            raise SnnError(f"{self.path}: the firmware asked to write next {nxt}, limit {limit}: refused "
                           f"(counters up to {self.floor - 1} may have been used)")
        write_device_state(self.path, self.key, int(nxt), int(limit))   # temporary file, fsync, rename
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
        for held in self.locks:
            release_lock(held)
        self.locks = []
