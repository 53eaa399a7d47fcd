"""Serial device emulation: behave on a UART exactly as the MCU firmware would.

For each image the emulated MCU runs the integer encoder (`lowering.Program`), waits the
encoder's estimated latency on the board (so the timing looks like the board's, unless
``compute_delay=False``), packs the symbols Gray-coded (`codec.wire.packing`), builds the v2 DATA
frames (`codec.wire.frame.encode_inference`: its key, a fresh frame counter per transmission, the
long counter on the first and on resends, optionally the ground-truth label), COBS-frames them
(`codec.wire.cobs`) and writes them to the port **paced at the configured baud rate** (one
start + 8 data + stop bits per byte, as a UART shifts them out), then reads authenticated
REPLY/ERROR frames from the same port and matches them by counter. No reply within the timeout:
the inference is sent again under a new counter, a bounded number of times (docs/PROTOCOL.md §7).
Without a key it uses the insecure all-zero key (an edge run with --insecure).

The port is a real serial device or one end of a pty pair (``serial:///dev/pts/N?baud=115200``),
so the channel proxy and the edge's serial listener are exercised as with hardware.
"""
from __future__ import annotations

import time
import urllib.parse
from dataclasses import dataclass, field

import numpy as np

from snn.errors import SnnError


def parse_serial_url(url: str) -> tuple[str, int]:
    """serial:///dev/pts/3?baud=115200 (or a bare path) -> (path, baud)."""
    text = str(url)
    if "://" not in text:
        return text, 115200
    parts = urllib.parse.urlsplit(text)
    if parts.scheme != "serial":
        raise SnnError(f"{url}: the MCU speaks on a serial port; use serial:///dev/ttyX?baud=N")
    path = (parts.netloc + parts.path) if parts.netloc else parts.path
    query = urllib.parse.parse_qs(parts.query)
    try:
        baud = int(query.get("baud", ["115200"])[-1])
    except ValueError:
        raise SnnError(f"{url}: baud must be an integer") from None
    if not path:
        raise SnnError(f"{url}: no device path")
    return path, baud


class PacedUart:
    """A pyserial port whose writes leave at `baud` (10 bits per byte), like a UART's shift register."""

    def __init__(self, path: str, baud: int, bits_per_byte: int = 10, chunk: int = 16):
        try:
            import serial
        except ImportError:  # pragma: no cover
            raise SnnError("the serial device needs pyserial: pip install pyserial") from None
        try:
            self.ser = serial.Serial(path, baudrate=baud, timeout=0)
        except (serial.SerialException, ValueError, OSError) as exc:
            raise SnnError(f"cannot open serial port {path}: {exc}") from None
        self.baud = int(baud)
        self.byte_time = bits_per_byte / float(baud)
        self.chunk = chunk
        self._free_at = time.monotonic()
        self.bytes_sent = 0

    def write(self, data: bytes) -> float:
        """Write paced; returns the seconds the bytes took on the wire."""
        start = max(time.monotonic(), self._free_at)
        for i in range(0, len(data), self.chunk):
            piece = data[i:i + self.chunk]
            due = start + (i + len(piece)) * self.byte_time
            self.ser.write(piece)
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        self._free_at = start + len(data) * self.byte_time
        self.bytes_sent += len(data)
        return len(data) * self.byte_time

    def read(self, timeout: float) -> bytes:
        self.ser.timeout = max(0.0, timeout)
        first = self.ser.read(1)
        if not first:
            return b""
        waiting = self.ser.in_waiting
        return first + (self.ser.read(waiting) if waiting else b"")

    def close(self) -> None:
        try:
            self.ser.close()
        except Exception:  # noqa: BLE001
            pass


