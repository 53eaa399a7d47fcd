"""The interface every transport implements: send a frame, receive (frame, address) or None."""
from __future__ import annotations

import abc
import io
import time

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
