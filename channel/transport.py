"""Transports chosen by URL, all with the same send/receive interface.

    with open_transport("udp://127.0.0.1:9000") as t:         # client: sends to that address
        t.send(frame)
        got = t.recv(timeout=1.0)                              # (bytes, addr) or None on timeout

    edge = open_transport("udp://0.0.0.0:9000", listen=True)   # server: binds, replies to addr
    data, addr = edge.recv(None); edge.send(reply, addr)

URLs:
  udp://HOST:PORT[?mtu=N][&bind=HOST:PORT]      one frame per datagram (stream = False)
  serial:///dev/ttyUSB0[?baud=115200][&parity=N][&stopbits=1][&rtscts=0][&mtu=N]
                                                a real port or a pty via pyserial (stream = True)
  pty://[?link=/tmp/ttySNN]                     a new pty pair; this end holds the master and
                                                `.path` is the tty for the other process to open
  sim://NAME?ber=1e-3&model=iid|ge&burst=8&drop=P&drop_burst=L&downlink_ber=P&link=lora-sf7&seed=N
                                                in-process link for benchmarks and tests: a client
                                                (listen=False) reaches the server (listen=True) of
                                                the same NAME through the error and loss models in
                                                its own URL; link= delays frames by their time on
                                                air; NAME "loop" echoes a client's frames to itself.

Stream transports (serial, pty) carry each frame as COBS(frame) + 0x00 (codec.cobs) and
resynchronise at the next delimiter after corruption; `.dropped` counts frames that failed to
decode. `mtu` is the URL's ?mtu= (sim: else its link's MTU), else None; send() refuses frames
larger than it.
"""
from __future__ import annotations

import abc
import io

import collections
import errno
import heapq
import itertools
import os
import queue
import select
import socket
import threading
import time
import urllib.parse

import numpy as np

from codec.cobs import CobsStreamDecoder, cobs_frame
from codec.errors import SnnError

__all__ = ["Transport", "UdpTransport", "SerialTransport", "PtyTransport", "SimTransport",
           "open_transport", "SCHEMES"]

SCHEMES = ("udp", "serial", "pty", "sim")
MAX_DATAGRAM = 65535


class Transport(abc.ABC):
    """Common interface: send(frame, addr=None), recv(timeout) -> (bytes, addr) | None, close()."""

    url: str = ""
    stream: bool = False
    mtu: int | None = None
    listen: bool = False

    @abc.abstractmethod
    def send(self, frame: bytes, addr=None) -> None:
        """Send one frame (to `addr` on a listening datagram transport)."""

    @abc.abstractmethod
    def recv(self, timeout: float | None = None):
        """(frame, addr), or None after `timeout` seconds without one."""

    def fileno(self) -> int:
        """A selectable fd that becomes readable when recv may return a frame (POSIX)."""
        raise io.UnsupportedOperation(f"{type(self).__name__} has no file descriptor to select on")

    def close(self) -> None:
        pass

    @property
    def address(self) -> str:
        """Where this end is reachable, for messages (host:port, tty path, sim name)."""
        return self.url

    def _check_mtu(self, frame) -> bytes:
        data = bytes(frame)
        if self.mtu is not None and len(data) > self.mtu:
            raise ValueError(f"{self.url}: frame of {len(data)} bytes exceeds the MTU of {self.mtu}")
        return data

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.address}{' listen' if self.listen else ''}>"


def _deadline(timeout):
    return None if timeout is None else time.monotonic() + max(0.0, float(timeout))


def _remaining(deadline):
    return None if deadline is None else max(0.0, deadline - time.monotonic())


# --------------------------------------------------------------------------- UDP

