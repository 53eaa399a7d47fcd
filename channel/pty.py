"""Pseudo-terminal pairs: real serial ports without hardware (POSIX only).

    pair = open_pty_pair()            # master fd held here, pair.path is a real tty to open
    master_fd, slave_path = pair      # unpacks like the (master_fd, slave_path) tuple

    with PtyCable() as cable:         # a virtual null-modem cable: two ttys wired together
        a, b = cable.paths            # what is written to a is read from b, and back

The slave is put in raw mode at once (no echo, no line editing, no CR/LF translation) and its
fd is kept open by the pair, so reading the master never fails with EIO while the other side has
not opened (or has closed) the tty.
"""
from __future__ import annotations

import os
import select
import threading
from dataclasses import dataclass

from snn.errors import SnnError

__all__ = ["PtyPair", "open_pty_pair", "PtyCable"]


@dataclass
class PtyPair:
    master_fd: int
    slave_fd: int
    path: str
    link: str | None = None  # optional symlink to path

    def __iter__(self):
        return iter((self.master_fd, self.path))

    def close(self) -> None:
        for fd in (self.master_fd, self.slave_fd):
            try:
                os.close(fd)
            except OSError:
                pass
        self.master_fd = self.slave_fd = -1
        if self.link:
            try:
                if os.path.islink(self.link):
                    os.unlink(self.link)
            except OSError:
                pass
            self.link = None


def open_pty_pair(link: str | None = None) -> PtyPair:
    """A new pty pair in raw mode; `link` makes a symlink (e.g. /tmp/ttySNN0) to the slave."""
    try:
        import termios
        import tty
    except ImportError:  # pragma: no cover - Windows
        raise SnnError("pseudo-terminals need a POSIX system; on Windows use a com0com pair") from None
    master, slave = os.openpty()
    tty.setraw(slave, termios.TCSANOW)
    path = os.ttyname(slave)
    pair = PtyPair(master, slave, path)
    if link:
        try:
            if os.path.islink(link):
                os.unlink(link)
            os.symlink(path, link)
        except OSError as exc:
            pair.close()
            raise SnnError(f"cannot create the link {link} -> {path}: {exc.strerror}") from None
        pair.link = link
    return pair


class PtyCable:
    """Two pty pairs whose masters are bridged by a thread: a null-modem cable between two ttys."""

    def __init__(self, link_a: str | None = None, link_b: str | None = None) -> None:
        self.a = open_pty_pair(link_a)
        self.b = open_pty_pair(link_b)
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._pump, name="pty-cable", daemon=True)
        self._thread.start()

    @property
    def paths(self) -> tuple[str, str]:
        return (self.a.link or self.a.path, self.b.link or self.b.path)

    def _pump(self) -> None:
        peer = {self.a.master_fd: self.b.master_fd, self.b.master_fd: self.a.master_fd}
        while True:
            try:
                ready, _, _ = select.select([*peer, self._wake_r], [], [])
            except (OSError, ValueError):
                return
            if self._wake_r in ready:
                return
            for fd in ready:
                try:
                    data = os.read(fd, 65536)
                    view = memoryview(data)
                    while view:
                        view = view[os.write(peer[fd], view):]
                except OSError:
                    return

    def close(self) -> None:
        if self._wake_w >= 0:
            os.write(self._wake_w, b"x")
            self._thread.join(timeout=2.0)
            for fd in (self._wake_r, self._wake_w):
                os.close(fd)
            self._wake_r = self._wake_w = -1
            self.a.close()
            self.b.close()

    def __enter__(self) -> "PtyCable":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
