"""Byte streams (a serial port via pyserial, or a pty pair): each frame is COBS(frame) + 0x00
(codec.wire.cobs), resynchronising at the next delimiter after corruption (stream = True)."""
from __future__ import annotations

import abc
import collections
import errno
import os
import select
import time

from channel.transports.base import Transport, _deadline, _remaining
from codec.wire.cobs import CobsStreamDecoder, cobs_frame
from snn.errors import SnnError


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
