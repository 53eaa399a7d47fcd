"""Who may talk to this edge: provisioned keys and rate limits (docs/PROTOCOL.md §4, §6).

`Keyring` answers, for a device id, the keys and codecs that may authenticate its frames (one
normally; one per served codec when the entry binds no codec or the edge runs `--insecure`
with the all-zero key). The replay windows are edge.replay_state's.

`TokenBuckets` rate-limits by a key (a source address for what fails authentication, a device id
for what passes), bounded in the number of keys it tracks.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

from codec.wire.crypto import ZERO_KEY
from codec.wire.keys import DeviceKey


@dataclass(frozen=True, slots=True, eq=False)
class Peer:
    """One way a device's frames may authenticate: its key and one codec (None: not served)."""

    device_id: int
    key: bytes
    fingerprint: bytes
    codec: object            # edge.codecs.ServedCodec, or None when this edge does not serve it
    payload_bytes: int       # 0 when the codec is not served (answered UNKNOWN_CODEC)
    integrity: bool = False  # its MICs also cover the encrypted payload (docs/PROTOCOL.md §4.6)


class Keyring:
    """Provisioned devices (or the insecure all-zero key) and their codecs; reloadable."""

    def __init__(self, codecs, keys: dict[int, DeviceKey] | None, insecure: bool = False) -> None:
        if keys is None and not insecure:
            raise ValueError("an edge needs keys, or insecure mode")
        self.insecure = keys is None
        self._codecs = codecs
        self._served = [Peer(-1, ZERO_KEY, c.fingerprint, c, c.payload_bytes) for c in codecs]
        self._insecure_peers: dict[int, list[Peer]] = {}
        self._provision(keys or {})

    def _provision(self, keys: dict[int, DeviceKey]) -> None:
        codecs = self._codecs
        peers: dict[int, list[Peer]] = {}
        unserved: list[DeviceKey] = []
        for dev, entry in keys.items():
            if entry.fingerprint is None:
                peers[dev] = [Peer(dev, entry.key, c.fingerprint, c, c.payload_bytes, entry.integrity)
                              for c in codecs]
                continue
            codec = codecs.get(entry.fingerprint)
            if codec is None:
                unserved.append(entry)
            peers[dev] = [Peer(dev, entry.key, entry.fingerprint, codec,
                               codec.payload_bytes if codec is not None else 0, entry.integrity)]
        self._keys = dict(keys)
        self._peers, self.unserved = peers, unserved
        # the payload lengths a frame may carry: a datagram no reading fits is refused unread
        self.sizes = frozenset(c.payload_bytes for c in codecs) if not unserved else None

    def reload(self, keys: dict[int, DeviceKey]) -> dict[str, list[int]]:
        """Serve a new keys file's entries (SIGHUP, `snn keys add|revoke|rotate`). Returns the ids
        {"added", "removed", "rekeyed"}: the caller drops the replay windows of the last two (a
        re-keyed id is a new device; its old frames fail the MIC under the new key). Devices whose
        key is unchanged are untouched."""
        if self.insecure:
            raise ValueError("an insecure edge has no keys to reload")
        old = self._keys
        change = {"added": sorted(set(keys) - set(old)), "removed": sorted(set(old) - set(keys)),
                  "rekeyed": sorted(d for d in set(keys) & set(old) if keys[d].key != old[d].key)}
        self._provision(keys)
        return change

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

    def entry(self, device_id: int) -> DeviceKey | None:
        """The provisioned key entry of a device id (None: not provisioned, or insecure)."""
        return self._keys.get(device_id)


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
