"""The Semtech UDP packet-forwarder protocol, version 2: the datagrams a LoRa gateway exchanges.

Written from the public protocol description (Lora-net/packet_forwarder, PROTOCOL.TXT). Every
datagram starts with 4 bytes: protocol version (2), a 16-bit token, an identifier::

    PUSH_DATA 0x00  gateway -> server  token, gateway EUI (8 bytes), JSON {"rxpk": [...], "stat": {...}}
    PUSH_ACK  0x01  server -> gateway  the PUSH_DATA's token
    PULL_DATA 0x02  gateway -> server  token, gateway EUI: keep-alive, opens the downlink route
    PULL_RESP 0x03  server -> gateway  token, JSON {"txpk": {...}}: a packet to emit
    PULL_ACK  0x04  server -> gateway  the PULL_DATA's token
    TX_ACK    0x05  gateway -> server  the PULL_RESP's token, gateway EUI, [JSON {"txpk_ack": {"error": ...}}]

The protocol has no authentication: anything can claim any EUI. This module only parses and
builds, strictly and within bounds (an attacker on the network can send any JSON): a datagram
larger than `MAX_DATAGRAM`, JSON nested deeper than `MAX_DEPTH` or carrying more than `MAX_RXPK`
packets is refused as a whole; an rxpk with a missing or ill-typed field (see `RxPacket`) is
skipped and counted, the rest of the datagram kept. Who may speak is the listener's business
(`edge.gateway`), as is what a frame means.
"""
from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field

from snn.errors import SnnError

__all__ = ["PUSH_DATA", "PUSH_ACK", "PULL_DATA", "PULL_RESP", "PULL_ACK", "TX_ACK", "Message", "RxPacket",
           "ProtocolError", "parse_message", "push_data", "push_ack", "pull_data", "pull_ack", "pull_resp",
           "tx_ack", "txpk_for", "parse_txpk", "parse_eui", "MAX_DATAGRAM", "MAX_RXPK", "MAX_DEPTH",
           "MAX_PAYLOAD", "lora_datr"]

VERSION = 2
PUSH_DATA, PUSH_ACK, PULL_DATA, PULL_RESP, PULL_ACK, TX_ACK = range(6)
NAMES = {PUSH_DATA: "PUSH_DATA", PUSH_ACK: "PUSH_ACK", PULL_DATA: "PULL_DATA", PULL_RESP: "PULL_RESP",
         PULL_ACK: "PULL_ACK", TX_ACK: "TX_ACK"}
MAX_DATAGRAM = 8192        # the reference forwarder sends at most 8 packets (~4.5 KB) per PUSH_DATA
MAX_RXPK = 16
MAX_DEPTH = 4              # {"rxpk": [{...}]}: anything deeper is not the protocol
MAX_PAYLOAD = 255          # a LoRa PHY payload
_WITH_EUI = {PUSH_DATA, PULL_DATA, TX_ACK}
_WITH_JSON = {PUSH_DATA, PULL_RESP, TX_ACK}
_DATR = re.compile(r"^SF(?P<sf>[5-9]|1[0-2])BW(?P<bw>125|250|500)$")
_CODR = re.compile(r"^4/[5-8]$")


class ProtocolError(SnnError):
    """A datagram that is not the packet-forwarder protocol (or exceeds its bounds)."""


@dataclass(frozen=True, slots=True)
class RxPacket:
    """One received radio packet of a PUSH_DATA, with the metadata the edge uses."""

    data: bytes               # the PHY payload (base64-decoded)
    stat: int                 # CRC status: 1 ok, -1 failed, 0 no CRC
    tmst: int                 # gateway's internal µs counter at "RX finished" (32 bits)
    freq: float               # MHz
    datr: str                 # e.g. SF7BW125
    codr: str                 # e.g. 4/5
    rssi: float               # dBm
    lsnr: float               # dB
    chan: int | None = None
    rfch: int = 0


@dataclass(slots=True)
class Message:
    kind: int
    token: int
    eui: bytes | None = None
    rxpk: list[RxPacket] = field(default_factory=list)
    skipped: int = 0                  # rxpk entries refused (ill-typed or missing fields)
    body: dict | None = None          # the JSON object (PULL_RESP: {"txpk": ...}; TX_ACK: {"txpk_ack": ...})

    @property
    def name(self) -> str:
        return NAMES.get(self.kind, f"0x{self.kind:02x}")


