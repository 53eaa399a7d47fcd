"""Bluetooth Low Energy: one GATT notification per frame.

Payload n bytes rides in ATT (opcode + handle, 3 B) over L2CAP (4 B), so the link-layer PDU
payload is n + 7 <= 251 bytes with the Data Length Extension (Bluetooth 4.2+), giving an MTU of
244 bytes (ATT_MTU 247); without it (4.0/4.1, 27-byte LL payload) the MTU is 20 bytes.

Time on air of one unencrypted data packet (Core spec Vol 6 Part B 2.1 and 2.2):
  LE 1M:  (1 preamble + 4 access address + 2 header + n + 7 + 3 CRC) bytes x 8 us
  LE 2M:  (2 preamble + 4 + 2 + n + 7 + 3) bytes x 4 us
  Coded:  80 us preamble + 256 us access address + 16 us CI + 24 us TERM1
          + (2 + n + 7 + 3) x 8 bits x S us + 3 x S us TERM2, with S = 2 (500 kbit/s) or 8 (125 kbit/s)
Connection-event overhead (inter-frame space, the peer's empty acknowledgement) is not included.
"""
from __future__ import annotations

from dataclasses import dataclass

from channel.links.base import Link, link_error

PHYS = {"1m": 1_000_000, "2m": 2_000_000, "coded-s2": 500_000, "coded-s8": 125_000}
ALIASES = {"500k": "coded-s2", "125k": "coded-s8", "coded": "coded-s8"}
OVERHEAD = 7  # L2CAP header 4 + ATT opcode 1 + handle 2


@dataclass(frozen=True, repr=False)
class BleLink(Link):
    phy: str = "1m"
    dle: bool = True  # data length extension

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"ble-{self.phy}" + ("" if self.dle else "-legacy")

    @property
    def mtu(self) -> int:  # type: ignore[override]
        return 244 if self.dle else 20

    @property
    def max_payload(self) -> int:  # type: ignore[override]
        return self.mtu

    @property
    def bitrate_bps(self) -> float:  # type: ignore[override]
        return float(PHYS[self.phy])

    def time_on_air_s(self, n_bytes: int) -> float:
        n = self._check_size(n_bytes)
        pdu = 2 + n + OVERHEAD + 3  # header + payload + CRC
        if self.phy == "1m":
            us = (1 + 4 + pdu) * 8
        elif self.phy == "2m":
            us = (2 + 4 + pdu) * 4
        else:
            s = 2 if self.phy == "coded-s2" else 8
            us = 80 + 256 + 16 + 24 + pdu * 8 * s + 3 * s
        return us * 1e-6


def parse_ble(name: str, **kw) -> BleLink:
    rest = name[len("ble-"):] if name.startswith("ble-") else ""
    dle = True
    if rest.endswith("-legacy"):
        rest, dle = rest[: -len("-legacy")], False
    phy = ALIASES.get(rest, rest or "1m")
    if phy not in PHYS:
        raise link_error(name, "BLE links are ble-1m, ble-2m, ble-coded-s2 (ble-500k), "
                               "ble-coded-s8 (ble-125k), with -legacy for 20-byte notifications")
    return BleLink(phy=phy, dle=dle, **kw)