class UdpTransport(Transport):
    stream = False

    def __init__(self, url: str, host: str, port: int, *, listen: bool, mtu: int | None,
                 bind: tuple[str, int] | None = None) -> None:
        self.url, self.listen, self.mtu = url, listen, mtu
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        except socket.gaierror as exc:
            raise SnnError(f"{url}: cannot resolve host {host!r} ({exc.strerror})") from None
        family, _, _, _, sockaddr = infos[0]
        self._sock = socket.socket(family, socket.SOCK_DGRAM)
        self._peer = None
        try:
            if listen:
                self._bind(sockaddr, url)
            else:
                if bind is not None:
                    self._bind(bind, url)
                self._remote = sockaddr
                # connect() filters datagrams to those from the remote and reports ICMP errors
                self._sock.connect(sockaddr)
        except BaseException:
            self._sock.close()
            raise

    def _bind(self, sockaddr, url):
        try:
            self._sock.bind(sockaddr)
        except OSError as exc:
            port = sockaddr[1]
            if exc.errno == errno.EADDRINUSE:
                raise SnnError(f"{url}: UDP port {port} is already in use; stop the process holding it "
                               f"(see `ss -lunp 'sport = :{port}'`) or choose another port") from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise SnnError(f"{url}: address {sockaddr[0]} is not an address of this machine") from None
            if exc.errno == errno.EACCES:
                raise SnnError(f"{url}: no permission to bind port {port}; use a port above 1023") from None
            raise SnnError(f"{url}: cannot bind: {exc.strerror}") from None

    @property
    def local_address(self) -> tuple:
        return self._sock.getsockname()

    @property
    def address(self) -> str:
        host, port = self._sock.getsockname()[:2]
        if not self.listen:
            host, port = self._remote[:2]
        return f"udp://{'[' + host + ']' if ':' in host else host}:{port}"

    def fileno(self) -> int:
        return self._sock.fileno()

    def send(self, frame, addr=None) -> None:
        data = self._check_mtu(frame)
        try:
            if self.listen:
                target = addr if addr is not None else self._peer
                if target is None:
                    raise ValueError(f"{self.url}: send() on a listening transport needs addr "
                                     "(the address recv() returned)")
                self._sock.sendto(data, target)
            else:
                self._sock.send(data)
        except ConnectionRefusedError:
            pass  # ICMP port unreachable from an earlier datagram: UDP is fire and forget

    def recv(self, timeout=None):
        deadline = _deadline(timeout)
        while True:
            self._sock.settimeout(_remaining(deadline))
            try:
                data, addr = self._sock.recvfrom(MAX_DATAGRAM)
            except (socket.timeout, BlockingIOError):
                return None
            except ConnectionRefusedError:  # the remote is not listening (yet); keep waiting
                if deadline is not None and time.monotonic() >= deadline:
                    return None
                continue
            except OSError as exc:
                if exc.errno == errno.EBADF:
                    return None
                raise
            if self.listen:
                self._peer = addr
            return data, addr

    def close(self) -> None:
        self._sock.close()


# --------------------------------------------------------------------------- stream links

class _StreamTransport(Transport):
    stream = True

    def __init__(self, max_frame: int) -> None:
        self._decoder = CobsStreamDecoder(max_frame=max_frame)
        self._frames: collections.deque[bytes] = collections.deque()

    @property
    def dropped(self) -> int:
        """Frames that arrived but failed COBS decoding (corrupt framing)."""
        return self._decoder.dropped

    @abc.abstractmethod
    def _read(self, timeout: float | None) -> bytes:
        """Raw bytes from the line (b"" after `timeout`)."""

    @abc.abstractmethod
    def _write(self, data: bytes) -> None:
        """Raw bytes onto the line."""

    def send(self, frame, addr=None) -> None:
        self._write(cobs_frame(self._check_mtu(frame)))

    def recv(self, timeout=None):
        deadline = _deadline(timeout)
        while not self._frames:
            chunk = self._read(_remaining(deadline))
            if chunk:
                self._frames.extend(self._decoder.feed(chunk))
            elif deadline is not None and time.monotonic() >= deadline:
                return None
        return self._frames.popleft(), self.address

    def pending(self) -> bool:
        return bool(self._frames)


