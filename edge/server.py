"""Run the edge: one asyncio loop with uvicorn (HTTP), the UDP listener and the serial listener.

Sockets are bound before anything starts, so a port in use is one clear error (SnnError: the
`snn` dispatcher prints it as one line and exits 2). SIGTERM/SIGINT: uvicorn stops accepting
HTTP, the lifespan shutdown closes the UDP/serial listeners and drains the model queue; the
process exits 0 well within 5 s.

HTTP is bounded (edge/http_guard.py): at most `max_connections` connections, an idle deadline,
a whole-request deadline; the log is rate-limited (edge/lograte.py: one line per kind of failure
per interval, with a count), and the loop's own errors (accept() out of descriptors) go through
the same limiter instead of a traceback each.
"""
from __future__ import annotations

import contextlib
import gc
import logging
import socket
import sys
import threading
from dataclasses import dataclass, field
from typing import Callable

from edge.codecs import CodecRegistry
from edge.core import EdgeConfig, EdgeCore
from edge.http_guard import (
    FD_RESERVE,
    ConnectionGuard,
    HttpLimits,
    default_max_connections,
    fd_limit,
    protocol_class,
)
from edge.listeners import bind_or_explain
from edge.operator_auth import OperatorAuth, private_token
from snn.errors import SnnError

# connections the kernel queues for accept() (capped by net.core.somaxconn)
LISTEN_BACKLOG = 2048
ACCEPT_BATCH = 64


@dataclass
class ServeOptions:
    http: tuple[str, int] = ("127.0.0.1", 8000)
    udp: tuple[str, int] | None = ("127.0.0.1", 9000)
    serial: list[str] | None = None
    threads: int = 1
    udp_queue: int | None = None      # datagrams the kernel holds for the UDP socket (None: auto_udp_queue)
    graceful_s: float = 1.0
    log_level: str = "warning"
    http_limits: HttpLimits = field(default_factory=lambda: HttpLimits(default_max_connections()))
    log_interval_s: float = 10.0
    reuse_port: bool = False    # SO_REUSEPORT on the UDP and HTTP sockets (several fronts per host)
    # the operator credential (edge.operator_auth); None: a fresh token in a private temporary file
    operator: OperatorAuth | None = None


def parse_hostport(text: str, what: str) -> tuple[str, int]:
    """'HOST:PORT' (or '[v6]:PORT', or ':PORT' for 127.0.0.1) -> (host, port)."""
    raw = text
    for scheme in ("udp://", "http://", "tcp://"):
        if text.startswith(scheme):
            text = text[len(scheme):]
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise SnnError(f"{what} takes HOST:PORT (e.g. 127.0.0.1:8000; port 0 picks a free one), "
                       f"got {raw!r}")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


