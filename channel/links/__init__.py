"""Link models: MTU and time on air per frame for LoRa, BLE, IEEE 802.15.4 and UART.

    link = get_link("lora-sf10-bw125")
    link.mtu                 # 51 (EU868 limit at SF10)
    link.time_on_air_s(51)   # 0.370688

Names: lora-sf<7..12>[-bw<125|250|500>][-cr4/<5..8>]; ble-1m, ble-2m, ble-coded-s2, ble-coded-s8
(+ -legacy); 802.15.4, 802.15.4-868, 802.15.4-915; uart-<baud>[-8n1].
"""
from __future__ import annotations

from typing import Callable

from channel.links.base import Link
from channel.links.ble import BleLink, parse_ble
from channel.links.ieee802154 import Ieee802154Link, parse_802154
from channel.links.lora import LoRaLink, parse_lora
from channel.links.uart import UartLink, parse_uart
from snn.errors import SnnError
from snn.registry import Registry

__all__ = ["Link", "LoRaLink", "BleLink", "Ieee802154Link", "UartLink", "get_link", "LINK_EXAMPLES", "LINK_FAMILIES"]

LINK_EXAMPLES = ("lora-sf7", "lora-sf10-bw125", "lora-sf12", "ble-1m", "ble-2m", "ble-coded-s8",
                 "802.15.4", "uart-115200", "uart-9600")


# link family (the name's first dash-separated word) -> parser(full name, **kw) -> Link
LINK_FAMILIES: Registry[Callable[..., Link]] = Registry("link")
LINK_FAMILIES.add("lora", parse_lora, example="lora-sf<7..12>[-bw<125|250|500>][-cr4/<5..8>]")
LINK_FAMILIES.add("ble", parse_ble, example="ble-1m|2m|coded-s2|coded-s8[-legacy]")
LINK_FAMILIES.add("802.15.4", parse_802154, "802154", example="802.15.4[-868|-915]")
LINK_FAMILIES.add("uart", parse_uart, example="uart-<baud>[-8n1]")


def get_link(name: str, **kw) -> Link:
    """The link model named `name` (see the module docstring); kw override its defaults."""
    key = str(name).strip().lower()
    family = key.split("-", 1)[0]
    if family not in LINK_FAMILIES:
        raise SnnError(f"unknown link {name!r}; use {LINK_FAMILIES.choices()}, e.g. {', '.join(LINK_EXAMPLES)}")
    try:
        return LINK_FAMILIES.get(family)(key, **kw)
    except (TypeError, ValueError) as exc:
        raise SnnError(f"link {name!r}: {exc}") from None
