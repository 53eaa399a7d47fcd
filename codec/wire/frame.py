"""Frame format v2: the bytes that cross the link (normative text: docs/PROTOCOL.md).

A frame is a *header block* — sent 1, 3 or 5 times — followed, for DATA, by this fragment's slice
of the AES-CTR-encrypted payload. A block is a bit string, MSB first: the information bits, then
the 28 parity bits of the BCH(127, 99) t=4 code (`codec.wire.bch`), a whole number of bytes::

    DATA   b0 (8) | device id (16) | counter low (12) | [fragment (8)] | [truth (8)] | MIC (32) | parity (28)
    REPLY  b0 | device id | counter low | label, confidence, BER code (24, encrypted) | MIC | parity
    ERROR  b0 | device id | counter low | code, detail (16, encrypted)                | MIC | parity

    b0 = version (2 bits, = 2) | kind (2) | copies code (2: 1, 3, 5 copies) | F fragmented | T truth

A single-fragment DATA block is 12 bytes: with a 37-byte payload, 49 bytes on air. What never
changes for a device (its key, its codec, hence the payload length) is bound at provisioning
(`codec.wire.keys`), so there is no fingerprint and no length field; the exact length of the
datagram (copies × block + the slice) is checked instead, which also makes a truncated 3- or
5-copy frame fail. The MIC (AES-CMAC, `codec.wire.crypto`) covers the 32-bit counter and every
header field, not the payload: the payload carries bit errors by design.

Cheap rejection: a receiver knows which body lengths its devices can send, so most garbage is
refused by its length before any BCH or AES work; the BCH check of a clean block is one CRC.
The bits the BCH decoder corrects (and the copies' disagreement with the corrected block) give
the frame's bit error rate at no byte cost: v2 has no pilots.
"""
from __future__ import annotations

import math
from enum import IntEnum
from typing import NamedTuple

from codec.wire import bch
from codec.wire.crypto import DOWNLINK, MIC_BYTES, UPLINK, DeviceKeys
from snn.errors import FrameError

VERSION = 2
COPIES = (1, 3, 5)                  # header block copies; code 0, 1, 2 in b0 (3 is reserved)
MAX_FRAGMENTS = 16
COUNTER_BITS = 12                   # low bits of the 32-bit frame counter on air
_LOW = (1 << COUNTER_BITS) - 1
_HEAD_BITS = 8 + 16 + COUNTER_BITS  # b0, device id, counter low
_MIC_BITS = 8 * MIC_BYTES
BLOCK_BYTES = (_HEAD_BITS + _MIC_BITS + bch.PARITY_BITS) // 8     # 12: DATA, one fragment, no truth
REPLY_BODY = 3                      # label, confidence, BER code
ERROR_BODY = 2                      # code, detail
REPLY_BLOCK = BLOCK_BYTES + REPLY_BODY                            # 15
ERROR_BLOCK = BLOCK_BYTES + ERROR_BODY                            # 14
V1_MAGIC = 0xA7
COUNTER_WINDOW = 1 << (COUNTER_BITS - 1)   # counters are reconstructed within ±2^11 of the highest


class Kind(IntEnum):
    """What a frame carries."""

    DATA = 0    # device -> edge: (a fragment of) one inference's encrypted symbols
    REPLY = 1   # edge -> device: label, confidence, estimated BER
    ERROR = 2   # edge -> device: the request was refused, with a code and a detail byte


class ErrorCode(IntEnum):
    """Codes carried by ERROR frames (the detail byte is defined per code, docs/PROTOCOL.md §5)."""

    BAD_FRAME = 1       # detail: BadDetail
    UNKNOWN_CODEC = 2   # detail: 0 — the codec bound to this device is not served here
    BUSY = 3            # detail: suggested retry delay in 10-ms units (0 = unknown)
    UNSUPPORTED = 4     # detail: the protocol version this edge speaks
    INTERNAL = 5        # detail: 0


class BadDetail(IntEnum):
    """Detail byte of a BAD_FRAME error."""

    LENGTH = 1          # the datagram's length does not fit the device's codec
    FRAGMENT = 2        # fragment index/count inconsistent with the inference's other fragments
    TRUTH = 3           # the truth label is not a class of the device's codec


class DataHeader(NamedTuple):
    """A DATA frame's checked header block (BCH-corrected; the MIC not yet verified)."""

    device_id: int
    counter_low: int
    copies: int
    frag_index: int
    frag_count: int
    truth: int | None
    fields: bytes        # the information bytes before the MIC, as the MIC covers them
    mic: bytes
    body: bytes          # the ciphertext slice after the header blocks
    bit_errors: int      # bits the link flipped in the header copies (after correction)
    bits: int            # header bits received (copies × block × 8)


