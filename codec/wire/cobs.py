"""COBS byte framing for stream links (UART): a 0x00 delimiter ends every frame.

Consistent Overhead Byte Stuffing (Cheshire & Baker, 1999) removes every zero byte from a frame
at a cost of at most one byte per 254, so the delimiter 0x00 can only mean "end of frame". A
receiver that lands mid-frame, or sees a corrupted length byte, discards up to the next 0x00 and
is back in step: one damaged frame never takes the following ones with it.
"""
from __future__ import annotations

from snn.errors import FrameError

DELIMITER = b"\x00"


def cobs_encode(data: bytes) -> bytes:
    """Encode `data` so it contains no zero byte (the delimiter is not appended)."""
    out = bytearray()
    for block in bytes(data).split(b"\x00"):
        # each zero-free run is sent in pieces of at most 254 bytes, each led by its length + 1
        while len(block) >= 254:
            out.append(0xFF)
            out += block[:254]
            block = block[254:]
        out.append(len(block) + 1)
        out += block
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    """Decode one COBS frame (without its delimiter); raise FrameError when it is malformed."""
    out = bytearray()
    i, n = 0, len(data)
    if n == 0:
        raise FrameError("empty COBS frame", reason="cobs")
    while i < n:
        code = data[i]
        if code == 0:
            raise FrameError("zero byte inside a COBS frame", reason="cobs")
        end = i + code
        if end > n:
            raise FrameError("COBS code points past the end of the frame", reason="cobs")
        block = data[i + 1:end]
        if 0 in block:
            raise FrameError("zero byte inside a COBS frame", reason="cobs")
        out += block
        i = end
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)


def cobs_frame(data: bytes) -> bytes:
    """The bytes to write on a stream: COBS(data) followed by the delimiter."""
    return cobs_encode(data) + DELIMITER


class CobsStreamDecoder:
    """Split a byte stream into frames at delimiters; corrupt frames are counted and skipped."""

    def __init__(self, max_frame: int = 4096) -> None:
        self.max_frame = max_frame
        self._buffer = bytearray()
        self._overflow = False
        self.frames = 0
        self.dropped = 0

    def feed(self, chunk: bytes) -> list[bytes]:
        """Add received bytes; return the frames they complete, in order."""
        frames: list[bytes] = []
        for piece, is_end in _split_keep(chunk):
            if not self._overflow:
                self._buffer += piece
                if len(self._buffer) > self.max_frame + self.max_frame // 254 + 2:
                    self._overflow = True
                    self._buffer.clear()
            if not is_end:
                continue
            if self._overflow:
                self.dropped += 1
            elif self._buffer:
                try:
                    frames.append(cobs_decode(bytes(self._buffer)))
                    self.frames += 1
                except FrameError:
                    self.dropped += 1
            self._buffer.clear()
            self._overflow = False
        return frames


def _split_keep(chunk: bytes):
    """Yield (piece, ends_with_delimiter) for each delimiter-separated piece of chunk."""
    parts = bytes(chunk).split(DELIMITER)
    for index, part in enumerate(parts):
        yield part, index < len(parts) - 1
