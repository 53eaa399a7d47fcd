"""Run the edge: one asyncio loop with uvicorn (HTTP), the UDP listener and the serial listener.

Sockets are bound before anything starts, so a port in use is one clear error (SnnError: the
`snn` dispatcher prints it as one line and exits 2). SIGTERM/SIGINT: uvicorn stops accepting
HTTP, the lifespan shutdown closes the UDP/serial listeners and drains the model queue; the
process exits 0 well within 5 s.
"""
from __future__ import annotations

import contextlib
import gc
import socket
import sys
import threading
from dataclasses import dataclass
from typing import Callable

from edge.codecs import CodecRegistry
from edge.core import EdgeConfig, EdgeCore
from edge.listeners import bind_or_explain
from snn.errors import SnnError


@dataclass
class ServeOptions:
    http: tuple[str, int] = ("127.0.0.1", 8000)
    udp: tuple[str, int] | None = ("127.0.0.1", 9000)
    serial: list[str] | None = None
    threads: int = 1
    udp_queue: int | None = None      # datagrams the kernel holds for the UDP socket (None: 4 MiB)
    graceful_s: float = 1.0
    log_level: str = "warning"


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


def bind_http(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted sockets only when the
    # socket says so (proto 0 leaves Nagle on, and every response then waits ~40 ms for an ACK)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    bind_or_explain(sock, "http", host, port, "--http")
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _server_class():
    import uvicorn

    class EdgeUvicorn(uvicorn.Server):
        """uvicorn.Server that handles SIGINT/SIGTERM as a graceful stop and then exits normally
        (stock uvicorn re-raises the signal after shutdown, which ends the process by signal)."""

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

    from edge.app import create_app
    from edge.listeners import SerialListener, UdpListener, bind_udp, open_serial

    http_sock = bind_http(*options.http)
    udp_sock = None
    serial_transports = []
    try:
        if options.udp is not None:
            udp_sock = bind_udp(*options.udp, queue=options.udp_queue)
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
    # warm up in the model thread itself: TorchScript specialises per thread as well as per
    # shape, and a first call in a fresh thread held the GIL (and so the loop) for ~0.5 s
    for codec in codecs:
        core.batcher.run_in_model_thread(codec.warm_up, config.max_batch)
    # the admission cost model starts from the slowest codec's measured batches
    small, full = max((core.batcher.run_in_model_thread(c.batch_seconds, 1),
                       core.batcher.run_in_model_thread(c.batch_seconds, config.max_batch)) for c in codecs)
    core.batcher.calibrate(small, full)
    listeners: list = []
    addresses = {"http": "http://%s:%d" % _addr(http_sock),
                 "udp": ("udp://%s:%d" % _addr(udp_sock)) if udp_sock else None,
                 "serial": [], "codecs": [c.fingerprint_hex + " " + c.name for c in codecs],
                 "engine": ",".join(sorted({c.engine.name for c in codecs}))}

    async def on_startup(core: EdgeCore) -> None:
        import asyncio

        addresses["event_loop"] = type(asyncio.get_running_loop()).__module__.split(".")[0]
        if udp_sock is not None:
            listeners.append(await UdpListener.start(core, udp_sock))
        for transport in serial_transports:
            listener = SerialListener(core, transport, asyncio.get_running_loop())
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

    app = create_app(core, on_startup, on_shutdown)
    # asyncio's own loop, not uvloop even where it is installed: measured on the 2-core machine
    # (interleaved UDP closed loops, same run), uvloop cost the model thread ~15-20 us more CPU per
    # frame and 5-12 % of the throughput
    uconfig = uvicorn.Config(app, loop="asyncio", log_level=options.log_level, access_log=False, lifespan="on",
                             timeout_graceful_shutdown=options.graceful_s, server_header=False,
                             date_header=False, backlog=2048)
    server = _server_class()(uconfig)
    return server, core, http_sock, addresses


def _addr(sock: socket.socket) -> tuple[str, int]:
    host, port = sock.getsockname()[:2]
    return host, port


def serve(codecs: CodecRegistry | Callable[[], CodecRegistry], config: EdgeConfig | None = None,
          options: ServeOptions | None = None,
          on_ready: Callable[[dict], None] | None = None) -> int:
    """Serve until SIGTERM/SIGINT; returns the exit code."""
    config = config or EdgeConfig()
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
