"""The edge's side of the resynchronisation exchange (docs/PROTOCOL.md §4.7).

A RESYNC that authenticates changes nothing the edge keeps: the desk remembers, in memory, a few
open exchanges per device (nonce, the start offered, 30 s) and answers an OFFER bound to the
nonce. A CONFIRM authenticates only against an open exchange's nonce; the desk then commits every
counter below the confirmed start as used — durably, through `ReplayState.commit_floor` — and
only once that is on disk answers the ACK. A repeated CONFIRM gets the same ACK and commits
nothing new, until the device's first DATA from its new start shows that the ACK arrived; from
then on, and for a RESYNC or CONFIRM of an earlier exchange, nothing goes back.

The attacker's view: a RESYNC whose nonce the desk has seen is dropped before it costs the
device anything (no answer, no budget, no exchange replaced), so replaying captured frames can
spend at most one answer per RESYNC this edge process never saw; and since several exchanges
stay open per device, such a replay does not displace the device's own exchange either. Each
device's answers are budgeted (`rate`/s, `burst`), charged only by fresh frames that
authenticated for it.
"""
from __future__ import annotations

import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

from codec.wire.control import (
    ControlKind,
    ResyncStatus,
    confirmable,
    encode_ack,
    encode_offer,
    offer_for,
    parse_control_up,
)
from edge.auth import TokenBuckets
from snn.errors import FrameError

log = logging.getLogger("snn.edge")
OPEN_FOR_S = 30.0
OPEN_PER_DEVICE = 4             # exchanges open at once per device (a replay cannot displace the device's)
REMEMBERED_NONCES = 1 << 16     # nonces answered, over all devices (LRU): each is answered once
ANSWERED = ("resync_offer", "resync_ack", "resync_committing")


@dataclass(slots=True)
class _Exchange:
    nonce: bytes
    start: int
    status: ResyncStatus
    until: float
    confirmed: int | None = None     # the start committed (its ACK sent)
    committing: int | None = None    # the start being committed (the ACK waits for the disk)


class ResyncDesk:
    """Answers RESYNC and CONFIRM frames for a `Keyring` (its peers) and an
    `edge.replay_state.ReplayState` (the windows, and the durable commit before an ACK)."""

    def __init__(self, keyring, state, rate: float = 1.0, burst: float = 4.0) -> None:
        self.keyring = keyring
        self.state = state
        self.budget = TokenBuckets(rate, burst, max_keys=65536)
        self.open: dict[int, list[_Exchange]] = {}
        self.seen: OrderedDict[tuple[int, bytes], None] = OrderedDict()
        self.counts = {"resync_offer": 0, "resync_ack": 0, "resync_repeat": 0, "resync_refused": 0}

    def _exchanges(self, device_id: int, now: float) -> list[_Exchange]:
        live = [ex for ex in self.open.get(device_id, ()) if ex.until > now]
        if live:
            self.open[device_id] = live
        else:
            self.open.pop(device_id, None)
        return live

    def _nonces(self, device_id: int) -> list[bytes]:
        return [ex.nonce for ex in self._exchanges(device_id, time.monotonic())]

    def forget(self, device_id: int) -> None:
        """A revoked or re-keyed device: its open exchanges go."""
        self.open.pop(device_id, None)

    def handle(self, data: bytes, reply: Callable[[bytes], None] | None) -> str:
        """Answer one control frame through `reply`; the reason to count it under: one of ANSWERED,
        or the refusal ("auth", "damaged", "unmatched", "replay", "rate_limited", ...). FrameError
        reasons are returned, not raised: the caller charges them like a failed DATA frame."""
        try:
            frame = parse_control_up(data, self.keyring.peers, self._nonces)
        except FrameError as exc:
            return exc.reason
        if frame.kind == ControlKind.RESYNC:
            return self._resync(frame, reply)
        return self._confirm(frame, reply)

    def _context(self, frame) -> dict:
        return dict(key=frame.peer.key, device_id=frame.device_id, fingerprint=frame.peer.fingerprint,
                    nonce=frame.nonce, copies=frame.copies)

    def _resync(self, frame, reply) -> str:
        dev, now = frame.device_id, time.monotonic()
        if (dev, frame.nonce) in self.seen:          # a replay: costs the device nothing
            self.counts["resync_repeat"] += 1
            return "replay"
        if not self.budget.take(dev):
            return "rate_limited"
        self.seen[(dev, frame.nonce)] = None
        if len(self.seen) > REMEMBERED_NONCES:
            self.seen.popitem(last=False)
        window = self.state.window(dev)
        status, start = offer_for(window.top if window.top >= 0 else None, known=not window.unknown)
        open_now = self._exchanges(dev, now)[-(OPEN_PER_DEVICE - 1):]
        self.open[dev] = open_now + [_Exchange(frame.nonce, start, status, now + OPEN_FOR_S)]
        self._send(reply, encode_offer(start=start, status=status, **self._context(frame)))
        self.counts["resync_offer"] += 1
        return "resync_offer"

    def _confirm(self, frame, reply) -> str:
        dev, start = frame.device_id, frame.start
        ex = next(e for e in self.open[dev] if e.nonce == frame.nonce)   # it authenticated against it
        window = self.state.window(dev)
        if ex.confirmed is not None:
            if window.top >= ex.confirmed:
                # the device has sent DATA from its start: it got the ACK, and this is a replay
                self.open[dev] = [e for e in self.open[dev] if e is not ex]
                self.counts["resync_repeat"] += 1
                return "replay"
            if start != ex.confirmed:
                self.counts["resync_refused"] += 1
                return "resync_refused"
            if not self.budget.take(dev):
                return "rate_limited"
            self._send(reply, encode_ack(start=start, **self._context(frame)))   # its ACK was lost
            self.counts["resync_repeat"] += 1
            return "resync_ack"
        if ex.committing is not None:                # the ACK goes out once the commit is on disk
            return "resync_committing" if start == ex.committing else "resync_refused"
        if not confirmable(ex.start, start, ex.status):     # (a commit needs a RESYNC: budgeted there)
            self.counts["resync_refused"] += 1
            return "resync_refused"
        ex.committing = start
        ack = encode_ack(start=start, status=ResyncStatus.OK, **self._context(frame))

        def committed() -> None:
            ex.confirmed, ex.committing = start, None
            log.info("device %d resynchronised: counters start at %d", dev, start)
            self._send(reply, ack)
            self.counts["resync_ack"] += 1

        if start > 0:
            self.state.commit_floor(dev, start - 1, committed)
        else:                                        # nothing below 0 to commit
            committed()
        return "resync_ack"

    @staticmethod
    def _send(reply, data: bytes) -> None:
        if reply is None:
            return
        try:
            reply(data)
        except Exception:  # noqa: BLE001 - a vanished peer must not hurt the server
            log.debug("resync reply failed", exc_info=True)

    def expire(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for dev in list(self.open):
            self._exchanges(dev, now)
