"""Frame listeners on the server's event loop: UDP datagrams and COBS-framed serial streams.

UDP: a reader callback on the loop for a socket the server bound beforehand (so that "port in
use" is found before anything starts); one frame per datagram, the reply goes back to the
sender's address.

Serial: a stream URL of `channel.transports` (``serial:///dev/ttyUSB0?baud=115200`` or
``pty://`` for a fresh pty pair). pyserial reads block, so a reader thread splits the stream at
COBS delimiters and hands each frame to the loop (``call_soon_threadsafe``); replies go to a
writer thread through a bounded queue, so a stalled port never blocks the loop.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import os
import queue
import socket
import struct
import sys
import threading
import time

from snn.errors import SnnError

log = logging.getLogger("snn.edge")
_TIMESPEC = struct.Struct("@qq")   # struct timespec on 64-bit Linux


def bind_or_explain(sock: socket.socket, scheme: str, host: str, port: int, flag: str) -> None:
    """Bind `sock`; on failure close it and raise one clear SnnError (naming `flag` when in use)."""
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise SnnError(f"cannot listen on {scheme}://{host}:{port}: {exc.strerror or exc}"
                       + (f" (the port is in use; pick another with {flag} HOST:PORT)"
                          if exc.errno in (98, 48) else "")) from None


# SO_RCVBUF bytes per small datagram held: Linux doubles the value set and charges each ~72-byte
# datagram ~830 bytes of buffer (measured on loopback: 1 MiB set -> 2,520 datagrams held)
RCVBUF_PER_DATAGRAM = 416


def bind_udp(host: str, port: int, rcvbuf: int = 4 << 20, queue: int | None = None,
             reuse_port: bool = False) -> socket.socket:
    """A bound, non-blocking UDP socket; SnnError when the address is in use or invalid.
    `queue`: hold about this many small datagrams in the kernel (sets the receive buffer): a
    shallow queue makes overload end in counted kernel drops instead of frames that waited
    there past their deadline. `reuse_port`: SO_REUSEPORT, so several fronts on one host share
    the port; the kernel hashes each sender's address to one of them, so a device's fragments
    reach one front."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, rcvbuf)
        if queue is None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    except OSError:
        pass
    if queue is not None:
        set_udp_queue(sock, queue)
    bind_or_explain(sock, "udp", host, port, "--udp")
    sock.setblocking(False)
    return sock