class SerialTransport(_StreamTransport):
    """A serial port through pyserial (real UART, USB CDC or a pty slave)."""

    def __init__(self, url: str, path: str, *, baud: int = 115200, parity: str = "N",
                 stopbits: float = 1, bytesize: int = 8, rtscts: bool = False,
                 mtu: int | None = None) -> None:
        super().__init__(max_frame=max(4096, mtu or 0))
        import serial  # pyserial; imported here so UDP-only users need not install it

        self.url, self.mtu, self.path = url, mtu, path
        self._serial_error = serial.SerialException
        self.hangups = 0
        try:
            if path in ("loop", "/loop"):
                self._ser = serial.serial_for_url("loop://", baudrate=baud, timeout=0)
            else:
                self._ser = serial.Serial(path, baudrate=baud, parity=parity, stopbits=stopbits,
                                          bytesize=bytesize, rtscts=rtscts, timeout=0,
                                          exclusive=True)
        except (serial.SerialException, ValueError) as exc:
            text = str(exc)
            if "No such file" in text or "could not open port" in text and "2]" in text:
                raise SnnError(f"{url}: serial port {path} does not exist; check the cable and the "
                               "device name (ls /dev/tty*), or create a pty pair with "
                               "`snn channel ptys`") from None
            if "Permission denied" in text:
                raise SnnError(f"{url}: no permission to open {path}; add your user to the 'dialout' "
                               "group (sudo usermod -aG dialout $USER) and log in again") from None
            if "lock" in text.lower() or "busy" in text.lower():
                raise SnnError(f"{url}: {path} is in use by another process") from None
            raise SnnError(f"{url}: cannot open {path}: {text}") from None

    @property
    def address(self) -> str:
        return self.path

    def fileno(self) -> int:
        return self._ser.fileno()

    def _read(self, timeout):
        try:
            fd = self._ser.fileno()
        except Exception:  # noqa: BLE001 - URL handlers (loop://) have no fd
            fd = None
        if fd is not None:
            # wait on the fd; the port's own timeout stays 0 (no termios reconfiguration per call,
            # and safe while another thread writes)
            try:
                if not self._ser.in_waiting:
                    if not select.select([fd], [], [], timeout)[0]:
                        return b""
                return self._ser.read(max(1, self._ser.in_waiting))
            except (self._serial_error, OSError, ValueError):
                # the peer hung up (pty master closed, USB unplugged): report nothing, don't spin
                self.hangups += 1
                time.sleep(min(0.05, timeout if timeout is not None else 0.05))
                return b""
        # pyserial: read(1) waits up to `timeout` for the first byte, then take what is buffered
        self._ser.timeout = timeout
        first = self._ser.read(1)
        if not first:
            return b""
        waiting = self._ser.in_waiting
        return first + (self._ser.read(waiting) if waiting else b"")

    def _write(self, data):
        self._ser.write(data)

    def close(self) -> None:
        try:
            self._ser.close()
        except Exception:  # noqa: BLE001 - closing a vanished port must not raise
            pass


class PtyTransport(_StreamTransport):
    """This end of a new pty pair (the master); another process opens `.path` as a serial port."""

    def __init__(self, url: str, *, link: str | None = None, mtu: int | None = None,
                 write_timeout: float = 2.0) -> None:
        super().__init__(max_frame=max(4096, mtu or 0))
        from channel.pty import open_pty_pair

        self.url, self.mtu, self.write_timeout = url, mtu, write_timeout
        self.pair = open_pty_pair(link)
        os.set_blocking(self.pair.master_fd, False)
        self.tx_dropped = 0

    @property
    def path(self) -> str:
        return self.pair.link or self.pair.path

    @property
    def address(self) -> str:
        return self.path

    def fileno(self) -> int:
        return self.pair.master_fd

    def _read(self, timeout):
        fd = self.pair.master_fd
        if fd < 0:
            return b""
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            return b""
        try:
            return os.read(fd, 65536)
        except (BlockingIOError, InterruptedError):
            return b""
        except OSError as exc:  # EIO: no process has the tty open
            if exc.errno == errno.EIO:
                time.sleep(min(timeout or 0.05, 0.05))
                return b""
            raise

    def _write(self, data):
        view = memoryview(data)
        deadline = time.monotonic() + self.write_timeout
        fd = self.pair.master_fd
        while view:
            try:
                view = view[os.write(fd, view):]
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([], [fd], [], left)[1]:
                    self.tx_dropped += 1  # the other side does not read: drop, never hang
                    return

    def close(self) -> None:
        self.pair.close()


# --------------------------------------------------------------------------- in-process link

class _SimHub:
    def __init__(self, name: str) -> None:
        self.name = name
        self.server: SimTransport | None = None
        self.inbox: queue.Queue = queue.Queue()  # frames for the server: (due, data, client id)
        self.clients: dict[int, SimTransport] = {}
        self.ids = itertools.count(1)


_HUBS: dict[str, _SimHub] = {}
_HUBS_LOCK = threading.Lock()


class _Direction:
    """Error model + loss model + airtime of one direction of a sim link."""

    def __init__(self, model, loss, link, rng) -> None:
        self.model, self.loss, self.link, self.rng = model, loss, link, rng
        self.busy_until = 0.0
        self.frames = self.dropped = self.bits = self.bits_flipped = 0
        self.lock = threading.Lock()

    def apply(self, data: bytes):
        """(corrupted bytes or None if lost, due time)."""
        with self.lock:
            self.frames += 1
            if self.loss is not None and self.loss.drop(1, self.rng)[0]:
                self.dropped += 1
                return None, 0.0
            if self.model is not None and data:
                out, flipped = self.model.corrupt(np.frombuffer(data, dtype=np.uint8), self.rng)
                data = out.tobytes()
                self.bits_flipped += int(flipped)
            self.bits += 8 * len(data)
            now = time.monotonic()
            due = now
            if self.link is not None:
                due = max(now, self.busy_until) + airtime_s(self.link, len(data))
                self.busy_until = due
            return data, due

    def stats(self) -> dict:
        return {"frames": self.frames, "dropped": self.dropped, "bits": self.bits,
                "bits_flipped": self.bits_flipped,
                "measured_ber": self.bits_flipped / self.bits if self.bits else 0.0}


