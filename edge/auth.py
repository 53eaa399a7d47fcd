"""Who may talk to this edge: provisioned keys, replay windows, and rate limits (docs/PROTOCOL.md §4, §6).

`Keyring` answers, for a device id, the keys and codecs that may authenticate its frames (one
normally; one per served codec when the entry binds no codec or the edge runs `--insecure`
with the all-zero key), and keeps one replay window per device id: at most 65,536 (ids are 16
bits), so it needs no eviction and evicting statistics never reopens a replay.

`TokenBuckets` rate-limits by a key (a source address for what fails authentication, a device id
for what passes), bounded in the number of keys it tracks.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

from codec.wire.crypto import ZERO_KEY
from codec.wire.keys import DeviceKey
from codec.wire.replay import ReplayWindow


@dataclass(frozen=True, slots=True, eq=False)
class Peer:
    """One way a device's frames may authenticate: its key and one codec (None: not served)."""

    device_id: int
    key: bytes
    fingerprint: bytes
    codec: object            # edge.codecs.ServedCodec, or None when this edge does not serve it
    payload_bytes: int       # 0 when the codec is not served (answered UNKNOWN_CODEC)


class Keyring:
    """Provisioned devices (or the insecure all-zero key), their codecs and replay windows."""

    def __init__(self, codecs, keys: dict[int, DeviceKey] | None, insecure: bool = False) -> None:
        if keys is None and not insecure:
            raise ValueError("an edge needs keys, or insecure mode")
        self.insecure = keys is None
        self._served = [Peer(-1, ZERO_KEY, c.fingerprint, c, c.payload_bytes) for c in codecs]
        self._peers: dict[int, list[Peer]] = {}
        self.unserved: list[DeviceKey] = []
        for dev, entry in (keys or {}).items():
            if entry.fingerprint is None:
                self._peers[dev] = [Peer(dev, entry.key, c.fingerprint, c, c.payload_bytes) for c in codecs]
                continue
            codec = codecs.get(entry.fingerprint)
            if codec is None:
                self.unserved.append(entry)
            self._peers[dev] = [Peer(dev, entry.key, entry.fingerprint, codec,
                                     codec.payload_bytes if codec is not None else 0)]
        self._insecure_peers: dict[int, list[Peer]] = {}
        self.windows: dict[int, ReplayWindow] = {}
        # the payload lengths a frame may carry: a datagram no reading fits is refused unread
        self.sizes = frozenset(c.payload_bytes for c in codecs) if not self.unserved else None

    def __len__(self) -> int:
        return len(self._peers)

    def peers(self, device_id: int) -> list[Peer]:
        if not self.insecure:
            return self._peers.get(device_id, [])
        got = self._insecure_peers.get(device_id)
        if got is None:
            got = self._insecure_peers[device_id] = [
                Peer(device_id, p.key, p.fingerprint, p.codec, p.payload_bytes) for p in self._served]
        return got

    def known(self, device_id: int) -> bool:
        return self.insecure or device_id in self._peers

    def window(self, device_id: int) -> ReplayWindow:
        w = self.windows.get(device_id)
        if w is None:
            w = self.windows[device_id] = ReplayWindow()
        return w

    def full_counter(self, device_id: int, low: int) -> int:
        w = self.windows.get(device_id)
        return low if w is None else w.full_counter(low)

    # --- the windows across restarts (docs/PROTOCOL.md §4.3) --------------------------------

    STATE_FORMAT = "snn-edge-counters/1"

    def load_windows(self, path) -> int:
        """Restore each provisioned key's highest counter from `path` (absent: nothing to do):
        every counter at or below it counts as used, so a restarted edge reopens no replay.
        Returns the windows restored; a damaged file is one clear SnnError."""
        import json
        import os

        from snn.errors import SnnError
        if self.insecure or not os.path.exists(path):
            return 0
        try:
            with open(path, encoding="utf-8") as fh:
                doc = json.load(fh)
            if doc.get("format") != self.STATE_FORMAT:
                raise ValueError("format")
            tops = {int(dev): int(top) for dev, top in doc["highest"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            raise SnnError(f"edge counter state {path} is damaged; remove it only if no device's old "
                           f"frames can be replayed (they would be answered once more)") from None
        for dev, top in tops.items():
            if dev in self._peers and 0 <= top < 1 << 32:
                w = self.windows[dev] = ReplayWindow(top)
                w.bits = (1 << 64) - 1
        self._saved = dict(tops)
        return len(tops)

    def save_windows(self, path) -> bool:
        """Write every key's highest counter to `path` (atomically: temporary file, fsync,
        rename) when it changed since the last save; True when written."""
        import json
        import os
        if self.insecure:
            return False
        tops = {dev: w.top for dev, w in self.windows.items() if w.top >= 0}
        if tops == getattr(self, "_saved", None):
            return False
        tmp = f"{path}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, json.dumps({"format": self.STATE_FORMAT,
                                     "highest": {str(d): t for d, t in tops.items()}}).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        self._saved = tops
        return True


class TokenBuckets:
    """Per-key token buckets: `rate` tokens/s up to `burst`; at most `max_keys` keys tracked (LRU)."""

    def __init__(self, rate: float, burst: float, max_keys: int = 4096) -> None:
        self.rate, self.burst, self.max_keys = float(rate), float(burst), max_keys
        self._state: OrderedDict[object, list[float]] = OrderedDict()

    def empty(self, key, now: float | None = None) -> bool:
        """Whether `key` has no token left (without taking one)."""
        state = self._state.get(key)
        if state is None or self.rate <= 0:
            return False
        now = time.monotonic() if now is None else now
        return min(self.burst, state[0] + (now - state[1]) * self.rate) < 1.0

    def take(self, key, now: float | None = None) -> bool:
        """Take one token; False when the bucket is empty (the caller drops the datagram)."""
        if self.rate <= 0:
            return True
        now = time.monotonic() if now is None else now
        state = self._state.get(key)
        if state is None:
            state = self._state[key] = [self.burst, now]
            if len(self._state) > self.max_keys:
                self._state.popitem(last=False)
        else:
            self._state.move_to_end(key)
            state[0] = min(self.burst, state[0] + (now - state[1]) * self.rate)
            state[1] = now
        if state[0] < 1.0:
            return False
        state[0] -= 1.0
        return True
