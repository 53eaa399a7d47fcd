"""UDP: one frame per datagram (stream = False)."""
from __future__ import annotations

import errno
import socket
import time

from channel.transports.base import MAX_DATAGRAM, Transport, _deadline, _remaining
from snn.errors import SnnError


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