def airtime_s(link, n_bytes: int) -> float:
    """Time on air of n bytes on `link`, split into PHY-sized pieces if larger than one frame."""
    n = int(n_bytes)
    if n <= link.max_payload:
        return link.time_on_air_s(n)
    full, rest = divmod(n, link.max_payload)
    return full * link.time_on_air_s(link.max_payload) + (link.time_on_air_s(rest) if rest else 0.0)


class SimTransport(Transport):
    """In-process endpoint; see the module docstring."""

    stream = False

    def __init__(self, url: str, name: str, *, listen: bool, params: dict) -> None:
        from channel.errors import make_error_model
        from channel.links import get_link
        from channel.loss import make_loss_model

        self.url, self.name, self.listen = url, name, listen
        self._inbox: queue.Queue = queue.Queue()
        self._held: list = []  # heap of (due, seq, data, addr) not yet due
        self._seq = itertools.count()
        self._closed = False
        link = get_link(params["link"]) if params.get("link") else None
        self.mtu = int(params["mtu"]) if params.get("mtu") else (link.mtu if link else None)
        seed = params.get("seed")
        ss = np.random.SeedSequence(None if seed is None else int(seed))
        rng_up, rng_down = (np.random.default_rng(s) for s in ss.spawn(2))
        model = params.get("model", "iid")
        burst = float(params["burst"]) if params.get("burst") else None
        up_model = down_model = None
        if params.get("ber") or params.get("snr_db"):
            kw = {"snr_db": float(params["snr_db"])} if params.get("snr_db") else {}
            if "sf" in params:
                kw["sf"] = int(params["sf"])
            ber = float(params["ber"]) if params.get("ber") else None
            up_model = make_error_model(model, ber, burst, **kw)
        if params.get("downlink_ber"):
            down_model = make_error_model(model, float(params["downlink_ber"]), burst)
        drop = float(params.get("drop") or 0.0)
        drop_burst = float(params["drop_burst"]) if params.get("drop_burst") else None
        up_loss = make_loss_model(drop, drop_burst) if drop else None
        self.uplink = _Direction(up_model, up_loss, link, rng_up)
        self.downlink = _Direction(down_model, None, link, rng_down)
        with _HUBS_LOCK:
            self._hub = _HUBS.setdefault(name, _SimHub(name))
            if listen:
                if self._hub.server is not None and not self._hub.server._closed:
                    raise SnnError(f"{url}: a sim server named {name!r} is already listening in this "
                                   "process; close it or choose another name")
                self._hub.server = self
                self._inbox = self._hub.inbox
                self.id = 0
            else:
                self.id = next(self._hub.ids)
                self._hub.clients[self.id] = self

    @property
    def address(self) -> str:
        return f"sim://{self.name}"

    def stats(self) -> dict:
        return {"uplink": self.uplink.stats(), "downlink": self.downlink.stats()}

    def send(self, frame, addr=None) -> None:
        data = self._check_mtu(frame)
        if self.listen:
            client = self._hub.clients.get(addr if addr is not None else -1)
            if client is None:
                raise ValueError(f"{self.url}: send() on a listening sim transport needs the addr "
                                 "recv() returned, of a client still open")
            out, due = client.downlink.apply(data)
            if out is not None:
                client._inbox.put((due, out, self.address))
        else:
            out, due = self.uplink.apply(data)
            if out is None:
                return
            if self.name == "loop":
                self._inbox.put((due, out, self.address))
            else:
                self._hub.inbox.put((due, out, self.id))

    def recv(self, timeout=None):
        deadline = _deadline(timeout)
        while True:
            try:  # move what arrived into the due-time heap, then deliver the earliest due
                while True:
                    due, data, addr = self._inbox.get_nowait()
                    heapq.heappush(self._held, (due, next(self._seq), data, addr))
            except queue.Empty:
                pass
            now = time.monotonic()
            if self._held and self._held[0][0] <= now:
                _, _, data, addr = heapq.heappop(self._held)
                return data, addr
            wait = _remaining(deadline)
            if wait is not None and wait <= 0:
                return None
            if self._held:
                until_due = self._held[0][0] - now
                wait = until_due if wait is None else min(wait, until_due)
            try:
                due, data, addr = self._inbox.get(timeout=wait)
                heapq.heappush(self._held, (due, next(self._seq), data, addr))
            except queue.Empty:
                pass

    def close(self) -> None:
        self._closed = True
        with _HUBS_LOCK:
            hub = self._hub
            if self.listen and hub.server is self:
                hub.server = None
            hub.clients.pop(getattr(self, "id", -1), None)
            if hub.server is None and not hub.clients and _HUBS.get(hub.name) is hub:
                del _HUBS[hub.name]