class Answer(NamedTuple):
    """A verified REPLY or ERROR as a device reads it."""

    kind: Kind
    counter: int
    copies: int
    label: int = -1
    confidence: float = 0.0
    ber: float = 0.0
    code: int = 0
    detail: int = 0


def ber_code(ber: float) -> int:
    """The REPLY's BER byte: q = round(-40 log10 BER), 0..255 (BER 1 .. 4e-7, steps of 6 %)."""
    return 255 if ber <= 0 else max(0, min(255, int(round(-40 * math.log10(ber)))))


def ber_from_code(q: int) -> float:
    return 10 ** (-q / 40)


def _b0(kind: Kind, copies: int, fragmented: bool = False, truth: bool = False) -> int:
    if copies not in COPIES:
        raise ValueError(f"the header block is sent {', '.join(map(str, COPIES))} times, not {copies}")
    return (VERSION << 6) | (int(kind) << 4) | (COPIES.index(copies) << 2) | (fragmented << 1) | truth


def block_bytes(fragmented: bool = False, truth: bool = False) -> int:
    """Bytes of one DATA header block: 12, plus 1 when fragmented, plus 1 with a truth label."""
    return BLOCK_BYTES + int(fragmented) + int(truth)


def overhead_bytes(copies: int = 1, frag_count: int = 1, truth: bool = False) -> int:
    """Everything but the payload that one inference puts on air (all its fragments)."""
    return frag_count * copies * block_bytes(frag_count > 1, truth)


def header_copies_for(ber: float) -> int:
    """The copies a sender should use at this BER: the fewest expected uplink bytes per answered
    inference, resends and the reply (which mirrors the copies) included.

    One 12-byte block loses 0.29 % at 1e-2 and 9 % at 2.5e-2 (binomial tail of 96 bits, t = 4),
    where three copies (majority, then BCH) start to cost fewer bytes with resends; three lose
    3 % of requests and 7 % of replies at 8e-2, beyond which five (0.15 % and 0.4 % at 1e-1) are
    cheaper. `tests/codec/wire/test_frame.py` measures the header losses on real flips.
    """
    return 1 if ber <= 2.5e-2 else 3 if ber <= 8e-2 else 5


# --- fragmentation ---------------------------------------------------------------------------

