"""Bound the edge's HTTP connections: a cap, an idle deadline and a whole-request deadline.

Why: uvicorn's h11 protocol arms its keep-alive timer only after a response, so a connection
that never sends a byte, or sends part of a request line, headers or body and stalls, was held
forever, and nothing bounded how many were held: about 20,000 of them (this machine's descriptor
limit) made /healthz time out and wrote 203 MB of EMFILE tracebacks in under a minute (issue 13).

`ConnectionGuard` holds the policy and the counts; `protocol_class(guard)` is uvicorn's
`H11Protocol` with three hooks that apply it:

- idle deadline (`idle_timeout_s`): a connection must start a request within it, after it
  connects and after each response (keep-alive);
- request deadline (`request_timeout_s`): from a request's first byte to its last body byte;
  bytes trickled in do not extend it (slowloris);
- cap (`max_connections`): at the cap a new connection closes the one that has waited longest
  without a request in the app (idle, or still sending its request), as nginx reuses keep-alive
  connections when it runs out of worker connections; only when every connection has a whole
  request in the app is the new one closed instead. So idle connections can never lock out
  `/healthz`, and the process stays well below its descriptor limit (`default_max_connections`).

Connections closed for any of these are aborted: nothing lingers to flush a response to a
client that never reads.
"""
from __future__ import annotations

import errno
import logging
import resource
import socket
import struct
import time
from collections import OrderedDict
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from edge.lograte import SUMMARY_ATTR
from snn.errors import SnnError

log = logging.getLogger("snn.edge.http")

# descriptors kept free for everything but HTTP connections: the listening sockets, UDP, serial
# ptys, the log, bundle files, pipes; the idle edge holds about 10 (measured: 8-9)
FD_RESERVE = 256
DEFAULT_MAX_CONNECTIONS = 1024
LINGER_RESET = struct.pack("ii", 1, 0)
CLOSE_REASONS = ("idle_timeout", "request_timeout", "evicted", "refused", "head_too_large")
# the most bytes a request's line and headers may take (h11 enforces it only on a head that is
# still incomplete in its buffer; a whole 64,000-byte head in one read got through): beyond it,
# 431 and the connection is closed
MAX_HEAD_BYTES = 16 * 1024
_HEAD_END = b"\r\n\r\n"