@dataclass
class DeviceStats:
    count: int = 0
    answered: int = 0
    correct: int = 0
    errors: int = 0
    retries: int = 0
    bytes_sent: int = 0
    rtt_ms: list = field(default_factory=list)
    air_ms: list = field(default_factory=list)
    labels: list = field(default_factory=list)

    def as_dict(self) -> dict:
        rtt = np.array(self.rtt_ms) if self.rtt_ms else np.zeros(1)
        return {"count": self.count, "answered": self.answered,
                "accuracy": self.correct / self.count if self.count else 0.0,
                "accuracy_answered": self.correct / self.answered if self.answered else 0.0,
                "errors": self.errors, "retries": self.retries, "bytes_sent": self.bytes_sent,
                "rtt_p50_ms": float(np.percentile(rtt, 50)), "rtt_p99_ms": float(np.percentile(rtt, 99)),
                "uart_ms_per_inference": float(np.mean(self.air_ms)) if self.air_ms else 0.0}


class McuDevice:
    """The emulated firmware: integer encoder + framing + paced UART + reply matching."""

    def __init__(self, program, port_url: str, device_id: int = 1, mtu: int = 255,
                 timeout_s: float = 3.0, retries: int = 2, compute_delay_s: float = 0.0, send_truth: bool = True,
                 device_key: bytes | None = None, counters=None):
        info = program.model.encoder   # validated by the reader (codec.wire.encoder_meta)
        if info is None:
            raise SnnError(f"{program.model.path} has no SemanticNN metadata; export it with `snn export`")
        self.program = program
        self.fingerprint, self.levels, self.gray = info.fingerprint, info.levels, info.gray
        from codec.wire.crypto import ZERO_KEY
        from codec.wire.keys import CounterStore

        self.device_id, self.mtu = device_id, mtu
        self.key = ZERO_KEY if device_key is None else device_key
        self.counters = counters or CounterStore(None, start=(time.time_ns() // 16_000) & 0xFFFFFFFF)
        self._long_next = True
        self.timeout_s, self.retries = timeout_s, retries
        self.compute_delay_s = compute_delay_s
        self.send_truth = send_truth
        path, baud = parse_serial_url(port_url)
        self.uart = PacedUart(path, baud)
        from codec.wire.cobs import CobsStreamDecoder
        self.decoder = CobsStreamDecoder(max_frame=1024)
        self.pending: list[bytes] = []

    def close(self) -> None:
        self.uart.close()

    def frames_for(self, symbols: np.ndarray, counter: int, truth: int | None, long_counter: bool = False) -> list[bytes]:
        from codec.wire.frame import encode_inference
        from codec.wire.packing import pack_symbols

        payload = pack_symbols(symbols, self.levels, self.gray).tobytes()
        return encode_inference(payload, key=self.key, device_id=self.device_id, fingerprint=self.fingerprint,
                                counter=counter, mtu=self.mtu, truth=truth, long_counter=long_counter)

    def _await_reply(self, counters: list[int], deadline: float):
        from codec.wire.frame import parse_reply
        from snn.errors import FrameError

        by_low = {c & 0xFFFF: c for c in counters}
        while True:
            while self.pending:
                raw = self.pending.pop(0)
                try:
                    return parse_reply(raw, key=self.key, device_id=self.device_id, fingerprint=self.fingerprint,
                                       full_counter=by_low.get)
                except FrameError:
                    continue  # damaged, forged, or for another request
            if not self._read_until(deadline):
                return None

    def _read_until(self, deadline: float) -> bool:
        """Read what the UART has (at most 50 ms) into `pending`; False once `deadline` passed."""
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        chunk = self.uart.read(min(left, 0.05))
        if chunk:
            self.pending.extend(self.decoder.feed(chunk))
        return True

    def _take_counter(self) -> int:
        """A fresh counter; a device with none it may use resynchronises first (docs/PROTOCOL.md §4.7)."""
        from codec.wire.keys import ResyncNeeded
        try:
            return self.counters.take()
        except ResyncNeeded:
            self.resync()
            return self.counters.take()

    def resync(self) -> None:
        """The resynchronisation exchange over the UART (RESYNC -> OFFER -> CONFIRM -> ACK), as the
        firmware runs it; SnnError when the edge never answers or refuses the key."""
        from codec.wire.cobs import cobs_frame
        from codec.wire.control import (STATUS_TEXT, ControlKind, ResyncStatus, encode_confirm, encode_resync,
                                        new_nonce)
        from snn.errors import SnnError

        ctx = dict(key=self.key, device_id=self.device_id, fingerprint=self.fingerprint)
        for _ in range(max(3, self.retries + 1)):
            nonce = new_nonce()
            self.uart.write(cobs_frame(encode_resync(nonce=nonce, **ctx)))
            offer = self._await_control(nonce, ControlKind.OFFER, time.monotonic() + self.timeout_s)
            if offer is None:
                continue
            if offer.status == ResyncStatus.NO_STATE and self.counters.has_state:
                begin = self.counters.next
            elif offer.status != ResyncStatus.OK:
                raise SnnError(f"resynchronisation refused: {STATUS_TEXT.get(offer.status, offer.status)}")
            else:
                begin = self.counters.confirm_start(offer.start)
            for _ in range(3):
                self.uart.write(cobs_frame(encode_confirm(nonce=nonce, start=begin, **ctx)))
                if self._await_control(nonce, ControlKind.ACK, time.monotonic() + self.timeout_s, begin):
                    self.counters.resynced(begin)
                    self._long_next = True
                    return
        raise SnnError("the edge did not answer the resynchronisation (docs/PROTOCOL.md §4.7)")

    def _await_control(self, nonce: bytes, kind, deadline: float, start: int | None = None):
        from codec.wire.control import is_control_length, parse_control_down
        from snn.errors import FrameError

        while True:
            while self.pending:
                raw = self.pending.pop(0)
                if not is_control_length(len(raw)):
                    continue
                try:
                    got = parse_control_down(raw, key=self.key, device_id=self.device_id,
                                             fingerprint=self.fingerprint, nonce=nonce)
                except FrameError:
                    continue
                if got.kind == kind and (start is None or got.start == start):
                    return got
            if not self._read_until(deadline):
                return None

    def infer(self, image: np.ndarray, truth: int | None, stats: DeviceStats):
        from codec.wire.cobs import cobs_frame
        from codec.wire.frame import ErrorReply

        t0 = time.monotonic()
        symbols = self.program.run(image[None])[0]
        spent = time.monotonic() - t0
        if self.compute_delay_s > spent:
            time.sleep(self.compute_delay_s - spent)
        truth = truth if self.send_truth and truth is not None and 0 <= truth < 255 else None
        start = time.monotonic()
        counters: list[int] = []
        for attempt in range(self.retries + 1):
            counter = self._take_counter()
            counters.append(counter)
            frames = self.frames_for(symbols, counter, truth, long_counter=self._long_next or attempt > 0)
            self._long_next = False
            air = 0.0
            for f in frames:
                air += self.uart.write(cobs_frame(f))
            if attempt == 0:
                stats.air_ms.append(air * 1e3)
            reply = self._await_reply(counters, time.monotonic() + self.timeout_s)
            if reply is not None:
                stats.rtt_ms.append((time.monotonic() - start) * 1e3)
                if not isinstance(reply, ErrorReply):
                    self.counters.vouched(reply.counter)   # the edge committed it (docs/PROTOCOL.md §4.3)
                if isinstance(reply, ErrorReply):
                    stats.errors += 1
                    return None, (reply.code, reply.text)
                return reply, None
            if attempt < self.retries:
                stats.retries += 1
        return None, None

    def run(self, images: np.ndarray, labels: np.ndarray | None = None, progress=None) -> DeviceStats:
        stats = DeviceStats()
        for i, img in enumerate(images):
            truth = int(labels[i]) if labels is not None else None
            reply, err = self.infer(np.asarray(img, dtype=np.uint8), truth, stats)
            stats.count += 1
            if reply is not None:
                stats.answered += 1
                stats.labels.append(reply.label)
                if truth is not None and reply.label == truth:
                    stats.correct += 1
            else:
                stats.labels.append(-1)
                if err is not None and progress:
                    progress(f"image {i}: edge error {err}")
            if progress and (i + 1) % 100 == 0:
                progress(f"{i + 1}/{len(images)} sent, {stats.answered} answered")
        stats.bytes_sent = self.uart.bytes_sent
        return stats
