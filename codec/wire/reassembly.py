"""Reassembly of fragmented inferences, with an erasure mask for fragments that never came.

A lost fragment must not cost the inference: after `timeout_s` the edge decodes what it has and
marks the missing bytes as erased, and the decoder (trained with erasures) fills them in.
Fragments are keyed by (device id, frame counter): they arrive authenticated and decrypted
(`codec.wire.frame.parse_data`). A duplicate fragment of a pending inference is counted and
dropped; one that arrives after its inference left (answered, timed out) is the receiver's
business: its replay window says the counter was used and the inference is not pending
(docs/PROTOCOL.md §6: no second reply).
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from codec.wire.frame import DataFrame, fragment_slice


@dataclass
class Assembled:
    """One inference's payload as received: bytes (zeros where erased) and what is known of it."""

    device_id: int
    counter: int
    payload_bytes: int
    payload: bytearray
    erased: np.ndarray            # bool per payload byte
    first_seen: float
    frag_count: int
    received: set[int] = field(default_factory=set)
    header_errors: int = 0
    header_bits: int = 0
    truth: int | None = None
    header_copies: int = 1        # the most any fragment used: replies mirror it
    peer: object = None

    @property
    def complete(self) -> bool:
        return len(self.received) == self.frag_count

    @property
    def key(self) -> tuple[int, int]:
        return (self.device_id, self.counter)


class Reassembler:
    """Collects DATA fragments by (device id, counter); bounded in memory.

    `add` returns the inference when its last fragment arrives; `expire` returns those whose
    timeout passed (incomplete, with erasures). When more than `max_pending` inferences are
    open, the oldest is released early as incomplete, so a flood cannot grow memory.
    """

    def __init__(self, timeout_s: float = 0.5, max_pending: int = 4096) -> None:
        self.timeout_s = timeout_s
        self.max_pending = max_pending
        self._pending: OrderedDict[tuple[int, int], Assembled] = OrderedDict()
        self.duplicates = 0
        self.inconsistent = 0

    def __len__(self) -> int:
        return len(self._pending)

    def pending(self, device_id: int, counter: int) -> bool:
        """Whether the inference of this counter is still being reassembled."""
        return (device_id, counter) in self._pending

    def has_fragment(self, device_id: int, counter: int, index: int) -> bool:
        """Whether fragment `index` of this pending inference arrived already (a duplicate)."""
        item = self._pending.get((device_id, counter))
        return item is not None and index in item.received

    def add(self, frame: DataFrame, now: float) -> list[Assembled]:
        """Add one DATA fragment; return the inferences it completes or forces out."""
        key = (frame.device_id, frame.counter)
        done: list[Assembled] = []
        item = self._pending.get(key)
        if item is None:
            if frame.frag_count == 1:
                return [self._single(frame, now)]
            item = self._new(frame, now)
            self._pending[key] = item
            while len(self._pending) > self.max_pending:
                done.append(self._pending.popitem(last=False)[1])
        elif item.frag_count != frame.frag_count or item.peer is not frame.peer:
            self.inconsistent += 1
            return done
        if frame.frag_index in item.received:
            self.duplicates += 1
            return done
        self._place(item, frame)
        if item.complete:
            done.append(self._pending.pop(key))
        return done

    def expire(self, now: float) -> list[Assembled]:
        """Release every inference older than the timeout, with its missing bytes erased."""
        out = []
        while self._pending:
            key, item = next(iter(self._pending.items()))
            if now - item.first_seen < self.timeout_s:
                break
            out.append(self._pending.pop(key))
        return out

    @staticmethod
    def _new(frame: DataFrame, now: float) -> Assembled:
        nbytes = frame.peer.payload_bytes
        return Assembled(frame.device_id, frame.counter, nbytes, bytearray(nbytes),
                         np.ones(nbytes, dtype=bool), now, frame.frag_count, peer=frame.peer)

    def _single(self, frame: DataFrame, now: float) -> Assembled:
        item = self._new(frame, now)
        self._place(item, frame)
        return item

    @staticmethod
    def _place(item: Assembled, frame: DataFrame) -> None:
        piece = fragment_slice(item.payload_bytes, item.frag_count, frame.frag_index)
        item.payload[piece.start:piece.stop] = frame.data
        item.erased[piece.start:piece.stop] = False
        item.received.add(frame.frag_index)
        item.header_errors += frame.header_errors
        item.header_bits += frame.header_bits
        if frame.truth is not None:
            item.truth = frame.truth
        item.header_copies = max(item.header_copies, frame.copies)
