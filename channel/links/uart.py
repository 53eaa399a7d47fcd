"""UART: asynchronous serial at a baud rate, with start, parity and stop bits, COBS framed.

A character is 1 start + data bits + parity (0/1) + stop bits on the wire (10 bits for 8N1).
Frames travel COBS encoded with a 0x00 delimiter (see codec.wire.cobs), so n payload bytes take at
most n + 1 + floor(n / 254) + 1 characters; time on air counts that worst case. There is no PHY
limit on a frame; the MTU (default 1024 bytes) is what receivers are sized for.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from channel.links.base import Link, link_error

_NAME = re.compile(r"^uart-(?P<baud>\d+)(?:-(?P<data>[5-8])(?P<parity>[neoNEO])(?P<stop>[12]))?$")


@dataclass(frozen=True, repr=False)
class UartLink(Link):
    baud: int = 115_200
    data_bits: int = 8
    parity: str = "N"
    stop_bits: int = 1
    cobs: bool = True
    mtu_bytes: int = 1024

    def __post_init__(self):
        if self.baud <= 0:
            raise ValueError(f"baud rate must be positive, got {self.baud}")

    @property
    def name(self) -> str:  # type: ignore[override]
        fmt = f"{self.data_bits}{self.parity.upper()}{self.stop_bits}"
        return f"uart-{self.baud}" + ("" if fmt == "8N1" else f"-{fmt.lower()}")

    @property
    def mtu(self) -> int:  # type: ignore[override]
        return self.mtu_bytes

    @property
    def max_payload(self) -> int:  # type: ignore[override]
        return 1 << 20

    @property
    def bits_per_char(self) -> int:
        return 1 + self.data_bits + (0 if self.parity.upper() == "N" else 1) + self.stop_bits

    @property
    def bitrate_bps(self) -> float:  # type: ignore[override]
        """Payload bit rate of the line (data bits only)."""
        return self.baud * self.data_bits / self.bits_per_char

    def wire_bytes(self, n_bytes: int) -> int:
        n = self._check_size(n_bytes)
        return n + (1 + n // 254 + 1 if self.cobs else 0)

    def time_on_air_s(self, n_bytes: int) -> float:
        return self.wire_bytes(n_bytes) * self.bits_per_char / self.baud


def parse_uart(name: str, **kw) -> UartLink:
    m = _NAME.match(name)
    if not m:
        raise link_error(name, "UART links are uart-<baud>[-8n1], e.g. uart-115200, uart-9600-8e2")
    extra = {}
    if m["data"]:
        extra = dict(data_bits=int(m["data"]), parity=m["parity"].upper(), stop_bits=int(m["stop"]))
    if "mtu" in kw:
        kw["mtu_bytes"] = int(kw.pop("mtu"))
    return UartLink(baud=int(m["baud"]), **extra, **kw)
