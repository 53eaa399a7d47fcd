"""Server-Sent Events: the edge's answered inferences, as they happen, to operator subscribers.

``GET /v1/events`` (operator credential) streams ``text/event-stream``: ``event: result`` with
the record `--mqtt` publishes (device, label, class name, confidence, BER, codec, counter,
truth, transport, timings; never a key or a payload) for every answered inference, and
``event: point`` with the history point (edge/history.py) once a second. Each event has an
``id:`` (a sequence number: a gap means events were lost) and the stream sends a comment every
`keepalive_s` when nothing happens, so an idle proxy keeps it open.

Bounded: at most `max_subscribers` streams at once (one more is refused: HTTP 503), each with a
queue of `queue` events. A subscriber that does not keep up loses the oldest events of its
queue, is told so (``event: dropped``, ``{"dropped": N}``) and the losses are counted; the edge
never waits for a subscriber. Each event is encoded once, whatever the number of subscribers,
and nothing is encoded while there is none.
"""
from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import AsyncIterator

KINDS = ("result", "point")


class Subscriber:
    """One stream's queue of encoded events."""

    __slots__ = ("events", "dropped", "wake")

    def __init__(self, size: int) -> None:
        self.events: deque[bytes] = deque(maxlen=size)
        self.dropped = 0            # lost since the stream last said so
        self.wake = asyncio.Event()


class EventStream:
    """Fan-out of result records and history points to SSE subscribers (module docstring).
    Used on the event loop only (the core answers there)."""

    def __init__(self, max_subscribers: int = 8, queue: int = 1000, keepalive_s: float = 15.0) -> None:
        if max_subscribers < 0 or queue < 1 or keepalive_s <= 0:
            raise ValueError("an event stream needs a queue of at least 1 and a positive keep-alive")
        self.max_subscribers = int(max_subscribers)
        self.queue = int(queue)
        self.keepalive_s = float(keepalive_s)
        self._subscribers: set[Subscriber] = set()
        self.sequence = 0
        self.sent = dict.fromkeys(KINDS, 0)     # events queued to a subscriber, by kind
        self.dropped = 0                        # events a slow subscriber lost
        self.refused = 0                        # streams refused at max_subscribers
        self.closed = False

    def __len__(self) -> int:
        return len(self._subscribers)

    def publish(self, kind: str, record: dict) -> None:
        """Queue `record` as one `kind` event to every subscriber (never waits)."""
        if not self._subscribers:
            return
        self.sequence += 1
        data = json.dumps(record, separators=(",", ":"))
        message = f"id: {self.sequence}\nevent: {kind}\ndata: {data}\n\n".encode()
        for sub in self._subscribers:
            if len(sub.events) == sub.events.maxlen:
                sub.dropped += 1
                self.dropped += 1
            sub.events.append(message)
            sub.wake.set()
        self.sent[kind] += len(self._subscribers)

    def subscribe(self) -> Subscriber | None:
        """A new stream's queue, or None at `max_subscribers` (or once closed)."""
        if self.closed or len(self._subscribers) >= self.max_subscribers:
            self.refused += 1
            return None
        sub = Subscriber(self.queue)
        self._subscribers.add(sub)
        return sub

    async def stream(self, sub: Subscriber) -> AsyncIterator[bytes]:
        """The bytes of `sub`'s stream until the client leaves or the edge stops."""
        try:
            yield f"retry: 2000\n: {self.max_subscribers} streams at most, {self.queue} events queued each\n\n".encode()
            while not self.closed:
                if not sub.events:
                    sub.wake.clear()
                    try:
                        await asyncio.wait_for(sub.wake.wait(), self.keepalive_s)
                    except asyncio.TimeoutError:
                        yield b": keep-alive\n\n"
                        continue
                if sub.dropped:
                    lost, sub.dropped = sub.dropped, 0
                    yield f"event: dropped\ndata: {json.dumps({'dropped': lost})}\n\n".encode()
                chunk = []
                while sub.events and len(chunk) < 256:
                    chunk.append(sub.events.popleft())
                if chunk:
                    yield b"".join(chunk)
        finally:
            self._subscribers.discard(sub)

    def close(self) -> None:
        """End every stream (the edge is stopping)."""
        self.closed = True
        for sub in self._subscribers:
            sub.wake.set()

    def figures(self) -> dict:
        return {"subscribers": len(self._subscribers), "max_subscribers": self.max_subscribers,
                "sent": dict(self.sent), "dropped": self.dropped, "refused": self.refused}