def fd_limit() -> int:
    """This process's soft limit on open descriptors (RLIMIT_NOFILE)."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def default_max_connections(limit: int | None = None) -> int:
    """1024, or half the descriptor limit where that is lower (a soft limit of 1024 gives 512)."""
    limit = fd_limit() if limit is None else limit
    return max(1, min(DEFAULT_MAX_CONNECTIONS, limit // 2))


def check_max_connections(n: int, limit: int | None = None) -> int:
    """`n` if the process can hold that many connections and its other descriptors; SnnError
    otherwise (a cap above the limit would turn a flood into EMFILE, the failure it prevents)."""
    limit = fd_limit() if limit is None else limit
    if n < 1:
        raise SnnError(f"--http-max-connections must be at least 1, got {n}")
    if n > limit - FD_RESERVE:
        raise SnnError(f"--http-max-connections {n} leaves too few of this process's {limit} file "
                       f"descriptors (ulimit -n) for the rest of the edge: give at most "
                       f"{max(1, limit - FD_RESERVE)} or raise ulimit -n")
    return n


@dataclass(frozen=True)
class HttpLimits:
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    idle_timeout_s: float = 5.0
    request_timeout_s: float = 5.0


class ConnectionGuard:
    """The open HTTP connections, which of them may be closed to make room, and the counts
    (a Prometheus collector: register it in the metrics registry)."""

    def __init__(self, limits: HttpLimits, log_interval_s: float = 10.0) -> None:
        self.limits = limits
        self.log_interval_s = log_interval_s
        self._logged_at: dict[str, float] = {}
        self._logged_count: dict[str, int] = {}
        self.open: set = set()
        # connections without a whole request in the app, longest-waiting first
        self._evictable: OrderedDict = OrderedDict()
        self.closed = dict.fromkeys(CLOSE_REASONS, 0)
        self.accept_errors: dict[str, int] = {}
        self.peak = 0

    def admit(self, conn) -> bool:
        """A new connection: True to keep it (closing the longest-waiting evictable one if at
        the cap), False when it must be closed at once."""
        if len(self.open) >= self.limits.max_connections:
            if not self._evictable:
                self.closed["refused"] += 1
                self._log_cap("refused", "closing new connections at once (every connection has a "
                                         "request in the app)")
                return False
            victim, _ = self._evictable.popitem(last=False)
            self.open.discard(victim)
            self.closed["evicted"] += 1
            self._log_cap("evicted", "closing the connections that waited longest without a request")
            reset(victim.transport)
        self.open.add(conn)
        self._evictable[conn] = None
        self.peak = max(self.peak, len(self.open))
        return True

    def _log_cap(self, reason: str, what: str) -> None:
        """At most one line per reason per interval, with the count since the last one: under a
        flood this runs thousands of times a second, too often even to make a log record."""
        now = time.monotonic()
        if now - self._logged_at.get(reason, -1e9) < self.log_interval_s:
            return
        since = self.closed[reason] - self._logged_count.get(reason, 0)
        self._logged_at[reason], self._logged_count[reason] = now, self.closed[reason]
        log.warning("HTTP connection cap (%d) reached: %s (%d %s since the last such line)",
                    self.limits.max_connections, what, since, reason, extra={SUMMARY_ATTR: True})

    def busy(self, conn) -> None:
        """`conn` has a whole request in the app: not to be closed for room until it answers."""
        self._evictable.pop(conn, None)

    def idle(self, conn) -> None:
        """`conn` answered and waits for its next request: the newest candidate for eviction."""
        if conn in self.open:
            self._evictable[conn] = None
            self._evictable.move_to_end(conn)

    def discard(self, conn) -> None:
        self.open.discard(conn)
        self._evictable.pop(conn, None)

    def expired(self, reason: str) -> None:
        self.closed[reason] += 1

    def accept_error(self, exc: OSError) -> None:
        """accept() failed (EMFILE, ENFILE, ENOBUFS, ENOMEM): count it, log one line per kind per
        interval. asyncio pauses accepting for a second and retries."""
        name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
        self.accept_errors[name] = self.accept_errors.get(name, 0) + 1
        log.error("HTTP accept failed: %s (%s); %d connections open, cap %d; retrying in 1 s",
                  name, exc.strerror, len(self.open), self.limits.max_connections,
                  extra={"rate_key": f"http-accept-{name}"})

    def loop_exception_handler(self, loop, context: dict) -> None:
        """The event loop's exception handler: accept errors are counted, everything else is
        one rate-limited line (asyncio's default logs a traceback per occurrence)."""
        exc = context.get("exception")
        message = str(context.get("message", "unhandled error"))
        if isinstance(exc, OSError) and message.startswith("socket.accept()"):
            self.accept_error(exc)
            return
        kind = type(exc).__name__ if exc is not None else ""
        log.error("event loop: %s: %r", message, exc, exc_info=exc,
                  extra={"rate_key": f"loop-{message[:80]}-{kind}"})

    def collect(self):
        yield GaugeMetricFamily("snn_edge_http_connections", "Open HTTP connections", value=len(self.open))
        yield GaugeMetricFamily("snn_edge_http_connections_peak", "Most HTTP connections open at once",
                                value=self.peak)
        yield GaugeMetricFamily("snn_edge_http_max_connections", "The HTTP connection cap",
                                value=self.limits.max_connections)
        closed = CounterMetricFamily("snn_edge_http_closed", "HTTP connections the edge closed: "
                                     "idle_timeout, request_timeout (request not all in within the "
                                     "deadline), evicted (to make room at the cap), refused (at the "
                                     "cap, nothing evictable)", labels=["reason"])
        for reason, n in self.closed.items():
            closed.add_metric([reason], n)
        yield closed
        accept = CounterMetricFamily("snn_edge_http_accept_errors",
                                     "accept() failures on the HTTP socket, by errno", labels=["errno"])
        for name in sorted(set(self.accept_errors) | {"EMFILE"}):
            accept.add_metric([name], self.accept_errors.get(name, 0))
        yield accept


def reset(transport) -> None:
    """Close with a TCP reset (SO_LINGER 0): no FIN handshake and no TIME_WAIT left behind. Under
    a flood, a graceful close() was 35 % of the edge's CPU (py-spy), most of it in the kernel."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
        except OSError:
            pass
    transport.abort()


def protocol_class(guard: ConnectionGuard) -> type:
    """uvicorn's h11 protocol bound to `guard` (pass it as uvicorn.Config(http=...))."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    done_states = (h11.DONE, h11.MUST_CLOSE, h11.CLOSED, h11.ERROR)

    class GuardedH11Protocol(H11Protocol):
        """H11Protocol under `guard`: an idle deadline, a request deadline, the cap."""

        _guard = guard

        def connection_made(self, transport) -> None:  # type: ignore[override]
            self._deadline = None
            self._head_seen = 0     # bytes of the current request's head read so far
            self._phase = ""
            self._request_t0 = 0.0
            super().connection_made(transport)
            if not self._guard.admit(self):
                reset(transport)
                return
            self._arm("idle", self._guard.limits.idle_timeout_s)

        def data_received(self, data: bytes) -> None:
            if self._phase == "idle":
                # the first byte of a request: its deadline runs from now, armed only if the
                # request is not all in after this read (the common case needs no timer)
                self._cancel()
                self._phase = "request"
                self._request_t0 = self.loop.time()
            if self.conn.their_state is h11.IDLE and not self._head_fits(data):
                return
            super().data_received(data)
            self._after_events()

        def _head_fits(self, data: bytes) -> bool:
            """Count the bytes of a request head still being read; over MAX_HEAD_BYTES, answer 431
            and close (counted `head_too_large`)."""
            end = data.find(_HEAD_END)
            size = self._head_seen + (end + len(_HEAD_END) if end >= 0 else len(data))
            if size <= MAX_HEAD_BYTES:
                self._head_seen = 0 if end >= 0 else size
                return True
            self._cancel()
            self._guard.expired("head_too_large")
            self._guard.discard(self)
            body = (b'{"detail": "request head over %d bytes", "reason": "head_too_large", "code": null}'
                    % MAX_HEAD_BYTES)
            self.transport.write(b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: "
                                 b"application/json\r\nconnection: close\r\ncontent-length: %d\r\n\r\n%s"
                                 % (len(body), body))
            self.transport.close()
            return False

        def on_response_complete(self) -> None:
            super().on_response_complete()
            # our idle deadline replaces uvicorn's keep-alive timer (ours aborts and is counted)
            self._unset_keepalive_if_required()
            self._after_events()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel()
            self._guard.discard(self)
            super().connection_lost(exc)
            # asyncio's socket transport keeps a bound method of itself (_read_ready_cb): a cycle
            # that only the cyclic GC frees, and its full collections over a flood's thousands of
            # dead transports stalled the loop for 200-750 ms each. The transport is closed and
            # its reader removed; break the cycle so refcounting frees it at once.
            vars(self.transport).pop("_read_ready_cb", None)

        def _after_events(self) -> None:
            if self.transport.is_closing():
                self._cancel()
                return
            state = self.conn.their_state
            in_app = self.cycle is not None and not self.cycle.response_complete
            if state in done_states:
                # the whole request is in: no read deadline while the app answers it
                if self._phase == "request":
                    self._cancel()
                    self._phase = "app"
                if in_app:
                    self._guard.busy(self)
            elif state is h11.IDLE and not in_app and not self.conn.trailing_data[0]:
                if self._phase != "idle":
                    self._arm("idle", self._guard.limits.idle_timeout_s)
                    self._guard.idle(self)
            else:
                # part of a request is in (request line, headers or body)
                if self._phase != "request":
                    self._phase = "request"
                    self._request_t0 = self.loop.time()
                if self._deadline is None:
                    left = self._guard.limits.request_timeout_s - (self.loop.time() - self._request_t0)
                    self._arm("request", max(left, 0.0))

        def _arm(self, phase: str, seconds: float) -> None:
            self._cancel()
            self._phase = phase
            self._deadline = self.loop.call_later(seconds, self._expire, phase)

        def _cancel(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expire(self, phase: str) -> None:
            self._deadline = None
            if self.transport.is_closing():
                return
            self._guard.expired("idle_timeout" if phase == "idle" else "request_timeout")
            self._guard.discard(self)
            if phase == "idle":
                # a keep-alive client may be about to reuse the connection: a plain FIN, as
                # uvicorn's own keep-alive timeout does (abort: no response to flush is pending)
                self.transport.abort()
            else:
                reset(self.transport)

    return GuardedH11Protocol
