"""The resynchronisation exchange (docs/PROTOCOL.md §4.7): how a device that has no counter state,
or has run out of counters it may use, gets back into service without ever reusing a counter.

Four control frames, each `copies` (1, 3, 5) identical 15-byte BCH blocks (92 info bits, the
code of §3.2), carrying no encrypted payload and using no frame counter::

    device                                edge
    RESYNC  (nonce N, 40 random bits) ──►  no state change; offers S = H + MAX_GAP + 1
            ◄── OFFER   (S, status)        MIC over N: only the device that asked accepts it
    CONFIRM (S' >= S)                 ──►  commits H := max(H, S' − 1) durably, then answers
            ◄── ACK     (S', status)       MIC over N and S'
    the device stores next = S', limit = S' − 1 + MAX_GAP, then sends DATA from S'

Block bits, MSB first (uplink: device id | argument 40 | MIC 32 | version 2 | kind 2; downlink:
argument 56 | MIC 32 | version 2 | kind 2)::

    RESYNC   argument = nonce (40)
    CONFIRM  argument = start S' (32) | 0 (8)               the nonce is bound by the MIC only
    OFFER    argument = start S (32) | status (8) | 0 (16)
    ACK      argument = start S' (32) | status (8) | 0 (16)

MIC = the first 4 bytes of AES-CMAC(key, M)::

    uplink   M = 0x02 | device id (2) | hdr | nonce (5) | [S' (4), CONFIRM only] | fingerprint (4)
    downlink M = 0x03 | device id (2) | hdr | nonce (5) | S (4) | status (1) | fingerprint (4)
    hdr = version << 6 | kind << 4 | copies

The direction bytes 0x02/0x03 keep these MICs apart from every DATA/REPLY/ERROR MIC (0x00/0x01).
Why each piece is there (the attacker's view) is in docs/PROTOCOL.md §4.7.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from enum import IntEnum
from typing import Callable, Sequence

from codec.wire import bch
from codec.wire.crypto import mic
from codec.wire.frame import HEADER_COPIES, VERSION, Peer, _block, _decode_block
from codec.wire.replay import MAX_COUNTER, MAX_GAP
from snn.errors import FrameError

CONTROL_BLOCK_BYTES = 15        # 92 info bits + 28 parity
CONTROL_INFO_BITS = 92
CONTROL_LENGTHS = frozenset(CONTROL_BLOCK_BYTES * c for c in HEADER_COPIES)   # 15, 45, 75
NONCE_BYTES = 5
UP, DOWN = 0x02, 0x03          # MIC direction bytes of control frames


class ControlKind(IntEnum):
    RESYNC = 0      # device -> edge: "tell me where my counters may start"
    CONFIRM = 1     # device -> edge: "commit this start"
    OFFER = 2       # edge -> device: the start the edge can vouch for, and a status
    ACK = 3         # edge -> device: the start is committed


class ResyncStatus(IntEnum):
    OK = 0
    NO_STATE = 1    # the edge lost this key's counters (replay state reset): only a device that
                    # kept its own counter may go on (it confirms its own next counter)
    EXHAUSTED = 2   # no room for another MAX_GAP counters under this key: rotate the key


STATUS_TEXT = {
    ResyncStatus.OK: "ok",
    ResyncStatus.NO_STATE: "the edge has lost this key's counter history and this device has none: "
                           "give the device a new key ('snn keys rotate --device ID KEYS')",
    ResyncStatus.EXHAUSTED: "this key's frame counters are used up: give the device a new key "
                            "('snn keys rotate --device ID KEYS')",
}


@dataclass(frozen=True, slots=True)
class ControlFrame:
    """One authenticated control frame."""

    kind: ControlKind
    device_id: int
    nonce: bytes
    start: int | None           # CONFIRM, OFFER, ACK
    status: int | None          # OFFER, ACK
    copies: int
    header_errors: int          # bits the copy vote and the BCH decoder found wrong
    header_bits: int
    peer: object = None         # uplink: the Peer whose key (and codec) authenticated it


def new_nonce() -> bytes:
    """40 bits from the operating system's CSPRNG: a nonce is never reused (§4.7)."""
    return secrets.token_bytes(NONCE_BYTES)


def offer_for(highest: int | None, known: bool = True) -> tuple[ResyncStatus, int]:
    """(status, start) an edge offers a device whose highest used counter is `highest` (None: a
    new device, nothing used yet); `known` False when the edge lost the key's history."""
    if not known:
        return ResyncStatus.NO_STATE, 0
    start = (-1 if highest is None else highest) + MAX_GAP + 1
    if start + MAX_GAP > MAX_COUNTER + 1:
        return ResyncStatus.EXHAUSTED, min(start, MAX_COUNTER)
    return ResyncStatus.OK, start