# --------------------------------------------------------------------------- the one function

_SIM_KEYS = {"ber", "model", "burst", "drop", "drop_burst", "downlink_ber", "link", "seed", "mtu",
             "snr_db", "sf"}
_SERIAL_KEYS = {"baud", "parity", "stopbits", "bytesize", "rtscts", "mtu"}


def _query(url: str, parsed, allowed: set[str]) -> dict:
    params = {}
    for key, values in urllib.parse.parse_qs(parsed.query, keep_blank_values=True).items():
        if key not in allowed:
            raise SnnError(f"{url}: unknown option {key!r}; this scheme takes "
                           f"{', '.join(sorted(allowed))}")
        params[key] = values[-1]
    return params


def _int(url, key, value) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise SnnError(f"{url}: {key} must be an integer, got {value!r}") from None


def open_transport(url: str, *, listen: bool = False) -> Transport:
    """Open the transport a URL names (see the module docstring). Bad URLs raise SnnError."""
    text = str(url).strip()
    parsed = urllib.parse.urlsplit(text)
    scheme = parsed.scheme.lower()
    if scheme == "udp":
        params = _query(text, parsed, {"mtu", "bind"})
        try:
            host, port = parsed.hostname, parsed.port
        except ValueError:
            raise SnnError(f"{text}: the port must be a number 0..65535") from None
        if port is None:
            raise SnnError(f"{text}: a UDP URL needs a port, e.g. udp://127.0.0.1:9000")
        host = host or ("0.0.0.0" if listen else "127.0.0.1")
        bind = None
        if params.get("bind"):
            b = urllib.parse.urlsplit("udp://" + params["bind"])
            bind = (b.hostname or "0.0.0.0", b.port or 0)
        mtu = _int(text, "mtu", params["mtu"]) if params.get("mtu") else None
        return UdpTransport(text, host, port, listen=listen, mtu=mtu, bind=bind)
    if scheme == "serial":
        params = _query(text, parsed, _SERIAL_KEYS)
        path = (parsed.netloc + parsed.path) if parsed.netloc else parsed.path
        if not path:
            raise SnnError(f"{text}: a serial URL needs a device, e.g. serial:///dev/ttyUSB0?baud=115200")
        parity = params.get("parity", "N").upper()[:1]
        if parity not in "NEOMS":
            raise SnnError(f"{text}: parity must be N, E or O")
        rtscts = params.get("rtscts", "0").lower() in ("1", "true", "yes", "on")
        mtu = _int(text, "mtu", params["mtu"]) if params.get("mtu") else None
        try:
            stopbits = float(params.get("stopbits", 1))
        except ValueError:
            raise SnnError(f"{text}: stopbits must be 1, 1.5 or 2") from None
        return SerialTransport(text, path, baud=_int(text, "baud", params.get("baud", 115200)),
                               parity=parity, stopbits=stopbits,
                               bytesize=_int(text, "bytesize", params.get("bytesize", 8)),
                               rtscts=rtscts, mtu=mtu)
    if scheme == "pty":
        params = _query(text, parsed, {"link", "mtu"})
        mtu = _int(text, "mtu", params["mtu"]) if params.get("mtu") else None
        return PtyTransport(text, link=params.get("link") or None, mtu=mtu)
    if scheme == "sim":
        params = _query(text, parsed, _SIM_KEYS)
        name = (parsed.netloc + parsed.path).strip("/") or "default"
        try:
            return SimTransport(text, name, listen=listen, params=params)
        except ValueError as exc:
            raise SnnError(f"{text}: {exc}") from None
    raise SnnError(f"unsupported transport URL {text!r}; use udp://HOST:PORT, "
                   "serial:///dev/ttyUSB0?baud=115200, pty:// or sim://NAME?ber=...")
