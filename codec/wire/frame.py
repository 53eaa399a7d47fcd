"""Frame format v2: the bytes that cross the link (normative text: docs/PROTOCOL.md).

A frame is `copies` (1, 3 or 5) identical BCH-protected header blocks, then the body::

    DATA   (device -> edge): block (12-15 B) x copies, then this fragment's
           slice of the AES-CTR encrypted payload [+ 3 encrypted truth bytes in test mode, last
           fragment only]
    REPLY  (edge -> device): block (13 B, the 3-byte encrypted answer inside) x copies
    ERROR  (edge -> device): the same, with an error code instead of an answer

Block bits, MSB first (BCH(127, 99) t=4 shortened: `codec.wire.bch`); every field but the last
nibble is byte aligned::

    DATA:        device id 16 | counter low 16 (or all 32: "long") | [fragment 8] | MIC 32 | version 2 |
                 kind 2 | parity 28                       (12 B; 13 fragmented; 14/15 long)
    REPLY/ERROR: counter low 16 | body 24 | MIC 32 | version 2 | kind 2 | parity 28

What never changes for a device (key, codec fingerprint, hence the payload length) is bound
when it is provisioned (`codec.wire.keys`), so it is not sent: the payload length is implicit and
a frame is accepted only at its exact length; the copy count and the block size enter the MIC, so
a truncated or extended frame cannot pass as a smaller valid one. The MIC (`codec.wire.crypto`)
covers the header and the codec fingerprint, not the DATA payload, which carries bit errors by
design. The header's own decoding (bits corrected by the BCH code and by the copy vote) is the
per-frame BER estimate: no pilots.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum
from functools import lru_cache
from typing import Callable, Protocol, Sequence

from codec.wire import bch
from codec.wire.crypto import DOWNLINK, UPLINK, mic, xor_keystream
from snn.errors import FrameError

VERSION = 2
HEADER_COPIES = (1, 3, 5)
MAX_FRAGMENTS = 16
BLOCK_BYTES = 12            # DATA, one fragment: 68 info bits + 28 parity
FRAG_BLOCK_BYTES = 13       # DATA, fragmented: + the fragment byte
LONG_EXTRA = 2              # + the counter's high 16 bits ("long" blocks: 14 and 15 bytes)
REPLY_BLOCK_BYTES = 13      # REPLY/ERROR: counter, 24-bit body, MIC
TRUTH_BYTES = 3             # test mode: the truth label, 3 times (bitwise majority)
NO_TRUTH = 0xFF
_MIC_BITS = 32


class Kind(IntEnum):
    """What a frame carries (2 bits)."""

    DATA = 0        # device -> edge: (a fragment of) one inference
    DATA_TRUTH = 1  # the same, test mode: the last fragment ends with the ground-truth label
    REPLY = 2       # edge -> device: label, confidence, BER estimate
    ERROR = 3       # edge -> device: the request was refused


class ErrorCode(IntEnum):
    """Codes carried by ERROR frames (docs/PROTOCOL.md §5.2)."""

    BAD_FRAME = 1       # authenticated, but the edge cannot use it (e.g. payload length)
    UNKNOWN_CODEC = 2   # this edge does not serve the codec the device is provisioned for
    BUSY = 3            # overload: retry (with a new counter) after `arg` x 10 ms
    UNSUPPORTED = 4     # protocol version: `detail` is the version the edge speaks
    INTERNAL = 5
    RESYNC = 6          # v2.1: the counter is beyond the edge's maximum gap: run the resync exchange


ERROR_TEXT = {
    ErrorCode.BAD_FRAME: "the edge could not use this frame",
    ErrorCode.UNKNOWN_CODEC: "the edge does not serve this device's codec",
    ErrorCode.BUSY: "edge overloaded: retry later",
    ErrorCode.UNSUPPORTED: "unsupported protocol version: upgrade the device to the edge's version",
    ErrorCode.INTERNAL: "internal error on the edge",
    ErrorCode.RESYNC: "the frame counter is beyond the edge's window: resynchronise (docs/PROTOCOL.md §4.7)",
}


class Peer(Protocol):
    """What a receiver knows of a provisioned device: its key, its codec and payload length (and,
    optionally, `integrity`: its MICs also cover the encrypted payload, §4.6)."""

    key: bytes
    fingerprint: bytes
    payload_bytes: int


@dataclass(slots=True)
class DataFrame:
    """One authenticated DATA frame, payload decrypted (bit errors and all)."""

    device_id: int
    counter: int
    copies: int
    frag_index: int
    frag_count: int
    data: bytes                 # this fragment's payload slice, decrypted
    truth: int | None
    header_errors: int          # bits the copy vote and the BCH decoder found wrong
    header_bits: int            # bits of header blocks received (copies x block)
    peer: object                # the Peer whose key and codec authenticated it
    block_bytes: int = BLOCK_BYTES
    long_counter: bool = False

    @property
    def fragmented(self) -> bool:
        return self.frag_count > 1


@dataclass(frozen=True, slots=True)
class Reply:
    counter: int
    label: int
    confidence: float
    ber: float
    header_errors: int
    header_bits: int


@dataclass(frozen=True, slots=True)
class ErrorReply:
    counter: int
    code: ErrorCode | int
    detail: int
    arg: int
    header_errors: int
    header_bits: int

    @property
    def text(self) -> str:
        base = ERROR_TEXT.get(self.code, f"error code {int(self.code)}")
        if self.code == ErrorCode.UNSUPPORTED:
            return f"{base} (the edge speaks v{self.detail})"
        if self.code == ErrorCode.BUSY:
            return f"{base} (in {self.arg * 10} ms)"
        return base


# --- helpers a device and the edge share -------------------------------------------------------

def copies_code(copies: int) -> int:
    if copies not in HEADER_COPIES:
        raise ValueError(f"the header block is sent {', '.join(map(str, HEADER_COPIES))} times, not {copies}")
    return copies


def header_copies_for(ber: float) -> int:
    """The copies a sender should use at this BER: the fewest expected bytes with resends.

    One 12-byte block loses 0.3% of headers at BER 1e-2 and 4% at 2e-2; three copies lose 1e-5
    at 3e-2 and 0.1% at 5e-2; five lose 0.2% at 1e-1 (binomial model with the t=4 BCH code;
    `tests/codec/wire/test_frame.py` measures it on real flips).
    """
    return 1 if ber <= 2e-2 else 3 if ber <= 6e-2 else 5


def fragment_slice(payload_bytes: int, frag_count: int, frag_index: int) -> range:
    """Byte range of the payload carried by one fragment (equal chunks, the last shorter)."""
    chunk = -(-payload_bytes // frag_count)
    return range(min(frag_index * chunk, payload_bytes), min((frag_index + 1) * chunk, payload_bytes))


def block_bytes(fragmented: bool, long_counter: bool = False) -> int:
    """Size of one header block: 12, 13 (fragmented), 14 (long counter), 15 (both)."""
    return (FRAG_BLOCK_BYTES if fragmented else BLOCK_BYTES) + (LONG_EXTRA if long_counter else 0)


def frame_plan(payload_bytes: int, mtu: int, copies: int, truth: bool = False, long_counter: bool = False) -> int:
    """Fragments one inference needs at this MTU and copy count (ValueError when none fits)."""
    extra = TRUTH_BYTES if truth else 0
    if copies * block_bytes(False, long_counter) + payload_bytes + extra <= mtu:
        return 1
    size = block_bytes(True, long_counter)
    room = mtu - copies * size - extra
    if room <= 0:
        raise ValueError(f"an MTU of {mtu} bytes leaves no room after {copies} header block(s) of "
                         f"{size} bytes")
    count = max(2, -(-payload_bytes // room))
    if count > MAX_FRAGMENTS or count > payload_bytes:
        raise ValueError(f"{payload_bytes} payload bytes need {count} fragments at MTU {mtu} with "
                         f"{copies} header copies; at most {MAX_FRAGMENTS} are allowed")
    return count


def fitting_copies(payload_bytes: int, mtu: int, wanted: int, truth: bool = False,
                   long_counter: bool = False) -> tuple[int, int]:
    """(copies, fragments) closest to `wanted` copies that fit the MTU: a device degrades to fewer
    copies (and so more fragments) rather than stop. ValueError only when even 1 copy cannot fit."""
    for copies in sorted((c for c in HEADER_COPIES if c <= wanted), reverse=True):
        try:
            return copies, frame_plan(payload_bytes, mtu, copies, truth, long_counter)
        except ValueError as exc:
            last = exc
    raise last


def data_bytes(payload_bytes: int, mtu: int, copies: int, truth: bool = False, long_counter: bool = False) -> int:
    """Bytes on the air for one inference (every fragment)."""
    count = frame_plan(payload_bytes, mtu, copies, truth, long_counter)
    return count * copies * block_bytes(count > 1, long_counter) + payload_bytes + (TRUTH_BYTES if truth else 0)


def _hdr_byte(kind: int, copies: int, long_counter: bool = False) -> int:
    return (VERSION << 6) | (kind << 4) | (long_counter << 3) | copies


def _mic_message(direction: int, device_id: int, counter: int, kind: int, copies: int, frag: int,
                 fingerprint: bytes, body: bytes = b"", long_counter: bool = False) -> bytes:
    return (bytes([direction]) + device_id.to_bytes(2, "big") + counter.to_bytes(4, "big")
            + bytes([_hdr_byte(kind, copies, long_counter), frag]) + fingerprint + body)


def _frag_byte(index: int, count: int) -> int:
    return 0 if count == 1 else (index << 4) | (count - 1)


def _block(info: int, k: int) -> bytes:
    return bch.encode(info, k).to_bytes((k + bch.PARITY_BITS) // 8, "big")


def _majority(data: bytes, copies: int, size: int) -> tuple[int, list[int]]:
    """Bitwise majority of `copies` blocks of `size` bytes at the start of data, and the copies."""
    words = [int.from_bytes(data[i * size:(i + 1) * size], "big") for i in range(copies)]
    if copies == 1:
        return words[0], words
    need = copies // 2 + 1
    voted = 0
    if copies == 3:
        a, b, c = words
        voted = (a & b) | (a & c) | (b & c)
    else:
        for bit in range(size * 8):
            if sum(w >> bit & 1 for w in words) >= need:
                voted |= 1 << bit
    return voted, words


def _decode_block_py(data: bytes, copies: int, size: int) -> tuple[int, int] | None:
    """(info bits, bits found wrong over all copies) of a repeated block, or None (the reference)."""
    if copies == 1 and not bch.remainder(data[:size]):   # a clean block: the common case, no decoding
        return int.from_bytes(data[:size], "big") >> bch.PARITY_BITS, 0
    voted, words = _majority(data, copies, size)
    got = bch.decode(voted, size * 8)
    if got is None:
        return None
    word = got[0]
    errors = sum((w ^ word).bit_count() for w in words)
    return word >> bch.PARITY_BITS, errors


def _decode_block_native(data: bytes, copies: int, size: int) -> tuple[int, int] | None:
    """`_decode_block_py` in C (codec/wire/_native.c): ~1 us instead of ~50 us for a block the
    BCH code has to decode, which is what every reading of a garbage datagram is."""
    got = _native.decode_block(data, copies, size)
    return None if got is None else (int.from_bytes(got[0], "big") >> bch.PARITY_BITS, got[1])


try:
    from codec.wire import _native
except ImportError:   # the optional C fast path is not built: the Python reference runs
    _native = None

_decode_block = _decode_block_py if _native is None else _decode_block_native


# --- DATA --------------------------------------------------------------------------------------

def encode_inference(payload: bytes, *, key: bytes, device_id: int, fingerprint: bytes, counter: int,
                     mtu: int = 1400, copies: int = 1, truth: int | None = None,
                     long_counter: bool = False, integrity: bool = False) -> list[bytes]:
    """The DATA frames (one per fragment) of one inference under frame counter `counter`.

    The caller never reuses a counter under a key (`codec.wire.keys.CounterStore`).
    `long_counter` sends all 32 counter bits (2 bytes more per block): a device does so on its
    first transmission after it starts and on resends, so an edge that lost track of it (a
    restart) resynchronises (docs/PROTOCOL.md §4.3). `integrity`: the device's payload-integrity
    mode (§4.6): each fragment's MIC also covers its encrypted body, so no payload bit can be
    changed unseen (nor flipped by the channel: such a frame is refused)."""
    payload = bytes(payload)
    copies_code(copies)
    if not 0 <= device_id <= 0xFFFF or not 0 <= counter <= 0xFFFFFFFF:
        raise ValueError("device id is 16 bits and the frame counter 32 bits")
    if len(fingerprint) != 4 or len(key) != 16:
        raise ValueError("the codec fingerprint is 4 bytes and the key 16")
    if truth is not None and not 0 <= truth < NO_TRUTH:
        raise ValueError(f"a ground-truth label must lie in 0..{NO_TRUTH - 1}")
    kind = Kind.DATA if truth is None else Kind.DATA_TRUTH
    count = frame_plan(len(payload), mtu, copies, truth is not None, long_counter)
    frames = []
    cbits = 32 if long_counter else 16
    for index in range(count):
        piece = fragment_slice(len(payload), count, index)
        frag = _frag_byte(index, count)
        body = payload[piece.start:piece.stop]
        if truth is not None and index == count - 1:  # keystream bytes P, P+1, P+2
            body += bytes([truth]) * TRUTH_BYTES
        cipher = xor_keystream(key, UPLINK, device_id, counter, piece.start, body)
        tag = int.from_bytes(mic(key, _mic_message(UPLINK, device_id, counter, kind, copies, frag, fingerprint,
                                                   cipher if integrity else b"", long_counter)), "big")
        info = (device_id << cbits) | (counter & ((1 << cbits) - 1))
        if count > 1:
            info = (info << 8) | frag
        k = 16 + cbits + (8 if count > 1 else 0) + 36
        block = _block((info << 36) | (tag << 4) | (VERSION << 2) | kind, k)
        frames.append(block * copies + cipher)
    return frames


_SIZES = [(False, False), (True, False), (False, True), (True, True)]   # (fragmented, long)


@lru_cache(maxsize=1024)
def _candidates(n: int, sizes: frozenset[int] | None) -> tuple[tuple[int, bool, bool, int], ...]:
    """(copies, fragmented, long counter, block bytes) readings a datagram of n bytes can have,
    likeliest first (a few lengths recur: cached)."""
    top = max(sizes) + TRUTH_BYTES if sizes else 1 << 16
    out = []
    for copies in HEADER_COPIES:
        for fragmented, long_counter in _SIZES:
            size = block_bytes(fragmented, long_counter)
            rest = n - copies * size
            if fragmented:
                if 1 <= rest <= top:
                    out.append((copies, fragmented, long_counter, size))
            elif rest >= 1 and (sizes is None or rest in sizes or rest - TRUTH_BYTES in sizes):
                out.append((copies, fragmented, long_counter, size))
    return tuple(out)


_STAGES = ("length", "damaged", "version", "kind", "fragment", "auth", "bad_length")


def parse_data(data: bytes, peers: Callable[[int], Sequence[Peer]], full_counter: Callable[[int, int], int],
               sizes: frozenset[int] | None = None) -> DataFrame:
    """Check, authenticate and decrypt one DATA frame. Raises only FrameError, whose reason is
    the furthest stage any reading reached: "length" (no reading fits the byte count), "damaged"
    (header beyond repair), "version", "kind", "fragment", "auth" (unknown device or MIC
    mismatch), "bad_length" (authenticated, but not the exact length of its codec).

    `peers(device_id)`: the provisioned keys for a device id (normally one; an insecure edge
    offers one per served codec). `full_counter(device_id, low16)`: the 32-bit counter the
    replay window reconstructs. `sizes`: the payload lengths served, to skip impossible
    readings before any decoding (a garbage datagram usually costs a set look-up).
    """
    if type(data) is not bytes:
        data = bytes(data)
    if sizes is not None and type(sizes) is not frozenset:
        sizes = frozenset(sizes)
    n = len(data)
    tried = None
    worst, detail = 0, f"no v{VERSION} frame is {n} bytes long"
    if sizes is not None and n - BLOCK_BYTES in sizes:   # the common reading first
        worst, detail, frame = _try_data(data, 1, False, False, peers, full_counter)
        if frame is not None:
            return frame
        tried = (1, False, False, BLOCK_BYTES)
    readings = [r for r in _candidates(n, sizes) if r != tried]
    if readings and _decode_block is _decode_block_native:
        # the C fast path decodes every reading's block in one call; only those that decode go on
        # (the same result as the loop below: an undecodable reading stops at stage 1)
        if worst < 1:
            worst, detail = 1, _DAMAGED
        decoded = _native.decode_blocks(data, [(r[0], r[3]) for r in readings])
        for i, block, errors, _clean in sorted(decoded, key=lambda d: not d[3]):   # stable: likeliest first
            copies, fragmented, long_counter, _size = readings[i]
            got = (int.from_bytes(block, "big") >> bch.PARITY_BITS, errors)
            stage, text, frame = _try_data(data, copies, fragmented, long_counter, peers, full_counter, got)
            if frame is not None:
                return frame
            if stage > worst:
                worst, detail = stage, text
        raise FrameError(detail, reason=_STAGES[worst])
    if len(readings) > 1:
        # a reading whose first header block is a codeword is almost surely the right one (a wrong
        # reading's block is one with probability 2^-28): those first, before any BCH decoding
        remainders = bch.prefix_remainders(data, {r[3] for r in readings})
        readings = sorted(readings, key=lambda r: remainders[r[3]] != 0)   # stable: likeliest first
    for copies, fragmented, long_counter, _size in readings:
        stage, text, frame = _try_data(data, copies, fragmented, long_counter, peers, full_counter)
        if frame is not None:
            return frame
        if stage > worst:
            worst, detail = stage, text
    raise FrameError(detail, reason=_STAGES[worst])


_DAMAGED = "header damaged beyond repair on the link (BCH decoding failed)"


def _try_data(data, copies, fragmented, long_counter, peers, full_counter, got=None):
    size = (FRAG_BLOCK_BYTES if fragmented else BLOCK_BYTES) + (LONG_EXTRA if long_counter else 0)
    if got is None:
        got = _decode_block(data, copies, size)
    if got is None:
        return 1, _DAMAGED, None
    info, errors = got
    version, kind, tag = info >> 2 & 3, info & 3, info >> 4 & 0xFFFFFFFF
    info >>= 36
    frag = 0
    if fragmented:
        frag, info = info & 0xFF, info >> 8
    cbits = 32 if long_counter else 16
    device_id, low = info >> cbits & 0xFFFF, info & ((1 << cbits) - 1)
    if version != VERSION:
        return 2, f"protocol version {version} (this peer speaks v{VERSION})", None
    if kind not in (Kind.DATA, Kind.DATA_TRUTH):
        return 3, f"a {Kind(kind).name} frame where DATA was expected", None
    index, count = (frag >> 4, (frag & 0xF) + 1) if fragmented else (0, 1)
    if fragmented and count == 1 or index >= count:
        return 4, f"fragment {index} of {count}", None
    counter = low if long_counter else full_counter(device_id, low)
    found = None
    for peer in peers(device_id):
        covered = data[copies * size:] if getattr(peer, "integrity", False) else b""
        want = mic(peer.key, _mic_message(UPLINK, device_id, counter, kind, copies, frag, peer.fingerprint,
                                          covered, long_counter))
        if int.from_bytes(want, "big") == tag:
            found = peer
            break
    if found is None:
        return 5, f"device {device_id}: authentication failed (unknown device, wrong key or MIC)", None
    if found.payload_bytes == 0:  # authenticated, but the receiver does not serve its codec
        return 6, "", DataFrame(device_id, counter, copies, index, count, b"", None, errors,
                                copies * size * 8, found, size, long_counter)
    piece = fragment_slice(found.payload_bytes, count, index)
    truth_bytes = TRUTH_BYTES if kind == Kind.DATA_TRUTH and index == count - 1 else 0
    body = data[copies * size:]
    if len(body) != len(piece) + truth_bytes or len(piece) == 0:
        return 6, (f"device {device_id}: fragment body of {len(body)} bytes, its codec implies "
                   f"{len(piece) + truth_bytes}"), None
    plain = xor_keystream(found.key, UPLINK, device_id, counter, piece.start, body)
    truth = None
    if truth_bytes:
        a, b, c = plain[-3:]
        truth = (a & b) | (a & c) | (b & c)
        plain = plain[:-3]
    return 6, "", DataFrame(device_id, counter, copies, index, count, plain, truth, errors,
                            copies * size * 8, found, size, long_counter)


# --- REPLY and ERROR ---------------------------------------------------------------------------

def ber_code(ber: float) -> int:
    """8-bit log-scale BER: 0 means < 1e-6, else BER = 1e-6 * 10^((code - 1) / 32)."""
    if not ber > 1e-6:
        return 0
    return max(1, min(255, 1 + round(32 * math.log10(ber / 1e-6))))


def ber_from_code(code: int) -> float:
    return 0.0 if code == 0 else 1e-6 * 10 ** ((code - 1) / 32)


def _encode_down(kind: Kind, body: bytes, key: bytes, device_id: int, fingerprint: bytes, counter: int,
                 copies: int) -> bytes:
    copies_code(copies)
    cipher = xor_keystream(key, DOWNLINK, device_id, counter, 0, body)
    tag = int.from_bytes(mic(key, _mic_message(DOWNLINK, device_id, counter, kind, copies, 0, fingerprint, cipher)),
                         "big")
    info = ((counter & 0xFFFF) << 60) | (int.from_bytes(cipher, "big") << 36) | (tag << 4) | (VERSION << 2) | kind
    return _block(info, 76) * copies


def encode_reply(*, key: bytes, device_id: int, fingerprint: bytes, counter: int, label: int,
                 confidence: float, ber: float, copies: int = 1) -> bytes:
    """A REPLY to the DATA frame(s) of `counter`, as many copies as the request carried."""
    conf = max(0, min(255, int(round(confidence * 255))))
    return _encode_down(Kind.REPLY, bytes([label & 0xFF, conf, ber_code(ber)]), key, device_id, fingerprint,
                        counter, copies)


def encode_error(*, key: bytes, device_id: int, fingerprint: bytes, counter: int, code: ErrorCode,
                 detail: int = 0, arg: int = 0, copies: int = 1) -> bytes:
    """An ERROR about the request `counter`: code, a detail byte and an argument byte."""
    return _encode_down(Kind.ERROR, bytes([int(code), detail & 0xFF, max(0, min(255, arg))]), key, device_id,
                        fingerprint, counter, copies)


def parse_reply(data: bytes, *, key: bytes, device_id: int, fingerprint: bytes,
                full_counter: Callable[[int], int | None]) -> Reply | ErrorReply:
    """Check, authenticate and decrypt a REPLY or ERROR for this device. `full_counter(low16)` is
    the 32-bit counter of the pending request with those low bits, or None. Raises FrameError
    ("length", "damaged", "version", "kind", "unmatched": no pending request, "auth")."""
    data = bytes(data)
    copies, rem = divmod(len(data), REPLY_BLOCK_BYTES)
    if rem or copies not in HEADER_COPIES:
        raise FrameError(f"a reply of {len(data)} bytes (13, 39 or 65 expected)", reason="length")
    got = _decode_block(data, copies, REPLY_BLOCK_BYTES)
    if got is None:
        raise FrameError("reply damaged beyond repair on the link", reason="damaged")
    info, errors = got
    version, kind, low = info >> 2 & 3, info & 3, info >> 60 & 0xFFFF
    cipher, tag = (info >> 36 & 0xFFFFFF).to_bytes(3, "big"), info >> 4 & 0xFFFFFFFF
    if version != VERSION:
        raise FrameError(f"protocol version {version}", reason="version")
    if kind not in (Kind.REPLY, Kind.ERROR):
        raise FrameError(f"a {Kind(kind).name} frame where a reply was expected", reason="kind")
    counter = full_counter(low)
    if counter is None:
        raise FrameError(f"no request pending with counter low bits {low}", reason="unmatched")
    want = mic(key, _mic_message(DOWNLINK, device_id, counter, kind, copies, 0, fingerprint, cipher))
    if int.from_bytes(want, "big") != tag:
        raise FrameError("reply authentication failed (not for this device, or forged)", reason="auth")
    a, b, c = xor_keystream(key, DOWNLINK, device_id, counter, 0, cipher)
    bits = copies * REPLY_BLOCK_BYTES * 8
    if kind == Kind.REPLY:
        return Reply(counter, a, b / 255.0, ber_from_code(c), errors, bits)
    code = ErrorCode(a) if a in ErrorCode._value2member_map_ else a
    return ErrorReply(counter, code, b, c, errors, bits)