def confirmable(offered: int, start: int, status: int) -> bool:
    """Whether an edge may commit `start` for a CONFIRM answering its offer `offered`: never below
    the offer (when it knew the history), always leaving MAX_GAP counters under the key."""
    floor = offered if status == ResyncStatus.OK else 0
    return status in (ResyncStatus.OK, ResyncStatus.NO_STATE) and floor <= start and start + MAX_GAP <= MAX_COUNTER + 1


# --- encoding ------------------------------------------------------------------------------

def _hdr(kind: int, copies: int) -> int:
    return (VERSION << 6) | (kind << 4) | copies


def _check(key: bytes, device_id: int, fingerprint: bytes, nonce: bytes, copies: int) -> None:
    if copies not in HEADER_COPIES:
        raise ValueError(f"a control frame is sent {', '.join(map(str, HEADER_COPIES))} times, not {copies}")
    if len(key) != 16 or len(fingerprint) != 4 or len(nonce) != NONCE_BYTES or not 0 <= device_id <= 0xFFFF:
        raise ValueError("key 16 bytes, fingerprint 4, nonce 5, device id 16 bits")


def up_mic_message(kind: int, device_id: int, nonce: bytes, fingerprint: bytes, copies: int,
                   start: int | None = None) -> bytes:
    body = b"" if start is None else start.to_bytes(4, "big")
    return bytes([UP]) + device_id.to_bytes(2, "big") + bytes([_hdr(kind, copies)]) + nonce + body + fingerprint


def down_mic_message(kind: int, device_id: int, nonce: bytes, start: int, status: int, fingerprint: bytes,
                     copies: int) -> bytes:
    return (bytes([DOWN]) + device_id.to_bytes(2, "big") + bytes([_hdr(kind, copies)]) + nonce
            + start.to_bytes(4, "big") + bytes([status]) + fingerprint)


def _frame(info: int, copies: int) -> bytes:
    return _block(info, CONTROL_INFO_BITS) * copies


def encode_resync(*, key: bytes, device_id: int, fingerprint: bytes, nonce: bytes, copies: int = 1) -> bytes:
    """RESYNC: ask the edge where this device's counters may start (no counter used)."""
    _check(key, device_id, fingerprint, nonce, copies)
    kind = ControlKind.RESYNC
    tag = int.from_bytes(mic(key, up_mic_message(kind, device_id, nonce, fingerprint, copies)), "big")
    info = (device_id << 76) | (int.from_bytes(nonce, "big") << 36) | (tag << 4) | (VERSION << 2) | kind
    return _frame(info, copies)


def encode_confirm(*, key: bytes, device_id: int, fingerprint: bytes, nonce: bytes, start: int,
                   copies: int = 1) -> bytes:
    """CONFIRM: commit `start` (>= the offer) as this device's next counter."""
    _check(key, device_id, fingerprint, nonce, copies)
    if not 0 <= start <= MAX_COUNTER:
        raise ValueError("a start counter is 32 bits")
    kind = ControlKind.CONFIRM
    tag = int.from_bytes(mic(key, up_mic_message(kind, device_id, nonce, fingerprint, copies, start)), "big")
    info = (device_id << 76) | (start << 44) | (tag << 4) | (VERSION << 2) | kind
    return _frame(info, copies)


def _encode_down(kind: ControlKind, key: bytes, device_id: int, fingerprint: bytes, nonce: bytes, start: int,
                 status: int, copies: int) -> bytes:
    _check(key, device_id, fingerprint, nonce, copies)
    if not 0 <= start <= MAX_COUNTER or not 0 <= status <= 0xFF:
        raise ValueError("a start counter is 32 bits and a status 8")
    tag = int.from_bytes(mic(key, down_mic_message(kind, device_id, nonce, start, status, fingerprint, copies)),
                         "big")
    info = (start << 60) | (status << 52) | (tag << 4) | (VERSION << 2) | kind
    return _frame(info, copies)


def encode_offer(*, key: bytes, device_id: int, fingerprint: bytes, nonce: bytes, start: int,
                 status: int = ResyncStatus.OK, copies: int = 1) -> bytes:
    """OFFER: the edge's answer to a RESYNC (as many copies as the request carried)."""
    return _encode_down(ControlKind.OFFER, key, device_id, fingerprint, nonce, start, status, copies)


