"""The edge's side of the resynchronisation exchange (docs/PROTOCOL.md §4.7).

A RESYNC that authenticates changes nothing the edge keeps: the desk remembers, in memory, one
open exchange per device (its nonce, the start offered, 30 s) and answers an OFFER bound to the
nonce. A CONFIRM authenticates only against that nonce; the desk then commits every counter below
the confirmed start as used — durably, through `commit` — and only then answers the ACK. A repeated
CONFIRM gets the same ACK and commits nothing new, until the device's first DATA from its new start
shows that the ACK arrived; from then on, and for a RESYNC or CONFIRM of an earlier exchange,
nothing goes back. Each device's answers are budgeted (`rate`/s, `burst`), charged only by
frames that authenticated for it, so nobody can spend another device's budget.
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
REMEMBERED_NONCES = 16          # per device: a nonce answered once is not answered again


@dataclass(slots=True)
class _Exchange:
    nonce: bytes
    start: int
    status: ResyncStatus
    until: float
    confirmed: int | None = None


class ResyncDesk:
    """Answers RESYNC and CONFIRM frames for a `Keyring` (its peers and replay windows).

    `commit()`: writes the windows to the replay state durably (raises OSError when it cannot:
    then no ACK goes out)."""

    def __init__(self, keyring, commit: Callable[[], None], rate: float = 1.0, burst: float = 4.0) -> None:
        self.keyring = keyring
        self.commit = commit
        self.budget = TokenBuckets(rate, burst, max_keys=65536)
        self.open: dict[int, _Exchange] = {}
        self.seen: dict[int, OrderedDict] = {}
        self.counts = {"resync_offer": 0, "resync_ack": 0, "resync_repeat": 0, "resync_refused": 0}

    def _pending_nonce(self, device_id: int) -> bytes | None:
        ex = self.open.get(device_id)
        return ex.nonce if ex is not None and ex.until > time.monotonic() else None

    def handle(self, data: bytes, reply: Callable[[bytes], None] | None) -> str:
        """Answer one control frame through `reply`; the reason to count it under: "resync_offer",
        "resync_ack", or the refusal ("auth", "damaged", "unmatched", "rate_limited", ...)."""
        try:
            frame = parse_control_up(data, self.keyring.peers, self._pending_nonce)
        except FrameError as exc:
            return exc.reason
        dev, now = frame.device_id, time.monotonic()
        if not self.budget.take(dev):
            return "rate_limited"
        peer = frame.peer
        window = self.keyring.window(dev)
        ctx = dict(key=peer.key, device_id=dev, fingerprint=peer.fingerprint, nonce=frame.nonce, copies=frame.copies)
        if frame.kind == ControlKind.RESYNC:
            seen = self.seen.setdefault(dev, OrderedDict())
            if frame.nonce in seen:
                self.counts["resync_repeat"] += 1
                return "replay"
            seen[frame.nonce] = None
            if len(seen) > REMEMBERED_NONCES:
                seen.popitem(last=False)
            status, start = offer_for(window.top if window.top >= 0 else None, known=not window.unknown)
            self.open[dev] = _Exchange(frame.nonce, start, status, now + OPEN_FOR_S)
            self._send(reply, encode_offer(start=start, status=status, **ctx))
            self.counts["resync_offer"] += 1
            return "resync_offer"
        ex = self.open[dev]          # parse_control_up authenticated it against this exchange's nonce
        start = frame.start
        if ex.confirmed is not None:
            if window.top >= ex.confirmed:
                # the device has sent DATA from its start: it got the ACK, and this is a replay
                del self.open[dev]
                self.counts["resync_repeat"] += 1
                return "replay"
            if start != ex.confirmed:
                self.counts["resync_refused"] += 1
                return "resync_refused"
            self._send(reply, encode_ack(start=start, **ctx))     # its ACK was lost: the same again
            self.counts["resync_repeat"] += 1
            return "resync_ack"
        if not confirmable(ex.start, start, ex.status):
            self.counts["resync_refused"] += 1
            return "resync_refused"
        if start > 0:
            window.commit_floor(start - 1)
        try:
            self.commit()
        except OSError:
            log.warning("resync of device %d: cannot commit the replay state; no ACK sent", dev, exc_info=True)
            return "internal"
        ex.confirmed = start
        log.info("device %d resynchronised: counters start at %d", dev, start)
        self._send(reply, encode_ack(start=start, status=ResyncStatus.OK, **ctx))
        self.counts["resync_ack"] += 1
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
        for dev in [d for d, ex in self.open.items() if ex.until <= now]:
            del self.open[dev]
