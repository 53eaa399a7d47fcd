"""Reassembly of fragmented inferences, with an erasure mask for fragments that never came.

A lost fragment must not cost the inference: after `timeout_s` the edge decodes what it has and
marks the missing bytes as erased, and the decoder (trained with erasures) fills them in.

v2 rules (docs/PROTOCOL.md §4.2): fragments are grouped by (device id, 32-bit counter) and only
after their MIC verified; a fragment index received twice is a duplicate (counted, dropped); a
fragment whose inference was already released (complete or timed out) is *late*: the receiver
sees that its counter is used and no longer open (`is_open`), drops it and answers nothing, so
an inference is answered at most once.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from codec.wire.frame import DataHeader, fragment_slice


@dataclass
class Assembled:
    """One inference's payload as received: plaintext bytes (zeros where erased) and what is
    known of it."""

    device_id: int
    counter: int
    payload: bytearray
    erased: np.ndarray            # bool per payload byte
    first_seen: float
    frag_count: int
    received: set[int] = field(default_factory=set)
    bit_errors: int = 0           # header bits the link flipped, over all fragments received
    bits: int = 0                 # header bits received
    truth: int | None = None
    copies: int = 1               # the most any fragment used: replies mirror it

    @property
    def complete(self) -> bool:
        return len(self.received) == self.frag_count

    @property
    def key(self) -> tuple[int, int]:
        return (self.device_id, self.counter)


class Reassembler:
    """Collects verified DATA fragments by (device id, counter); bounded in memory.

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

    def is_open(self, device_id: int, counter: int) -> bool:
        return (device_id, counter) in self._pending

    def add(self, header: DataHeader, counter: int, plain: bytes, payload_len: int,
            now: float) -> list[Assembled]:
        """Add one fragment's decrypted slice; return the inferences it completes or forces out.
        Duplicates and fragments inconsistent with their inference are counted and dropped."""
        key = (header.device_id, counter)
        done: list[Assembled] = []
        item = self._pending.get(key)
        if item is None:
            item = Assembled(header.device_id, counter, bytearray(payload_len),
                             np.ones(payload_len, dtype=bool), now, header.frag_count,
                             truth=header.truth)
            if header.frag_count > 1:
                self._pending[key] = item
                while len(self._pending) > self.max_pending:
                    done.append(self._pending.popitem(last=False)[1])
        elif item.frag_count != header.frag_count or item.truth != header.truth:
            self.inconsistent += 1
            return done
        if header.frag_index in item.received:
            self.duplicates += 1
            return done
        piece = fragment_slice(payload_len, item.frag_count, header.frag_index)
        item.payload[piece.start:piece.stop] = plain
        item.erased[piece.start:piece.stop] = False
        item.received.add(header.frag_index)
        item.bit_errors += header.bit_errors
        item.bits += header.bits
        item.copies = max(item.copies, header.copies)
        if item.complete:
            self._pending.pop(key, None)
            done.append(item)
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