def encode_ack(*, key: bytes, device_id: int, fingerprint: bytes, nonce: bytes, start: int,
               status: int = ResyncStatus.OK, copies: int = 1) -> bytes:
    """ACK: the edge committed `start` (sent only after the commit is durable)."""
    return _encode_down(ControlKind.ACK, key, device_id, fingerprint, nonce, start, status, copies)


# --- parsing -------------------------------------------------------------------------------

def _open_block(data: bytes) -> tuple[int, int, int, int]:
    """(info, copies, errors, bits) of a control frame's voted and decoded block; FrameError."""
    copies, rem = divmod(len(data), CONTROL_BLOCK_BYTES)
    if rem or copies not in HEADER_COPIES:
        raise FrameError(f"a control frame of {len(data)} bytes (15, 45 or 75 expected)", reason="length")
    got = _decode_block(bytes(data), copies, CONTROL_BLOCK_BYTES)
    if got is None:
        raise FrameError("control frame damaged beyond repair on the link", reason="damaged")
    info, errors = got
    if info >> 2 & 3 != VERSION:
        raise FrameError(f"protocol version {info >> 2 & 3}", reason="version")
    return info, copies, errors, copies * CONTROL_BLOCK_BYTES * 8


def parse_control_up(data: bytes, peers: Callable[[int], Sequence[Peer]],
                     open_nonces: Callable[[int], Sequence[bytes]]) -> ControlFrame:
    """Check and authenticate a RESYNC or CONFIRM (edge side). `peers(device_id)` as for
    `parse_data`; `open_nonces(device_id)`: the nonces of the exchanges the edge has open with
    that device (a CONFIRM authenticates only against one of them; an edge keeps a few, §4.7).
    Raises FrameError ("length", "damaged", "version", "kind", "reserved", "unmatched": no
    exchange open, "auth")."""
    info, copies, errors, bits = _open_block(data)
    kind = info & 3
    if kind not in (ControlKind.RESYNC, ControlKind.CONFIRM):
        raise FrameError(f"a {ControlKind(kind).name} control frame where RESYNC/CONFIRM was expected",
                         reason="kind")
    device_id, arg, tag = info >> 76, info >> 36 & ((1 << 40) - 1), info >> 4 & 0xFFFFFFFF
    if kind == ControlKind.RESYNC:
        nonces, start = [arg.to_bytes(NONCE_BYTES, "big")], None
    else:
        if arg & 0xFF:
            raise FrameError("CONFIRM with non-zero reserved bits", reason="reserved")
        start, nonces = arg >> 8, list(open_nonces(device_id) or ())
        if not nonces:
            raise FrameError(f"device {device_id}: CONFIRM without an open exchange", reason="unmatched")
    for peer in peers(device_id):
        for nonce in nonces:
            want = mic(peer.key, up_mic_message(kind, device_id, nonce, peer.fingerprint, copies, start))
            if int.from_bytes(want, "big") == tag:
                return ControlFrame(ControlKind(kind), device_id, nonce, start, None, copies, errors, bits, peer)
    raise FrameError(f"device {device_id}: control frame authentication failed", reason="auth")


def parse_control_down(data: bytes, *, key: bytes, device_id: int, fingerprint: bytes,
                       nonce: bytes) -> ControlFrame:
    """Check and authenticate an OFFER or ACK for the exchange of `nonce` (device side). Raises
    FrameError ("length", "damaged", "version", "kind", "reserved", "auth")."""
    info, copies, errors, bits = _open_block(data)
    kind = info & 3
    if kind not in (ControlKind.OFFER, ControlKind.ACK):
        raise FrameError(f"a {ControlKind(kind).name} control frame where OFFER/ACK was expected", reason="kind")
    start, status, reserved, tag = info >> 60, info >> 52 & 0xFF, info >> 36 & 0xFFFF, info >> 4 & 0xFFFFFFFF
    if reserved:
        raise FrameError(f"{ControlKind(kind).name} with non-zero reserved bits", reason="reserved")
    want = mic(key, down_mic_message(kind, device_id, nonce, start, status, fingerprint, copies))
    if int.from_bytes(want, "big") != tag:
        raise FrameError("control frame authentication failed (not for this exchange, or forged)", reason="auth")
    return ControlFrame(ControlKind(kind), device_id, nonce, start, status, copies, errors, bits)


def is_control_length(n: int) -> bool:
    """Whether a datagram of n bytes may be a control frame (15, 45 or 75 bytes)."""
    return n in CONTROL_LENGTHS


def block_is_codeword(data: bytes) -> bool:
    """Whether the first 15 bytes are a BCH codeword (a cheap first look before decoding)."""
    return len(data) >= CONTROL_BLOCK_BYTES and not bch.remainder(bytes(data[:CONTROL_BLOCK_BYTES]))