def bind_http(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted sockets only when the
    # socket says so (proto 0 leaves Nagle on, and every response then waits ~40 ms for an ACK)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    bind_or_explain(sock, "http", host, port, "--http")
    sock.listen(LISTEN_BACKLOG)
    sock.set_inheritable(True)
    return sock


def _server_class():
    import uvicorn

    class EdgeUvicorn(uvicorn.Server):
        """uvicorn.Server that handles SIGINT/SIGTERM as a graceful stop and then exits normally
        (stock uvicorn re-raises the signal after shutdown, which ends the process by signal)."""

        async def startup(self, sockets=None) -> None:
            await super().startup(sockets)
            # asyncio re-listens with its accept batch (see _accept_batch); give the kernel's
            # queue of connections waiting for accept() its full length back
            for sock in sockets or []:
                sock.listen(LISTEN_BACKLOG)

        @contextlib.contextmanager
        def capture_signals(self):
            import signal

            if threading.current_thread() is not threading.main_thread():
                yield
                return
            sigs = (signal.SIGINT, signal.SIGTERM)
            original = {sig: signal.signal(sig, self.handle_exit) for sig in sigs}
            try:
                yield
            finally:
                for sig, handler in original.items():
                    signal.signal(sig, handler)

    return EdgeUvicorn


def build(codecs: CodecRegistry | Callable[[], CodecRegistry], config: EdgeConfig,
          options: ServeOptions, on_ready: Callable[[dict], None] | None = None):
    """Bind every socket/port, then load the codecs (a registry, or a callable that loads one:
    a port in use is reported before seconds go into loading bundles), and build
    (uvicorn server, core, HTTP socket, addresses). Raises SnnError."""
    import uvicorn

    from edge import lograte
    from edge.app import create_app
    from edge.listeners import SerialListener, UdpListener, auto_udp_queue, bind_udp, open_serial, set_udp_queue

    http_sock = bind_http(*options.http, reuse_port=options.reuse_port)
    udp_sock = None
    serial_transports = []
    try:
        if options.udp is not None:
            udp_sock = bind_udp(*options.udp, queue=options.udp_queue, reuse_port=options.reuse_port)
        for url in options.serial or []:
            serial_transports.append(open_serial(url))
        if callable(codecs):
            codecs = codecs()
        if len(codecs) == 0:
            raise SnnError("no codec to serve: give --bundle PATH")
        if any(c.engine.name == "torch" for c in codecs):
            from edge.engines import set_torch_threads
            set_torch_threads(options.threads)
    except BaseException:
        http_sock.close()
        if udp_sock is not None:
            udp_sock.close()
        for t in serial_transports:
            t.close()
        raise

    core = EdgeCore(codecs, config)
    operator = options.operator or private_token()
    core.warm_up()
    udp_queue = options.udp_queue
    if udp_sock is not None and udp_queue is None:
        udp_queue = auto_udp_queue(core.capacity_fps(), config.deadline_ms / 1000.0)
        set_udp_queue(udp_sock, udp_queue)
    listeners: list = []
    guard = ConnectionGuard(options.http_limits, options.log_interval_s)
    core.register_collector(guard)
    log_flush: list = []
    addresses = {"http": "http://%s:%d" % _addr(http_sock),
                 "udp": ("udp://%s:%d" % _addr(udp_sock)) if udp_sock else None,
                 "udp_queue": udp_queue if udp_sock else None,
                 "serial": [], "codecs": [c.fingerprint_hex + " " + c.name for c in codecs],
                 "engine": ",".join(sorted({c.engine.name for c in codecs})),
                 "operator_token_file": operator.path}

    async def on_startup(core: EdgeCore) -> None:
        import asyncio

        loop = asyncio.get_running_loop()
        addresses["event_loop"] = type(loop).__module__.split(".")[0]
        loop.set_exception_handler(guard.loop_exception_handler)
        if core.config.keys_path and threading.current_thread() is threading.main_thread():
            import signal
            loop.add_signal_handler(signal.SIGHUP, core.reload_keys)   # snn keys add|revoke|rotate
        log_flush.append(loop.create_task(_flush_log_every(limiter, options.log_interval_s)))
        if udp_sock is not None:
            listeners.append(await UdpListener.start(core.front("udp"), udp_sock))
        for transport in serial_transports:
            listener = SerialListener(core.front("serial"), transport, asyncio.get_running_loop())
            listener.start()
            listeners.append(listener)
            addresses["serial"].append(listener.path)
        # everything loaded so far (torch, the models, the app) lives as long as the process:
        # keep it out of the cyclic GC, whose full collections would otherwise walk millions of
        # objects and stall the loop for hundreds of milliseconds
        gc.collect()
        gc.freeze()
        if on_ready is not None:
            on_ready(addresses)

    async def on_shutdown(core: EdgeCore) -> None:
        for listener in listeners:
            listener.close()
        for task in log_flush:
            task.cancel()
        limiter.flush(force=True)

    if not operator.required:
        logging.getLogger("snn.edge").warning(
            "OPERATOR API OPEN (--no-operator-token): /v1/stats, /v1/codecs, /metrics, the dashboard and "
            "JSON answers need no credential; anyone who reaches the HTTP port reads labels and figures "
            "(trusted LAN only)")
    app = create_app(core, on_startup, on_shutdown, operator)
    # asyncio's own loop, not uvloop even where it is installed: measured on the 2-core machine
    # (interleaved UDP closed loops, same run), uvloop cost the model thread ~15-20 us more CPU per
    # frame and 5-12 % of the throughput
    # http: uvicorn's h11 protocol under the connection guard (cap, idle and request deadlines);
    # ws none: the edge has no WebSocket route, and an upgraded connection would leave the guard
    uconfig = uvicorn.Config(app, loop="asyncio", log_level=options.log_level, access_log=False, lifespan="on",
                             timeout_graceful_shutdown=options.graceful_s, server_header=False,
                             date_header=False, backlog=_accept_batch(options.http_limits.max_connections),
                             http=protocol_class(guard), ws="none")
    # after uvicorn.Config, which configures its loggers: one filter on every handler
    if not logging.getLogger().handlers:
        logging.basicConfig(level=options.log_level.upper(), format="snn edge: %(levelname)s %(message)s")
    limiter = lograte.install(options.log_interval_s)
    server = _server_class()(uconfig)
    return server, core, http_sock, addresses


def _accept_batch(max_connections: int) -> int:
    """How many connections asyncio accepts per loop pass (its `backlog`; the kernel's queue is
    set back to LISTEN_BACKLOG after startup). Small, because a pass's accepts become the next
    passes' work (a task, a transport, a protocol each) and a flood must not make passes long:
    with 21,000 idle connections reopened at 1,500/s on the loaded 2-core machine, a batch of 1024
    let 4 of 82 /healthz probes wait 1-4 s and a device's p99 reach 2.5 s; a batch of 64, 1 of 99
    and 0.56 s (`snn bench http-abuse --rate 500 --hold 15`). It is also at most a quarter of the
    cap, so that a client that connects and sends its request at once is read (and no longer
    evictable) before newer connections can push it out, and fits in the descriptors the cap
    leaves."""
    return max(16, min(ACCEPT_BATCH, max_connections // 4, (fd_limit() - max_connections - FD_RESERVE) // 2))


async def _flush_log_every(limiter, interval_s: float) -> None:
    """Summarise what the log limiter held back, once per interval."""
    import asyncio

    while True:
        await asyncio.sleep(interval_s)
        limiter.flush()


def _addr(sock: socket.socket) -> tuple[str, int]:
    host, port = sock.getsockname()[:2]
    return host, port


def serve(codecs: CodecRegistry | Callable[[], CodecRegistry], config: EdgeConfig,
          options: ServeOptions | None = None,
          on_ready: Callable[[dict], None] | None = None) -> int:
    """Serve until SIGTERM/SIGINT; returns the exit code."""
    options = options or ServeOptions()
    server, core, http_sock, _ = build(codecs, config, options, on_ready)
    # the model thread gives the GIL back between torch ops; a shorter switch interval hands it
    # back sooner while the loop thread is busy with frames (default 5 ms)
    sys.setswitchinterval(0.001)
    try:
        server.run(sockets=[http_sock])
    finally:
        http_sock.close()
    if not server.started:
        print("snn edge: the server failed to start (see the log above)", file=sys.stderr)
        return 1
    return 0