def set_udp_queue(sock: socket.socket, datagrams: int) -> None:
    """Let the kernel hold about this many small datagrams for `sock` (its receive buffer)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, datagrams * RCVBUF_PER_DATAGRAM)
    except OSError:
        pass


def auto_udp_queue(capacity_fps: float, deadline_s: float) -> int:
    """The kernel queue for a UDP front: what the model serves (`capacity_fps`, from the batch
    cost model) in half a deadline, 64-4096 datagrams. Deeper, every frame read under overload
    has waited past what admission allows and is refused after the read; shallower, a burst is
    dropped that the deadline had room for."""
    return int(min(4096, max(64, capacity_fps * deadline_s / 2)))


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


class UdpListener:
    """One frame per datagram into the core's entry (`front.offer`); replies to the sender.

    A reader callback on the loop drains the socket (up to `burst` datagrams per readiness
    event) instead of asyncio's datagram transport, which runs one loop iteration per datagram;
    replies go out with a direct non-blocking sendto, and only when the kernel buffer is full are
    they queued (bounded) and flushed when the socket is writable again. When the core says the
    model is saturated (`front.pause_s`), reading stops for that long and the kernel's bounded
    queue holds (or drops, counted) what arrives meanwhile.
    """

    def __init__(self, front, sock: socket.socket, burst: int = 64, max_backlog: int = 8192) -> None:
        self.front = front
        self.sock = sock
        # the kernel's arrival time of each datagram (Linux SO_TIMESTAMPNS): a frame's deadline
        # runs from when it reached the socket, so time spent in the receive buffer counts and a
        # frame that waited there past its deadline is refused at once instead of decoded late
        self.timestamps = False
        if sys.platform.startswith("linux"):
            try:
                sock.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_TIMESTAMPNS", 35), 1)
                self.timestamps = True
            except OSError:
                pass
        self.burst = burst
        self.max_backlog = max_backlog
        self._backlog: collections.deque = collections.deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.tx_dropped = 0
        self.paused = 0             # times reading paused because the model was saturated
        self._closed = False

    @classmethod
    async def start(cls, front, sock: socket.socket) -> "UdpListener":
        listener = cls(front, sock)
        listener._loop = asyncio.get_running_loop()
        listener._loop.add_reader(sock.fileno(), listener._on_readable)
        inode = os.fstat(sock.fileno()).st_ino
        front.watch_kernel_drops(lambda: udp_kernel_drops(inode))
        return listener

    def _on_readable(self) -> None:
        recvmsg, recvfrom = self.sock.recvmsg, self.sock.recvfrom
        offer, pause_s = self.front.offer, self.front.pause_s
        stamped, unpack = self.timestamps, _TIMESPEC.unpack_from
        # kernel stamps are wall-clock; the pipeline's are perf_counter: one offset per burst
        offset = time.time() - time.perf_counter()
        for _ in range(self.burst):
            pause = pause_s()
            if pause:
                self._pause(pause)
                return
            try:
                if stamped:
                    data, anc, _flags, addr = recvmsg(65536, 64)
                else:
                    (data, addr), anc = recvfrom(65536), None
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. ICMP port unreachable from a client that went away
                log.debug("udp receive error: %s", exc)
                continue
            arrival = None
            if anc and len(anc[0][2]) >= _TIMESPEC.size:
                sec, nsec = unpack(anc[0][2])
                arrival = min(sec + nsec * 1e-9 - offset, time.perf_counter())
            offer(data, arrival, lambda reply, addr=addr: self.send(reply, addr), addr)

    def _pause(self, seconds: float) -> None:
        self._loop.remove_reader(self.sock.fileno())
        self.paused += 1
        self._loop.call_later(seconds, self._resume)

    def _resume(self) -> None:
        if not self._closed:
            self._loop.add_reader(self.sock.fileno(), self._on_readable)

    def send(self, data: bytes, addr) -> None:
        if self._backlog:
            self._queue(data, addr)
            return
        try:
            self.sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            self._queue(data, addr)
            self._loop.add_writer(self.sock.fileno(), self._on_writable)
        except OSError as exc:
            log.debug("udp send error: %s", exc)

    def _queue(self, data: bytes, addr) -> None:
        if len(self._backlog) >= self.max_backlog:
            self.tx_dropped += 1
            self.front.reply_failed()
            return
        self._backlog.append((data, addr))

    def _on_writable(self) -> None:
        while self._backlog:
            data, addr = self._backlog[0]
            try:
                self.sock.sendto(data, addr)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.debug("udp send error: %s", exc)
            self._backlog.popleft()
        self._loop.remove_writer(self.sock.fileno())

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._loop is not None:
            self._loop.remove_reader(self.sock.fileno())
            self._loop.remove_writer(self.sock.fileno())
        self.sock.close()


def open_serial(url: str):
    """Open a stream transport for the edge to listen on (SnnError with a clear line if it can't)."""
    from channel.transports import open_transport

    transport = open_transport(url, listen=True)
    if not getattr(transport, "stream", False):
        transport.close()
        raise SnnError(f"--serial takes a stream link (serial://... or pty://), not {url}")
    return transport


class SerialListener:
    """Reader and writer threads around a stream transport, feeding the core's entry on the loop."""

    def __init__(self, front, transport, loop: asyncio.AbstractEventLoop, max_out: int = 1024) -> None:
        self.front = front
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
            self.front.reply_failed()

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
                self.loop.call_soon_threadsafe(self.front.offer, got[0], None, self._reply)
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
                self.front.reply_failed()
                log.debug("serial write failed", exc_info=True)

    def close(self) -> None:
        self._stop.set()
        for thread in (self._reader, self._writer):
            if thread.is_alive():
                thread.join(timeout=0.5)
        self.transport.close()
