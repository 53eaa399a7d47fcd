"""Frame listeners on the server's event loop: UDP datagrams and COBS-framed serial streams.

UDP: an asyncio datagram endpoint on a socket the server bound beforehand (so that "port in
use" is found before anything starts); one frame per datagram, the reply goes back to the
sender's address.

Serial: a stream URL of `channel.transport` (``serial:///dev/ttyUSB0?baud=115200`` or
``pty://`` for a fresh pty pair). pyserial reads block, so a reader thread splits the stream at
COBS delimiters and hands each frame to the loop (``call_soon_threadsafe``); replies go to a
writer thread through a bounded queue, so a stalled port never blocks the loop.
"""
from __future__ import annotations

import asyncio
import logging
import os
import queue
import socket
import threading

from codec.errors import SnnError

log = logging.getLogger("snn.edge")


def bind_udp(host: str, port: int, rcvbuf: int = 4 << 20) -> socket.socket:
    """A bound, non-blocking UDP socket; SnnError when the address is in use or invalid."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, rcvbuf)
    except OSError:
        pass
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise SnnError(f"cannot listen on udp://{host}:{port}: {exc.strerror or exc}"
                       + (" (the port is in use; pick another with --udp HOST:PORT)"
                          if exc.errno in (98, 48) else "")) from None
    sock.setblocking(False)
    return sock


def udp_kernel_drops(inode: int) -> float:
    """Datagrams the kernel dropped for our socket (its receive buffer was full): the last
    column of /proc/net/udp[6] (Linux). Counted, so no frame is lost without a trace."""
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table, encoding="ascii") as fh:
                next(fh)
                for line in fh:
                    fields = line.split()
                    if len(fields) >= 13 and fields[9] == str(inode):
                        return float(fields[12])
        except (OSError, StopIteration):
            continue
    return 0.0


class UdpListener(asyncio.DatagramProtocol):
    """One frame per datagram into the core; replies to the sender."""

    def __init__(self, core) -> None:
        self.core = core
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        sendto = self.transport.sendto
        self.core.handle_frame(data, "udp", lambda reply: sendto(reply, addr))

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable from a client that went away: not our problem, keep listening
        log.debug("udp error: %s", exc)

    @classmethod
    async def start(cls, core, sock: socket.socket) -> "UdpListener":
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_datagram_endpoint(lambda: cls(core), sock=sock)
        inode = os.fstat(sock.fileno()).st_ino
        core.metrics.kernel_drops.set_function(lambda: udp_kernel_drops(inode))
        return protocol

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def open_serial(url: str):
    """Open a stream transport for the edge to listen on (SnnError with a clear line if it can't)."""
    from channel.transport import open_transport

    transport = open_transport(url, listen=True)
    if not getattr(transport, "stream", False):
        transport.close()
        raise SnnError(f"--serial takes a stream link (serial://... or pty://), not {url}")
    return transport


class SerialListener:
    """Reader and writer threads around a stream transport, feeding the loop."""

    def __init__(self, core, transport, loop: asyncio.AbstractEventLoop, max_out: int = 1024) -> None:
        self.core = core
        self.transport = transport
        self.loop = loop
        self._out: queue.Queue = queue.Queue(max_out)
        self._stop = threading.Event()
        self.tx_dropped = 0
        self._reader = threading.Thread(target=self._read_loop, name="snn-serial-rx", daemon=True)
        self._writer = threading.Thread(target=self._write_loop, name="snn-serial-tx", daemon=True)

    @property
    def path(self) -> str:
        return getattr(self.transport, "path", None) or self.transport.address

    def start(self) -> None:
        self._reader.start()
        self._writer.start()

    def _reply(self, data: bytes) -> None:
        try:
            self._out.put_nowait(data)
        except queue.Full:
            self.tx_dropped += 1

    def _read_loop(self) -> None:
        while not self._stop.is_set():
            try:
                got = self.transport.recv(timeout=0.1)
            except Exception:  # noqa: BLE001 - a port error must not end the listener silently
                if self._stop.is_set():
                    return
                log.exception("serial read failed; retrying")
                self._stop.wait(0.2)
                continue
            if got is None:
                continue
            try:
                self.loop.call_soon_threadsafe(self.core.handle_frame, got[0], "serial", self._reply)
            except RuntimeError:  # loop closed
                return

    def _write_loop(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._out.get(timeout=0.1)
            except queue.Empty:
                continue
            try:
                self.transport.send(data)
            except Exception:  # noqa: BLE001
                self.tx_dropped += 1
                log.debug("serial write failed", exc_info=True)

    def close(self) -> None:
        self._stop.set()
        for thread in (self._reader, self._writer):
            if thread.is_alive():
                thread.join(timeout=0.5)
        self.transport.close()
