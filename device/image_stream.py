"""Framing of images piped into the device (`snn device run --data -` and `--data raw:-`).

Two stream formats, both with no framing of their own beyond what the images already carry:

- ``-``: PNG and JPEG files, concatenated in any mix (`cat *.png`, `ffmpeg -f image2pipe -c:v png
  -`, a camera tool writing JPEGs one after another). Each image is delimited by its own
  structure: a PNG is its 8-byte signature and chunks (4-byte big-endian length, type, data,
  CRC) up to and including ``IEND``; a JPEG is ``FF D8`` and its marker segments (each with a
  2-byte length), the entropy-coded data after each ``SOS`` (where a ``FF`` byte is always
  followed by ``00`` or a restart marker ``D0``-``D7``), up to and including ``EOI`` (``FF D9``).
  An embedded thumbnail (APP1/EXIF) lies inside a segment's length, so it never ends the image.
  Bytes that begin neither signature end the stream with an error naming their offset.
- ``raw:-``: fixed-size frames of exactly H x W x C bytes (the encoder's input shape, uint8,
  row-major H, W, C: `ffmpeg -f rawvideo -pix_fmt gray -s 28x28 -`), no header; a stream that
  ends inside a frame is an error.

Every image is bounded: its bytes by `max_bytes` before they are all read, then its pixels by the
decoder's header check (`codec.image_folder.decode_image`). Reads use `read1` where the stream
has it, so an image is handed on as soon as its last byte arrives, never after a full buffer.
"""
from __future__ import annotations

import struct

from snn.errors import DataError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SOI = b"\xff\xd8"
_CHUNK = 1 << 16
_STANDALONE = set(range(0xD0, 0xD8)) | {0x01}   # JPEG markers without a length: RSTn, TEM


class _Reader:
    """A growable window over a binary stream: `have(n)` makes n bytes available from the start of
    the current image (False at end of stream)."""

    def __init__(self, fh):
        self.fh = fh
        self.buf = bytearray()
        self.eof = False
        self._read = getattr(fh, "read1", None) or fh.read
        self.offset = 0          # stream offset of buf[0]

    def have(self, n: int) -> bool:
        while len(self.buf) < n and not self.eof:
            chunk = self._read(max(_CHUNK, n - len(self.buf)))
            if not chunk:
                self.eof = True
            else:
                self.buf += chunk
        return len(self.buf) >= n

    def more(self) -> bool:
        """Read one more chunk; False at end of stream."""
        before = len(self.buf)
        return self.have(before + 1)

    def take(self, n: int) -> bytes:
        out = bytes(self.buf[:n])
        del self.buf[:n]
        self.offset += n
        return out


class ImageStream:
    """Concatenated PNG/JPEG files on a binary stream, one image's bytes at a time."""

    def __init__(self, fh, max_bytes: int):
        self.reader = _Reader(fh)
        self.max_bytes = int(max_bytes)

    def next_image(self) -> bytes | None:
        """The next image's bytes; None at a clean end of stream; DataError otherwise."""
        r = self.reader
        if not r.have(1):
            return None
        r.have(len(PNG_SIGNATURE))
        head = bytes(r.buf[:len(PNG_SIGNATURE)])
        if head.startswith(PNG_SIGNATURE):
            end = self._png_end()
        elif head.startswith(JPEG_SOI):
            end = self._jpeg_end()
        elif PNG_SIGNATURE.startswith(head):
            raise DataError(f"stdin ended inside a PNG signature at byte {r.offset + len(head)}")
        else:
            raise DataError(f"stdin byte {r.offset} is not the start of a PNG (89 50 4E 47 ...) or JPEG "
                            f"(FF D8 ...) image but {head[:4].hex(' ').upper()}: pipe whole PNG/JPEG files, or "
                            f"raw frames with --data raw:-")
        return r.take(end)

    def _need(self, n: int, what: str) -> None:
        if n > self.max_bytes:
            raise DataError(f"stdin image at byte {self.reader.offset} is over the {self.max_bytes}-byte limit "
                            f"(--max-image-bytes)")
        if not self.reader.have(n):
            raise DataError(f"stdin ended inside a {what} image that began at byte {self.reader.offset} "
                            f"({len(self.reader.buf)} bytes read)")

    def _png_end(self) -> int:
        pos = len(PNG_SIGNATURE)
        while True:
            self._need(pos + 8, "PNG")
            length, kind = struct.unpack(">I4s", self.reader.buf[pos:pos + 8])
            if length > 0x7FFFFFFF:
                raise DataError(f"stdin PNG at byte {self.reader.offset}: chunk length {length} is over 2^31-1")
            pos += 12 + length
            self._need(pos, "PNG")
            if kind == b"IEND":
                return pos

    def _jpeg_end(self) -> int:
        buf = self.reader.buf
        pos = 2
        while True:
            self._need(pos + 2, "JPEG")
            if buf[pos] != 0xFF:
                raise DataError(f"stdin JPEG at byte {self.reader.offset}: no marker at offset {pos} "
                                f"(a damaged file)")
            marker = buf[pos + 1]
            if marker == 0xFF:              # fill byte before a marker
                pos += 1
                continue
            pos += 2
            if marker == 0xD9:              # EOI
                return pos
            if marker in _STANDALONE:
                continue
            if marker == 0xD8:
                raise DataError(f"stdin JPEG at byte {self.reader.offset}: a second start-of-image marker "
                                f"before its end")
            self._need(pos + 2, "JPEG")
            length = (buf[pos] << 8) | buf[pos + 1]
            if length < 2:
                raise DataError(f"stdin JPEG at byte {self.reader.offset}: segment length {length} < 2")
            pos += length
            self._need(pos, "JPEG")
            if marker == 0xDA:              # SOS: entropy-coded data up to the next real marker
                pos = self._scan_end(pos)

    def _scan_end(self, pos: int) -> int:
        """Offset of the first marker after entropy-coded data starting at `pos`."""
        buf = self.reader.buf       # grows in place as more is read
        while True:
            i = buf.find(b"\xff", pos)
            if 0 <= i < len(buf) - 1:
                nxt = buf[i + 1]
                if nxt == 0x00 or 0xD0 <= nxt <= 0xD7:   # a stuffed FF or a restart marker: still data
                    pos = i + 2
                    continue
                return i
            pos = i if i >= 0 else len(buf)              # resume at the unresolved FF, or the end
            self._need(len(buf) + 1, "JPEG")            # bounded by max_bytes; raises at end of stream


class RawStream:
    """Fixed-size raw frames of `frame_bytes` bytes on a binary stream."""

    def __init__(self, fh, frame_bytes: int):
        self.reader = _Reader(fh)
        self.frame_bytes = int(frame_bytes)

    def next_frame(self) -> bytes | None:
        """The next frame; None at a clean end of stream; DataError when it ends inside one."""
        r = self.reader
        if not r.have(1):
            return None
        if not r.have(self.frame_bytes):
            raise DataError(f"stdin ended inside a raw frame at byte {r.offset}: {len(r.buf)} of "
                            f"{self.frame_bytes} bytes (H x W x C of the encoder's input)")
        return r.take(self.frame_bytes)
