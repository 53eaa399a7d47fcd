"""Reassembly of fragmented inferences, with an erasure mask for fragments that never came.

A lost fragment must not cost the inference: after `timeout_s` the edge decodes what it has and
marks the missing bytes as erased, and the decoder (trained with erasures) fills them in.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from codec.wire.frame import Frame, Kind, fragment_slice, pilot_bit_errors


@dataclass
class Assembled:
    """One inference's payload as received: bytes (zeros where erased) and what is known of it."""

    fingerprint: bytes
    device_id: int
    seq: int
    payload_bits: int
    payload: bytearray
    erased: np.ndarray            # bool per payload byte
    first_seen: float
    frag_count: int
    received: set[int] = field(default_factory=set)
    pilot_errors: int = 0
    pilot_bits: int = 0
    snr_hint: int | None = None
    truth: int | None = None
    header_copies: int = 1        # the most any fragment used: replies mirror it

    @property
    def complete(self) -> bool:
        return len(self.received) == self.frag_count

    @property
    def key(self) -> tuple[bytes, int, int]:
        return (self.fingerprint, self.device_id, self.seq)


class Reassembler:
    """Collects DATA fragments by (fingerprint, device id, seq); bounded in memory.

    `add` returns the inference when its last fragment arrives; `expire` returns those whose
    timeout passed (incomplete, with erasures). When more than `max_pending` inferences are
    open, the oldest is released early as incomplete, so a flood cannot grow memory.
    """

    def __init__(self, timeout_s: float = 0.5, max_pending: int = 4096) -> None:
        self.timeout_s = timeout_s
        self.max_pending = max_pending
        self._pending: OrderedDict[tuple[bytes, int, int], Assembled] = OrderedDict()
        self.duplicates = 0
        self.inconsistent = 0

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, frame: Frame, now: float) -> list[Assembled]:
        """Add one DATA fragment; return the inferences it completes or forces out."""
        if frame.kind != Kind.DATA:
            raise ValueError("only DATA frames are reassembled")
        key = (frame.fingerprint, frame.device_id, frame.seq)
        done: list[Assembled] = []
        item = self._pending.get(key)
        if item is None:
            if frame.frag_count == 1:
                return [self._single(frame, now)]
            nbytes = (frame.payload_bits + 7) // 8
            item = Assembled(frame.fingerprint, frame.device_id, frame.seq, frame.payload_bits,
                             bytearray(nbytes), np.ones(nbytes, dtype=bool), now, frame.frag_count,
                             snr_hint=frame.snr_hint, truth=frame.truth)
            self._pending[key] = item
            while len(self._pending) > self.max_pending:
                done.append(self._pending.popitem(last=False)[1])
        elif item.frag_count != frame.frag_count or item.payload_bits != frame.payload_bits:
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

    def _single(self, frame: Frame, now: float) -> Assembled:
        nbytes = (frame.payload_bits + 7) // 8
        item = Assembled(frame.fingerprint, frame.device_id, frame.seq, frame.payload_bits,
                         bytearray(nbytes), np.ones(nbytes, dtype=bool), now, 1,
                         snr_hint=frame.snr_hint, truth=frame.truth)
        self._place(item, frame)
        return item

    @staticmethod
    def _place(item: Assembled, frame: Frame) -> None:
        piece = fragment_slice(item.payload_bits, item.frag_count, frame.frag_index)
        item.payload[piece.start:piece.stop] = frame.data
        item.erased[piece.start:piece.stop] = False
        item.received.add(frame.frag_index)
        item.pilot_errors += pilot_bit_errors(frame)
        item.pilot_bits += 8 * frame.pilot_len
        item.header_copies = max(item.header_copies, frame.header_copies)