def parse_eui(text: str) -> bytes:
    """A gateway EUI from 16 hex digits (separators '-' and ':' allowed)."""
    clean = str(text).replace("-", "").replace(":", "").strip()
    try:
        eui = bytes.fromhex(clean)
    except ValueError:
        eui = b""
    if len(eui) != 8:
        raise SnnError(f"a gateway EUI is 16 hex digits (8 bytes), got {text!r}")
    return eui


def _depth_ok(value, depth: int = 0) -> bool:
    if depth > MAX_DEPTH:
        return False
    if isinstance(value, dict):
        return all(_depth_ok(v, depth + 1) for v in value.values())
    if isinstance(value, list):
        return all(_depth_ok(v, depth + 1) for v in value)
    return True


def _json(raw: bytes) -> dict:
    if not raw:
        return {}
    if raw[:1] != b"{":
        raise ProtocolError("the JSON part must be an object")
    # cheap pre-check before json.loads can recurse: brackets nest at most MAX_DEPTH deep
    depth = top = 0
    for byte in raw:
        if byte in (0x7B, 0x5B):
            depth += 1
            top = max(top, depth)
            if top > MAX_DEPTH + 1:
                raise ProtocolError("JSON nested too deep")
        elif byte in (0x7D, 0x5D):
            depth -= 1
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ProtocolError("malformed JSON") from None
    if not isinstance(obj, dict) or not _depth_ok(obj):
        raise ProtocolError("the JSON part must be an object of the protocol's shape")
    return obj


