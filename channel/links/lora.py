"""LoRa (Semtech chirp spread spectrum) time on air, MTU and duty cycle.

Time on air, Semtech AN1200.13 "LoRa Modem Designer's Guide" (and the SX1276 datasheet 4.1.1.7):

    T_sym      = 2^SF / BW
    T_preamble = (n_preamble + 4.25) T_sym
    n_payload  = 8 + max( ceil( (8 PL - 4 SF + 28 + 16 CRC - 20 IH) / (4 (SF - 2 DE)) ) (CR + 4), 0 )
    T_air      = T_preamble + n_payload T_sym

PL payload bytes (PHY payload, <= 255); CR 1..4 for coding rates 4/5..4/8; IH = 1 for implicit
header (0 here by default: explicit header); CRC = 1 when the payload CRC is on; DE = 1 with low
data rate optimisation, which Semtech mandates when T_sym exceeds 16 ms (SF11 and SF12 at 125 kHz,
SF12 at 250 kHz) and which is switched on automatically here unless given.

MTU: the LoRaWAN EU863-870 regional limit on the application payload (N, repeater compatible,
RP002 Regional Parameters): 222 bytes at SF7/SF8, 115 at SF9, 51 at SF10-SF12. The default duty
cycle is the 1 % of the EU868 g1 sub-band.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from channel.links.base import Link, link_error

# EU868 maximum application payload (bytes) per spreading factor
EU868_MAX_PAYLOAD = {7: 222, 8: 222, 9: 115, 10: 51, 11: 51, 12: 51}
PHY_MAX_PAYLOAD = 255
BANDWIDTHS_HZ = (125_000, 250_000, 500_000)

_NAME = re.compile(r"^lora-sf(?P<sf>\d+)(?:-bw(?P<bw>\d+)k?)?(?:-cr(?:4[/_]?)?(?P<cr>[5-8]))?$")


@dataclass(frozen=True, repr=False)
class LoRaLink(Link):
    sf: int = 7
    bw_hz: int = 125_000
    cr: int = 1  # 1..4 -> 4/5..4/8
    preamble: int = 8
    explicit_header: bool = True
    crc: bool = True
    ldro: bool | None = None  # None: on when T_sym > 16 ms (Semtech rule)
    duty_cycle: float = 0.01
    mtu_override: int | None = None

    def __post_init__(self):
        if not 7 <= self.sf <= 12:
            raise ValueError(f"LoRa spreading factor must lie in 7..12, got {self.sf}")
        if self.bw_hz not in BANDWIDTHS_HZ:
            raise ValueError(f"LoRa bandwidth must be one of 125, 250, 500 kHz, got {self.bw_hz / 1e3:g} kHz")
        if not 1 <= self.cr <= 4:
            raise ValueError(f"LoRa coding rate index must lie in 1..4 (4/5..4/8), got {self.cr}")
        if not 0.0 < self.duty_cycle <= 1.0:
            raise ValueError(f"duty cycle must lie in (0, 1], got {self.duty_cycle}")

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"lora-sf{self.sf}-bw{self.bw_hz // 1000}-cr4/{self.cr + 4}"

    @property
    def mtu(self) -> int:  # type: ignore[override]
        return self.mtu_override or EU868_MAX_PAYLOAD[self.sf]

    @property
    def max_payload(self) -> int:  # type: ignore[override]
        return PHY_MAX_PAYLOAD

    @property
    def symbol_time_s(self) -> float:
        return (1 << self.sf) / self.bw_hz

    @property
    def low_data_rate_optimize(self) -> bool:
        return self.symbol_time_s > 0.016 if self.ldro is None else bool(self.ldro)

    @property
    def bitrate_bps(self) -> float:  # type: ignore[override]
        """Nominal bit rate SF * BW / 2^SF * 4 / (4 + CR)."""
        return self.sf * self.bw_hz / (1 << self.sf) * 4.0 / (4 + self.cr)

    def payload_symbols(self, n_bytes: int) -> int:
        pl = self._check_size(n_bytes)
        de = 1 if self.low_data_rate_optimize else 0
        ih = 0 if self.explicit_header else 1
        num = 8 * pl - 4 * self.sf + 28 + 16 * int(self.crc) - 20 * ih
        return 8 + max(math.ceil(num / (4 * (self.sf - 2 * de))) * (self.cr + 4), 0)

    def time_on_air_s(self, n_bytes: int) -> float:
        t_sym = self.symbol_time_s
        return (self.preamble + 4.25) * t_sym + self.payload_symbols(n_bytes) * t_sym

    def describe(self) -> str:
        return (f"{self.name} ({self.bitrate_bps / 1e3:.2f} kbit/s, MTU {self.mtu} B EU868, "
                f"LDRO {'on' if self.low_data_rate_optimize else 'off'}, duty cycle {self.duty_cycle:.0%})")


def parse_lora(name: str, **kw) -> LoRaLink:
    m = _NAME.match(name)
    if not m:
        raise link_error(name, "LoRa links are named lora-sf<7..12>[-bw<125|250|500>][-cr4/<5..8>], "
                               "e.g. lora-sf7, lora-sf10-bw125, lora-sf12-bw125-cr4/8")
    sf = int(m["sf"])
    bw = int(m["bw"] or 125) * 1000
    cr = int(m["cr"] or 5) - 4
    try:
        return LoRaLink(sf=sf, bw_hz=bw, cr=cr, **kw)
    except ValueError as exc:
        raise link_error(name, str(exc)) from None
