"""Fast REPLY/ERROR frame building for the edge's hot path — byte-identical to `codec.frame`.

`codec.frame.encode_reply` computes the header's RS(31, 19) parity with reedsolo's pure-Python
polynomial division (~35 µs a frame), a large share of the edge's per-frame budget. RS parity is
linear over GF(2) (the parity of a XOR b is the XOR of the parities), so it is a XOR of
per-(position, bit) contributions. `ReplyEncoder` derives those 19 × 8 contributions once, at
start-up, *from codec.frame's own RS codec* (no second RS implementation), folds them into one
table per header position (19 × 256 Python ints), and then builds a reply with a struct pack, a
CRC and 19 table look-ups (~3 µs). tests/edge/test_replies.py checks it byte for byte against
`encode_reply` / `encode_error`.
"""
from __future__ import annotations

import struct

from codec import frame as F
from codec.frame import ErrorCode, Kind

_REPLY_BODY = struct.Struct(">BBH")
_N_PROTECTED = 19
_N_PARITY = 12


def _parity_tables() -> list[list[int]]:
    unit: list[list[int]] = []
    for pos in range(_N_PROTECTED):
        row = []
        for bit in range(8):
            msg = bytearray(_N_PROTECTED)
            msg[pos] = 1 << bit
            row.append(int.from_bytes(bytes(F._RS.encode(bytes(msg)))[_N_PROTECTED:], "big"))
        unit.append(row)
    tables = []
    for pos in range(_N_PROTECTED):
        table = [0] * 256
        for value in range(1, 256):
            low = value & -value
            table[value] = table[value ^ low] ^ unit[pos][low.bit_length() - 1]
        tables.append(table)
    return tables


class ReplyEncoder:
    """Builds REPLY and ERROR frames exactly as codec.frame does, ~10x faster."""

    def __init__(self) -> None:
        if F.HEADER_BYTES != _N_PROTECTED + _N_PARITY or F._HEADER.size + 2 != _N_PROTECTED:
            raise RuntimeError("codec.frame's header layout changed; update edge/replies.py")
        self._tables = _parity_tables()
        self._head = F._HEADER
        self._ver_reply = (F.VERSION << 4) | int(Kind.REPLY)
        self._ver_error = (F.VERSION << 4) | int(Kind.ERROR)

    def _frame(self, ver_kind: int, fingerprint: bytes, device_id: int, seq: int, body: bytes) -> bytes:
        head = self._head.pack(F.MAGIC, ver_kind, 0, fingerprint, device_id & 0xFFFF, seq & 0xFFFF,
                               0, len(body) * 8, F.SNR_UNKNOWN, 0, F.NO_TRUTH)
        protected = head + F.crc16(head + body).to_bytes(2, "big")
        parity = 0
        tables = self._tables
        for pos, value in enumerate(protected):
            if value:
                parity ^= tables[pos][value]
        return protected + parity.to_bytes(_N_PARITY, "big") + body

    def reply(self, fingerprint: bytes, device_id: int, seq: int, label: int, confidence: float,
              ber: float) -> bytes:
        conf = max(0, min(255, int(round(confidence * 255))))
        ber_e5 = max(0, min(0xFFFF, int(round(ber * 1e5))))
        return self._frame(self._ver_reply, fingerprint, device_id, seq,
                           _REPLY_BODY.pack(label & 0xFF, conf, ber_e5))

    def error(self, fingerprint: bytes, device_id: int, seq: int, code: ErrorCode, reason: str) -> bytes:
        body = bytes([int(code)]) + reason.encode("utf-8")[:200]
        return self._frame(self._ver_error, fingerprint, device_id, seq, body)