def _number(value, what: str, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise ValueError(what)
    return float(value)


def _rxpk(obj) -> RxPacket:
    if not isinstance(obj, dict):
        raise ValueError("rxpk entry")
    if obj.get("modu", "LORA") != "LORA":
        raise ValueError("modu")
    text = obj.get("data")
    if not isinstance(text, str) or len(text) > 4 * ((MAX_PAYLOAD + 2) // 3):
        raise ValueError("data")
    try:
        data = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("data") from None
    size = obj.get("size", len(data))
    if isinstance(size, bool) or not isinstance(size, int) or size != len(data):
        raise ValueError("size")
    stat = obj.get("stat")
    if isinstance(stat, bool) or stat not in (1, 0, -1):
        raise ValueError("stat")
    tmst = obj.get("tmst")
    if isinstance(tmst, bool) or not isinstance(tmst, int) or not 0 <= tmst <= 0xFFFFFFFF:
        raise ValueError("tmst")
    datr, codr = obj.get("datr"), obj.get("codr")
    if not isinstance(datr, str) or not _DATR.match(datr):
        raise ValueError("datr")
    if not isinstance(codr, str) or not _CODR.match(codr):
        raise ValueError("codr")
    chan = obj.get("chan")
    if chan is not None and (isinstance(chan, bool) or not isinstance(chan, int) or not 0 <= chan < 256):
        raise ValueError("chan")
    rfch = obj.get("rfch", 0)
    if isinstance(rfch, bool) or not isinstance(rfch, int) or not 0 <= rfch < 16:
        raise ValueError("rfch")
    return RxPacket(data=data, stat=int(stat), tmst=int(tmst), freq=_number(obj.get("freq"), "freq", 1.0, 10_000.0),
                    datr=datr, codr=codr, rssi=_number(obj.get("rssi"), "rssi", -300.0, 100.0),
                    lsnr=_number(obj.get("lsnr"), "lsnr", -60.0, 60.0), chan=chan, rfch=rfch)


def parse_message(data: bytes) -> Message:
    """Parse one datagram (ProtocolError when it is not protocol v2 or exceeds the bounds)."""
    if len(data) < 4:
        raise ProtocolError("shorter than the 4-byte header")
    if len(data) > MAX_DATAGRAM:
        raise ProtocolError(f"longer than {MAX_DATAGRAM} bytes")
    if data[0] != VERSION:
        raise ProtocolError(f"protocol version {data[0]}, not {VERSION}")
    kind, token = data[3], int.from_bytes(data[1:3], "big")
    if kind not in NAMES:
        raise ProtocolError(f"unknown identifier 0x{kind:02x}")
    msg = Message(kind, token)
    rest = data[4:]
    if kind in _WITH_EUI:
        if len(rest) < 8:
            raise ProtocolError(f"{msg.name} without its 8-byte gateway EUI")
        msg.eui, rest = bytes(rest[:8]), rest[8:]
    if kind not in _WITH_JSON:
        if rest:
            raise ProtocolError(f"{msg.name} carries {len(rest)} unexpected bytes")
        return msg
    body = _json(bytes(rest))
    msg.body = body
    if kind == PUSH_DATA:
        packets = body.get("rxpk", [])
        if not isinstance(packets, list):
            raise ProtocolError("rxpk must be an array")
        if len(packets) > MAX_RXPK:
            raise ProtocolError(f"more than {MAX_RXPK} packets in one PUSH_DATA")
        for obj in packets:
            try:
                msg.rxpk.append(_rxpk(obj))
            except ValueError:
                msg.skipped += 1
    return msg


def _head(kind: int, token: int, eui: bytes | None = None) -> bytes:
    return bytes([VERSION]) + (int(token) & 0xFFFF).to_bytes(2, "big") + bytes([kind]) + (eui or b"")


def push_ack(token: int) -> bytes:
    return _head(PUSH_ACK, token)


def pull_ack(token: int) -> bytes:
    return _head(PULL_ACK, token)


def pull_data(token: int, eui: bytes) -> bytes:
    return _head(PULL_DATA, token, eui)


def _dumps(obj: dict) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def rxpk_json(p: RxPacket) -> dict:
    out = {"tmst": p.tmst, "freq": p.freq, "rfch": p.rfch, "stat": p.stat, "modu": "LORA", "datr": p.datr,
           "codr": p.codr, "rssi": int(round(p.rssi)), "lsnr": round(p.lsnr, 1), "size": len(p.data),
           "data": base64.b64encode(p.data).decode()}
    if p.chan is not None:
        out["chan"] = p.chan
    return out


def push_data(token: int, eui: bytes, packets: list[RxPacket], stat: dict | None = None) -> bytes:
    body: dict = {"rxpk": [rxpk_json(p) for p in packets]} if packets else {}
    if stat is not None:
        body["stat"] = stat
    return _head(PUSH_DATA, token, eui) + _dumps(body)


def lora_datr(sf: int, bw_khz: int = 125) -> str:
    return f"SF{int(sf)}BW{int(bw_khz)}"


def txpk_for(rx: RxPacket, data: bytes, delay_s: float = 1.0, power_dbm: int = 14) -> dict:
    """The txpk of a class-A reply in the RX1 window: `delay_s` after the uplink ended (its tmst),
    same frequency and data rate (RX1 data-rate offset 0), inverted polarity, no CRC."""
    return {"imme": False, "tmst": (rx.tmst + int(round(delay_s * 1e6))) & 0xFFFFFFFF, "freq": rx.freq,
            "rfch": 0, "powe": int(power_dbm), "modu": "LORA", "datr": rx.datr, "codr": rx.codr, "ipol": True,
            "size": len(data), "data": base64.b64encode(data).decode(), "ncrc": True}


def pull_resp(token: int, txpk: dict) -> bytes:
    return _head(PULL_RESP, token) + _dumps({"txpk": txpk})


def parse_txpk(msg: Message) -> tuple[dict, bytes]:
    """(txpk, decoded data) of a PULL_RESP (ProtocolError if it has none)."""
    txpk = (msg.body or {}).get("txpk")
    if msg.kind != PULL_RESP or not isinstance(txpk, dict) or not isinstance(txpk.get("data"), str):
        raise ProtocolError("a PULL_RESP carries a txpk object with data")
    text = txpk["data"]
    try:
        data = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError("txpk data is not base64") from None
    return txpk, data


def tx_ack(token: int, eui: bytes, error: str = "NONE") -> bytes:
    return _head(TX_ACK, token, eui) + _dumps({"txpk_ack": {"error": error}})
