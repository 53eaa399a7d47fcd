"""The edge's replay windows and their durable copy, committed before the replies that depend on it.

Why (issue 21 item 6, docs/PROTOCOL.md §4.3, §4.8): a REPLY vouches for its counter, so a counter
must be on disk before its REPLY goes out; otherwise a `kill -9` right after a burst reopens
counters that were answered, and the burst replayed is answered again. Writing the file once per
frame would cost a disk flush per frame (~4-8 ms here), so writes are **group commits**: a writer
thread writes the whole state (`codec.wire.edge_state.write_edge_state`: temporary file, fsync,
rename, directory fsync, under the file's lock) as soon as anything changed and it is idle; every
write covers every counter marked before it started. A queued inference notes the state's
version when it is queued; its REPLY waits (`after`) until a write of at least that version is
done. The write overlaps the model's batch, so on a disk that flushes within a batch time the
replies wait for nothing.

Loading fails closed: a missing or malformed file is one SnnError (the edge exits 2) unless the
operator resets it (`--reset-replay-state`: every provisioned device's history is unknown,
written at once, logged loudly). A device id absent from the file, or whose entry names another
key, is a new device. Counters near exhaustion (fewer than 2^24 left) are reported.
"""
from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from codec.wire.edge_state import CounterRecord, EdgeState, load_edge_state, locked, write_edge_state
from codec.wire.keys import DeviceKey, key_id
from codec.wire.replay import MAX_COUNTER, ReplayWindow

log = logging.getLogger("snn.edge")
NEAR_EXHAUSTION = MAX_COUNTER + 1 - (1 << 24)    # the reference device warns from here too (§4.3)
RETRY_S = 1.0                                    # after a failed write