def fragment_slice(payload_len: int, frag_count: int, frag_index: int) -> range:
    """Byte range of the payload carried by one fragment (equal chunks, last shorter)."""
    chunk = -(-payload_len // frag_count)
    return range(min(frag_index * chunk, payload_len), min((frag_index + 1) * chunk, payload_len))


def fragment_count(payload_len: int, mtu: int, copies: int = 1, truth: bool = False) -> int:
    """Fragments needed so that every frame fits in `mtu` bytes (ValueError when impossible)."""
    if copies * block_bytes(False, truth) + payload_len <= mtu:
        return 1
    room = mtu - copies * block_bytes(True, truth)
    count = -(-payload_len // room) if room > 0 else MAX_FRAGMENTS + 1
    if count > MAX_FRAGMENTS:
        raise ValueError(f"{payload_len} payload bytes with {copies} header copies need more than "
                         f"{MAX_FRAGMENTS} fragments at MTU {mtu}")
    return count


def plan_frames(payload_len: int, mtu: int, copies: int, truth: bool = False) -> tuple[int, int]:
    """(copies, fragments) for an MTU: the wanted copies when they fit, else fewer (degrade, never
    stop). ValueError only when even one copy cannot fit: an MTU below the 14..15-byte block + 1."""
    for c in [c for c in COPIES if c <= copies][::-1]:
        try:
            return c, fragment_count(payload_len, mtu, c, truth)
        except ValueError:
            continue
    raise ValueError(f"an MTU of {mtu} bytes cannot carry {payload_len} payload bytes in "
                     f"{MAX_FRAGMENTS} fragments behind a {block_bytes(True, truth)}-byte header block")


class BodyLengths(NamedTuple):
    """The bodies a receiver's devices can send: whole payloads (F = 0) and fragment slices
    (F = 1). A reading whose block size implies F = 0 must carry a whole payload."""

    whole: frozenset
    pieces: frozenset

    def __or__(self, other: "BodyLengths") -> "BodyLengths":
        return BodyLengths(self.whole | other.whole, self.pieces | other.pieces)


def body_lengths(payload_len: int) -> BodyLengths:
    """Every body length a DATA frame of this payload can carry (for the cheap length check)."""
    pieces = {len(fragment_slice(payload_len, count, index))
              for count in range(2, MAX_FRAGMENTS + 1) for index in range(count)} - {0}
    return BodyLengths(frozenset({payload_len}), frozenset(pieces))


def frame_lengths(payload_len: int) -> set[int]:
    """Every datagram length a device with this payload may send: a receiver drops any other
    length before it decodes anything."""
    out = set()
    for count in range(1, MAX_FRAGMENTS + 1):
        slices = {len(fragment_slice(payload_len, count, i)) for i in range(count)} - {0}
        for copies in COPIES:
            for truth in (False, True):
                out.update(copies * block_bytes(count > 1, truth) + n for n in slices)
    return out


# --- building --------------------------------------------------------------------------------

def _block(keys: DeviceKeys, direction: int, counter: int, b0: int, ext: bytes) -> bytes:
    """b0 ‖ device id ‖ counter low 12 ‖ ext ‖ MIC, then the BCH parity: one header block.
    The MIC covers dir ‖ counter (32) ‖ b0 ‖ device id ‖ ext (whole bytes)."""
    mic = keys.mic(direction, counter, bytes([b0]) + keys.device_id.to_bytes(2, "big") + ext)
    info = (((b0 << 16) | keys.device_id) << COUNTER_BITS) | (counter & _LOW)
    for byte in ext:
        info = (info << 8) | byte
    info = (info << _MIC_BITS) | int.from_bytes(mic, "big")
    return bch.encode(info, _HEAD_BITS + 8 * len(ext) + _MIC_BITS)


def _fields(block: bytes, ext_len: int) -> tuple[int, int, int, bytes, bytes]:
    """(b0, device id, counter low, ext bytes, MIC) of a corrected block."""
    v = int.from_bytes(block, "big") >> bch.PARITY_BITS
    mic = (v & 0xFFFFFFFF).to_bytes(MIC_BYTES, "big")
    v >>= _MIC_BITS
    ext = (v & ((1 << (8 * ext_len)) - 1)).to_bytes(ext_len, "big")
    v >>= 8 * ext_len
    return block[0], (v >> COUNTER_BITS) & 0xFFFF, v & _LOW, ext, mic


def encode_inference(keys: DeviceKeys, counter: int, payload: bytes, mtu: int = 1400,
                     copies: int = 1, truth: int | None = None) -> list[bytes]:
    """The DATA frames (one per fragment) of one inference, under the device's keys.

    `counter` is the device's 32-bit frame counter, never reused (`keys.CounterStore`); every
    fragment carries it. The copies are the caller's wish: use `plan_frames` first when the MTU
    may not hold them (this raises ValueError then)."""
    payload = bytes(payload)
    if not payload:
        raise ValueError("an inference has at least one payload byte")
    if truth is not None and not 0 <= truth <= 0xFF:
        raise ValueError("a truth label lies in 0..255")
    count = fragment_count(len(payload), mtu, copies, truth is not None)
    cipher = keys.crypt(UPLINK, counter, payload)
    tail = b"" if truth is None else bytes([truth])
    b0 = _b0(Kind.DATA, copies, count > 1, truth is not None)
    frames = []
    for index in range(count):
        ext = (bytes([(index << 4) | (count - 1)]) if count > 1 else b"") + tail
        piece = fragment_slice(len(payload), count, index)
        frames.append(_block(keys, UPLINK, counter, b0, ext) * copies + cipher[piece.start:piece.stop])
    return frames


def encode_reply(keys: DeviceKeys, counter: int, label: int, confidence: float, ber: float,
                 copies: int = 1) -> bytes:
    """A REPLY to the request with this (full) counter: label, confidence (1/255 steps), the
    edge's BER estimate for the device (`ber_code`), encrypted and authenticated downlink."""
    conf = max(0, min(255, int(round(confidence * 255))))
    return _answer(keys, counter, Kind.REPLY, bytes([label & 0xFF, conf, ber_code(ber)]), copies)


def encode_error(keys: DeviceKeys, counter: int, code: ErrorCode, detail: int = 0,
                 copies: int = 1) -> bytes:
    """An authenticated ERROR about the request with this (full) counter."""
    return _answer(keys, counter, Kind.ERROR, bytes([int(code), detail & 0xFF]), copies)


def _answer(keys: DeviceKeys, counter: int, kind: Kind, body: bytes, copies: int) -> bytes:
    return _block(keys, DOWNLINK, counter, _b0(kind, copies), keys.crypt(DOWNLINK, counter, body)) * copies


# --- reading ---------------------------------------------------------------------------------

def _majority(data: bytes, size: int, copies: int) -> int:
    """Bitwise majority of `copies` consecutive blocks of `size` bytes, as an int."""
    v = [int.from_bytes(data[i * size:(i + 1) * size], "big") for i in range(copies)]
    if copies == 1:
        return v[0]
    if copies == 3:
        a, b, c = v
        return (a & b) | (a & c) | (b & c)
    a, b, c, d, e = v  # two full adders: count = s2 + 2 (c1 + c2); at least 3 of 5
    s1, c1 = a ^ b ^ c, (a & b) | (a & c) | (b & c)
    s2, c2 = s1 ^ d ^ e, (s1 & d) | (s1 & e) | (d & e)
    return (c1 & c2) | ((c1 | c2) & s2)


def _decode_block(data: bytes, size: int, copies: int, repair: bool = True) -> tuple[bytes, int] | None:
    """(corrected block, bits flipped over all copies), or None when beyond repair (or, without
    `repair`, when the voted block is not a codeword as it stands: one CRC, no decoding)."""
    voted = data[:size] if copies == 1 else _majority(data, size, copies).to_bytes(size, "big")
    value = int.from_bytes(voted, "big")
    if bch.parity(value >> bch.PARITY_BITS, 8 * size - bch.PARITY_BITS) == value & ((1 << bch.PARITY_BITS) - 1):
        out = (voted, 0)                       # a codeword as it stands: one CRC, no decoding
    elif not repair:
        out = None
    else:
        out = bch.decode(voted)
    if out is None:
        return None
    block = out[0]
    if copies == 1:
        return out
    ref = int.from_bytes(block, "big")
    errors = sum((int.from_bytes(data[i * size:(i + 1) * size], "big") ^ ref).bit_count()
                 for i in range(copies))
    return block, errors


def is_v1(data: bytes) -> bool:
    """Whether this is a v1 frame (magic, version nibble 1, valid CRC-16 of its 17-byte header)."""
    import binascii
    return (len(data) >= 31 and data[0] == V1_MAGIC and data[1] >> 4 == 1
            and binascii.crc_hqx(bytes(data[:17]), 0xFFFF) == int.from_bytes(data[17:19], "big"))


def read_header(data: bytes, lengths: BodyLengths | None = None, repair: bool = True) -> DataHeader:
    """Check a DATA frame's header block (BCH, majority over copies, structure). Raises only
    FrameError. `lengths`: the body lengths a receiver's devices can send (`body_lengths`);
    readings whose body length is not among them are not even decoded. `repair=False` accepts
    only blocks that arrive clean (the cheap path for a source that keeps failing).

    Readings are tried by copies (1, 3, 5) and block size (12, 13, 14); a reading counts only
    when the decoded b0 confirms both (its copies code and its F and T flags)."""
    if type(data) is not bytes:
        data = bytes(data)
    if len(data) <= BLOCK_BYTES:
        raise FrameError(f"frame of {len(data)} bytes is not longer than a {BLOCK_BYTES}-byte header block",
                         reason="short")
    error: FrameError | None = None
    tried = False
    for copies in COPIES:
        for size in (BLOCK_BYTES, BLOCK_BYTES + 1, BLOCK_BYTES + 2):
            rest = len(data) - copies * size
            if rest <= 0 or (lengths is not None and not (
                    (size < BLOCK_BYTES + 2 and rest in lengths.whole)             # F = 0 (T = 0 or 1)
                    or (size > BLOCK_BYTES and rest in lengths.pieces))):          # F = 1 (T = 0 or 1)
                continue
            tried = True
            decoded = _decode_block(data, size, copies, repair)
            if decoded is None:
                error = error or FrameError("header block damaged beyond repair (BCH)", reason="damaged")
                continue
            block, errors = decoded
            b0 = block[0]
            if b0 >> 6 != VERSION:
                error = FrameError(f"protocol version {b0 >> 6} (this peer speaks v{VERSION})", reason="version")
                continue
            if (b0 >> 4) & 3 != Kind.DATA:
                error = FrameError(f"kind {(b0 >> 4) & 3} where DATA was expected", reason="kind")
                continue
            fragmented, has_truth = bool(b0 & 2), bool(b0 & 1)
            if (b0 >> 2) & 3 != COPIES.index(copies) or size != block_bytes(fragmented, has_truth):
                error = error or FrameError("header block disagrees with the frame's length", reason="length")
                continue
            _, device, low, ext, mic = _fields(block, size - BLOCK_BYTES)
            index, count = 0, 1
            if fragmented:
                index, count = ext[0] >> 4, (ext[0] & 0x0F) + 1
                if count < 2 or index >= count:
                    error = FrameError(f"fragment {index} of {count}", reason="fragment")
                    continue
            truth = ext[-1] if has_truth else None
            return DataHeader(device, low, copies, index, count, truth,
                              bytes([b0]) + device.to_bytes(2, "big") + ext, mic,
                              data[copies * size:], errors, copies * size * 8)
    if not tried:
        raise FrameError(f"no device sends a {len(data)}-byte frame", reason="length")
    raise error


def verify(header: DataHeader, keys: DeviceKeys, counter: int) -> bool:
    """Whether the header's MIC is right for this device key and reconstructed 32-bit counter."""
    return keys.mic(UPLINK, counter, header.fields) == header.mic


def check_length(header: DataHeader, payload_len: int) -> range:
    """The payload bytes this fragment carries; FrameError("length") unless its body is exact."""
    piece = fragment_slice(payload_len, header.frag_count, header.frag_index)
    if len(header.body) != len(piece) or not piece:
        raise FrameError(f"fragment body of {len(header.body)} bytes where the device's codec "
                         f"implies {len(piece)}", reason="length")
    return piece


def read_answer(data: bytes, keys: DeviceKeys, counters: dict[int, int]) -> Answer:
    """Check a REPLY/ERROR addressed to this device: BCH, length, device id, one of the counters
    it awaits (`counters`: low 12 bits -> full counter), MIC. Raises only FrameError; a device
    ignores every frame this refuses."""
    data = bytes(data)
    for kind, size, body_len in ((Kind.REPLY, REPLY_BLOCK, REPLY_BODY), (Kind.ERROR, ERROR_BLOCK, ERROR_BODY)):
        for copies in COPIES:
            if len(data) != copies * size:
                continue
            decoded = _decode_block(data, size, copies)
            if decoded is None:
                raise FrameError("answer damaged beyond repair (BCH)", reason="damaged")
            b0, device, low, body, mic = _fields(decoded[0], body_len)
            if b0 != _b0(kind, copies):
                raise FrameError(f"answer header byte 0x{b0:02x} is not a v{VERSION} "
                                 f"{kind.name} with {copies} copies", reason="kind")
            if device != keys.device_id:
                raise FrameError("answer for another device", reason="device")
            counter = counters.get(low)
            if counter is None:
                raise FrameError("answer to no request in flight", reason="counter")
            if keys.mic(DOWNLINK, counter, bytes([b0]) + device.to_bytes(2, "big") + body) != mic:
                raise FrameError("answer fails authentication (MIC)", reason="auth")
            plain = keys.crypt(DOWNLINK, counter, body)
            if kind == Kind.REPLY:
                return Answer(kind, counter, copies, label=plain[0], confidence=plain[1] / 255.0,
                              ber=ber_from_code(plain[2]))
            return Answer(kind, counter, copies, code=plain[0], detail=plain[1])
    raise FrameError(f"no answer is {len(data)} bytes long", reason="length")


# --- counters and replay ---------------------------------------------------------------------

def reconstruct_counter(highest: int, low: int) -> int:
    """The 32-bit counter nearest `highest` (the largest accepted so far) with these low 12 bits:
    within -2^11 .. +2^11 of it (a restart skips at most one block of 256)."""
    candidate = (highest & ~_LOW) | low
    if candidate <= highest - COUNTER_WINDOW:
        candidate += 1 << COUNTER_BITS
    elif candidate > highest + COUNTER_WINDOW:
        candidate -= 1 << COUNTER_BITS
    return candidate


class ReplayWindow:
    """The counters of one key already used: the highest, and a 64-bit bitmap below it
    (RFC 4303's sliding window). Kept per provisioned key for the edge's whole life, so no
    eviction ever reopens a replay."""

    SIZE = 64
    __slots__ = ("highest", "bitmap")

    def __init__(self) -> None:
        self.highest = -1
        self.bitmap = 0      # bit i: counter highest - i was accepted

    def reconstruct(self, low: int) -> int:
        return low if self.highest < 0 else reconstruct_counter(self.highest, low)

    def seen(self, counter: int) -> bool:
        """True for a counter used before or too old to tell (replays and stale frames)."""
        if counter < 0 or counter >= 1 << 32:
            return True
        if counter > self.highest:
            return False
        age = self.highest - counter
        return age >= self.SIZE or bool(self.bitmap >> age & 1)

    def accept(self, counter: int) -> None:
        """Mark a counter used (only after its MIC verified)."""
        if counter > self.highest:
            shift = counter - self.highest if self.highest >= 0 else self.SIZE
            self.bitmap = ((self.bitmap << shift) | 1) & ((1 << self.SIZE) - 1)
            self.highest = counter
        else:
            self.bitmap |= 1 << (self.highest - counter)
