"""IEEE 802.15.4 (Zigbee, Thread, 6LoWPAN PHY/MAC).

PHY: synchronisation header (preamble 4 + SFD 1 octets) and PHY header (1 octet), then a PSDU
of at most aMaxPHYPacketSize = 127 octets. MAC data frame with short addresses and PAN ID
compression: 9-octet header (frame control 2, sequence 1, PAN 2, destination 2, source 2) and a
2-octet FCS, so the MAC payload MTU is 127 - 11 = 116 bytes and a frame of n payload bytes is
n + 17 octets on air.

Rates: 2.4 GHz O-QPSK 250 kbit/s (32 us/octet), 868 MHz BPSK 20 kbit/s, 915 MHz BPSK 40 kbit/s.
"""
from __future__ import annotations

from dataclasses import dataclass

from channel.links.base import Link, link_error

RATES = {"2450": 250_000, "868": 20_000, "915": 40_000}
PHY_OVERHEAD = 6  # preamble 4 + SFD 1 + PHR 1
MAC_OVERHEAD = 11  # MHR 9 (short addressing, PAN ID compression) + FCS 2
MAX_PSDU = 127


@dataclass(frozen=True, repr=False)
class Ieee802154Link(Link):
    band: str = "2450"

    @property
    def name(self) -> str:  # type: ignore[override]
        return "802.15.4" if self.band == "2450" else f"802.15.4-{self.band}"

    @property
    def mtu(self) -> int:  # type: ignore[override]
        return MAX_PSDU - MAC_OVERHEAD

    @property
    def max_payload(self) -> int:  # type: ignore[override]
        return self.mtu

    @property
    def bitrate_bps(self) -> float:  # type: ignore[override]
        return float(RATES[self.band])

    def time_on_air_s(self, n_bytes: int) -> float:
        n = self._check_size(n_bytes)
        return (PHY_OVERHEAD + MAC_OVERHEAD + n) * 8 / self.bitrate_bps


def parse_802154(name: str, **kw) -> Ieee802154Link:
    key = name.replace("ieee", "").lstrip("-")
    for prefix in ("802.15.4", "802154"):
        if key.startswith(prefix):
            band = key[len(prefix):].lstrip("-") or "2450"
            band = {"2.4": "2450", "2400": "2450", "2.4g": "2450"}.get(band, band)
            if band in RATES:
                return Ieee802154Link(band=band, **kw)
    raise link_error(name, "IEEE 802.15.4 links are 802.15.4 (2.4 GHz, 250 kbit/s), "
                           "802.15.4-868 and 802.15.4-915")