class ReplayState:
    """Replay windows by device id, and their group-committed copy in `path` (None: not kept,
    an insecure edge). Used on the event loop only; the writer thread only writes bytes."""

    def __init__(self, path: str | None, keys: dict[int, DeviceKey] | None, reset: bool = False) -> None:
        self.path = path
        self.insecure = keys is None
        self._key_ids = {dev: key_id(entry.key) for dev, entry in (keys or {}).items()}
        self.windows: dict[int, ReplayWindow] = {}
        self._records: dict[int, CounterRecord] = {}
        self._changed: set[int] = set()
        self.version = 0            # changes made (marks, resync commits)
        self.committed = 0          # the version on disk
        self.writes = 0
        self.write_failures = 0
        self._writing = False
        self._waiting: list[tuple[int, Callable[[], None]]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pool: ThreadPoolExecutor | None = None
        self.near_exhaustion: set[int] = set()
        if path is None:
            return
        if reset:
            log.warning("REPLAY STATE RESET (--reset-replay-state): %s is rewritten with every provisioned "
                        "device's history unknown; each device's first authenticated counter is accepted "
                        "whatever it is, so frames captured before this start can be answered once more", path)
            self._records = {dev: CounterRecord(kid, None) for dev, kid in self._key_ids.items()}
            with locked(path):
                write_edge_state(path, EdgeState(dict(self._records)))
        else:
            state = load_edge_state(path)
            if state.legacy:
                state.adopt(keys or {})
            for dev, rec in state.devices.items():
                if dev in self._key_ids and state.record_for(dev, (keys or {})[dev].key) is None:
                    continue        # an earlier key's entry: this key is a new device
                self._records[dev] = rec
        for dev, rec in self._records.items():
            if dev in self._key_ids:
                self.windows[dev] = (ReplayWindow(unknown=True) if rec.unknown
                                     else ReplayWindow.restored(rec.highest))
                if not rec.unknown and rec.highest >= NEAR_EXHAUSTION:
                    self._exhausting(dev, rec.highest)

    def __len__(self) -> int:
        return len(self.windows)

    # --- windows -----------------------------------------------------------------------------

    def window(self, device_id: int) -> ReplayWindow:
        w = self.windows.get(device_id)
        if w is None:   # a new device (absent from the state, or under a new key)
            w = self.windows[device_id] = ReplayWindow(max_gap=None) if self.insecure else ReplayWindow()
        return w

    def full_counter(self, device_id: int, low: int) -> int:
        """The 32-bit counter a short-form frame claiming `device_id` carries (before its MIC is
        checked: no window is made for an id that has not authenticated)."""
        w = self.windows.get(device_id)
        return low if w is None else w.full_counter(low)

    def mark(self, device_id: int, counter: int) -> None:
        """An authenticated fresh counter: mark it; it must be committed before it is answered."""
        self.windows[device_id].mark(counter)
        self.version += 1
        self._changed.add(device_id)
        if counter >= NEAR_EXHAUSTION and device_id not in self.near_exhaustion:
            self._exhausting(device_id, counter)

    def commit_floor(self, device_id: int, floor: int, then: Callable[[], None]) -> None:
        """Count every counter up to `floor` as used (a resynchronisation, §4.7) and call `then`
        on the loop once that is on disk."""
        self.window(device_id).commit_floor(floor)
        self.version += 1
        self._changed.add(device_id)
        self.after(self.version, then)

    def forget(self, device_id: int, new_key: bytes | None = None) -> None:
        """A revoked (`new_key` None) or re-keyed device id (keys reloaded): its window goes; under
        the new key it is a new device (its old entry names the old key, so it applies to nothing)."""
        self.windows.pop(device_id, None)
        self.near_exhaustion.discard(device_id)
        self._records.pop(device_id, None)
        if new_key is None:
            self._key_ids.pop(device_id, None)
        else:
            self._key_ids[device_id] = key_id(new_key)

    def _exhausting(self, device_id: int, counter: int) -> None:
        self.near_exhaustion.add(device_id)
        log.warning("device %d has used frame counter %d: fewer than 2^24 are left under its key; re-key it "
                    "(snn keys rotate --device %d KEYS) before it runs out", device_id, counter, device_id)

    # --- the group commit --------------------------------------------------------------------

    def durable(self, version: int) -> bool:
        return self.path is None or self.committed >= version

    def after(self, version: int, then: Callable[[], None]) -> None:
        """Call `then()` (on the loop) once every change up to `version` is on disk: at once when
        it is already, or when nothing is kept."""
        if self.durable(version):
            then()
            return
        self._waiting.append((version, then))
        self.kick()

    def kick(self) -> None:
        """Start a write of everything changed, unless one is running (it will start the next)."""
        if self.path is None or self._writing or self.committed >= self.version:
            return
        if self._loop is None:
            try:
                self._loop = asyncio.get_running_loop()
            except RuntimeError:    # no loop (a library caller, a test): write here and now
                version, state = self.version, self._snapshot()
                with locked(self.path):
                    write_edge_state(self.path, state)
                self._release(version)
                return
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="snn-state")
        version, state = self.version, self._snapshot()
        self._writing = True
        self._pool.submit(self._write, version, state)

    def _snapshot(self) -> EdgeState:
        for dev in self._changed:
            w = self.windows[dev]
            kid = self._key_ids.get(dev)
            if kid is None:
                continue
            if w.top >= 0:
                self._records[dev] = CounterRecord(kid, w.top)
            elif w.unknown:
                self._records[dev] = CounterRecord(kid, None)
        self._changed.clear()
        return EdgeState(dict(self._records))

    def _write(self, version: int, state: EdgeState) -> None:
        """In the writer thread: write, then hand the outcome back to the loop."""
        error = None
        try:
            with locked(self.path):
                write_edge_state(self.path, state)
        except Exception as exc:  # noqa: BLE001 - reported on the loop; the replies keep waiting
            error = exc
        try:
            self._loop.call_soon_threadsafe(self._written, version, error)
        except RuntimeError:   # the loop is closed: nobody waits any more
            pass

    def _written(self, version: int, error: BaseException | None) -> None:
        self._writing = False
        if error is not None:
            self.write_failures += 1
            log.error("cannot write the edge replay state %s (%s): replies that depend on it wait; retrying "
                      "in %.0f s", self.path, error, RETRY_S, extra={"rate_key": "replay-state-write"})
            self._loop.call_later(RETRY_S, self.kick)
            return
        self._release(version)
        self.kick()

    def _release(self, version: int) -> None:
        """Everything up to `version` is on disk: run what waited for it."""
        self.writes += 1
        self.committed = max(self.committed, version)
        ready = [then for v, then in self._waiting if v <= self.committed]
        self._waiting = [(v, then) for v, then in self._waiting if v > self.committed]
        for then in ready:
            try:
                then()
            except Exception:  # noqa: BLE001 - one bad reply path must not stop the others
                log.exception("a reply waiting for the replay state failed")

    async def close(self, timeout_s: float = 5.0) -> None:
        """Write what is left and release every waiting reply (shutdown)."""
        deadline = time.monotonic() + timeout_s
        self.kick()
        while (self._writing or self.committed < self.version) and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        if self._pool is not None:
            self._pool.shutdown(wait=False)
