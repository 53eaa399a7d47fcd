"""Link models: MTU and time on air per frame for LoRa, BLE, IEEE 802.15.4 and UART.

    link = get_link("lora-sf10-bw125")
    link.mtu                 # 51 (EU868 limit at SF10)
    link.time_on_air_s(51)   # 0.370688

Names: lora-sf<7..12>[-bw<125|250|500>][-cr4/<5..8>]; ble-1m, ble-2m, ble-coded-s2, ble-coded-s8
(+ -legacy); 802.15.4, 802.15.4-868, 802.15.4-915; uart-<baud>[-8n1].
"""
from __future__ import annotations

from channel.links.base import Link
from channel.links.ble import BleLink, parse_ble
from channel.links.ieee802154 import Ieee802154Link, parse_802154
from channel.links.lora import LoRaLink, parse_lora
from channel.links.uart import UartLink, parse_uart
from snn.errors import SnnError

__all__ = ["Link", "LoRaLink", "BleLink", "Ieee802154Link", "UartLink", "get_link", "LINK_EXAMPLES"]

LINK_EXAMPLES = ("lora-sf7", "lora-sf10-bw125", "lora-sf12", "ble-1m", "ble-2m", "ble-coded-s8",
                 "802.15.4", "uart-115200", "uart-9600")


def get_link(name: str, **kw) -> Link:
    """The link model named `name` (see the module docstring); kw override its defaults."""
    key = str(name).strip().lower()
    try:
        if key.startswith("lora"):
            return parse_lora(key, **kw)
        if key.startswith("ble"):
            return parse_ble(key, **kw)
        if "802.15.4" in key or "802154" in key:
            return parse_802154(key, **kw)
        if key.startswith("uart"):
            return parse_uart(key, **kw)
    except (TypeError, ValueError) as exc:
        raise SnnError(f"link {name!r}: {exc}") from None
    raise SnnError(f"unknown link {name!r}; try one of {', '.join(LINK_EXAMPLES)}")
