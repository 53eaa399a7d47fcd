"""Transports chosen by URL, all with the same send/receive interface.

    with open_transport("udp://127.0.0.1:9000") as t:         # client: sends to that address
        t.send(frame)
        got = t.recv(timeout=1.0)                              # (bytes, addr) or None on timeout

    edge = open_transport("udp://0.0.0.0:9000", listen=True)   # server: binds, replies to addr
    data, addr = edge.recv(None); edge.send(reply, addr)

URLs:
  udp://HOST:PORT[?mtu=N][&bind=HOST:PORT]      one frame per datagram (stream = False)
  serial:///dev/ttyUSB0[?baud=115200][&parity=N][&stopbits=1][&rtscts=0][&mtu=N]
                                                a real port or a pty via pyserial (stream = True)
  pty://[?link=/tmp/ttySNN]                     a new pty pair; this end holds the master and
                                                `.path` is the tty for the other process to open
  sim://NAME?ber=1e-3&model=iid|ge&burst=8&drop=P&drop_burst=L&downlink_ber=P&link=lora-sf7&seed=N
  sim://NAME?model=lora-phy&snr_db=-7.5&sf=7&cr=4/5[&offset_bins=E&downlink_snr_db=X]  (LoRa PHY both ways)
                                                in-process link for benchmarks and tests: a client
                                                (listen=False) reaches the server (listen=True) of
                                                the same NAME through the error and loss models in
                                                its own URL; link= delays frames by their time on
                                                air; NAME "loop" echoes a client's frames to itself.

Stream transports (serial, pty) carry each frame as COBS(frame) + 0x00 (codec.wire.cobs, channel.transports.stream) and
resynchronise at the next delimiter after corruption; `.dropped` counts frames that failed to
decode. `mtu` is the URL's ?mtu= (sim: else its link's MTU), else None; send() refuses frames
larger than it.
"""
from __future__ import annotations

import urllib.parse
from typing import Callable

from channel.transports.base import MAX_DATAGRAM, Transport
from channel.transports.sim import SimTransport
from channel.transports.stream import PtyTransport, SerialTransport
from channel.transports.udp import UdpTransport
from snn.errors import SnnError
from snn.registry import Registry

__all__ = ["Transport", "UdpTransport", "SerialTransport", "PtyTransport", "SimTransport",
           "open_transport", "SCHEMES", "TRANSPORTS", "MAX_DATAGRAM"]

# URL scheme -> opener(url text, split URL, listen) -> Transport; another module adds a scheme
# with `@TRANSPORTS.register("scheme", example="scheme://...")`.
TRANSPORTS: Registry[Callable[..., Transport]] = Registry("transport URL scheme")

_SIM_KEYS = {"ber", "model", "burst", "drop", "drop_burst", "downlink_ber", "link", "seed", "mtu",
             "snr_db", "sf", "cr", "offset_bins", "downlink_snr_db"}
_SERIAL_KEYS = {"baud", "parity", "stopbits", "bytesize", "rtscts", "mtu"}


def _query(url: str, parsed, allowed: set[str]) -> dict:
    params = {}
    for key, values in urllib.parse.parse_qs(parsed.query, keep_blank_values=True).items():
        if key not in allowed:
            raise SnnError(f"{url}: unknown option {key!r}; this scheme takes "
                           f"{', '.join(sorted(allowed))}")
        params[key] = values[-1]
    return params


def _int(url, key, value) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise SnnError(f"{url}: {key} must be an integer, got {value!r}") from None


def open_transport(url: str, *, listen: bool = False) -> Transport:
    """Open the transport a URL names (see the module docstring). Bad URLs raise SnnError."""
    text = str(url).strip()
    parsed = urllib.parse.urlsplit(text)
    scheme = parsed.scheme.lower()
    if scheme not in TRANSPORTS:
        raise SnnError(f"unsupported transport URL {text!r}; use {TRANSPORTS.choices()}")
    return TRANSPORTS.get(scheme)(text, parsed, listen)


@TRANSPORTS.register("udp", example="udp://HOST:PORT")
def _open_udp(text: str, parsed, listen: bool) -> Transport:
    params = _query(text, parsed, {"mtu", "bind"})
    try:
        host, port = parsed.hostname, parsed.port
    except ValueError:
        raise SnnError(f"{text}: the port must be a number 0..65535") from None
    if port is None:
        raise SnnError(f"{text}: a UDP URL needs a port, e.g. udp://127.0.0.1:9000")
    host = host or ("0.0.0.0" if listen else "127.0.0.1")
    bind = None
    if params.get("bind"):
        b = urllib.parse.urlsplit("udp://" + params["bind"])
        bind = (b.hostname or "0.0.0.0", b.port or 0)
    mtu = _int(text, "mtu", params["mtu"]) if params.get("mtu") else None
    return UdpTransport(text, host, port, listen=listen, mtu=mtu, bind=bind)


@TRANSPORTS.register("serial", example="serial:///dev/ttyUSB0?baud=115200")
def _open_serial(text: str, parsed, listen: bool) -> Transport:
    params = _query(text, parsed, _SERIAL_KEYS)
    path = (parsed.netloc + parsed.path) if parsed.netloc else parsed.path
    if not path:
        raise SnnError(f"{text}: a serial URL needs a device, e.g. serial:///dev/ttyUSB0?baud=115200")
    parity = params.get("parity", "N").upper()[:1]
    if parity not in "NEOMS":
        raise SnnError(f"{text}: parity must be N, E or O")
    rtscts = params.get("rtscts", "0").lower() in ("1", "true", "yes", "on")
    mtu = _int(text, "mtu", params["mtu"]) if params.get("mtu") else None
    try:
        stopbits = float(params.get("stopbits", 1))
    except ValueError:
        raise SnnError(f"{text}: stopbits must be 1, 1.5 or 2") from None
    return SerialTransport(text, path, baud=_int(text, "baud", params.get("baud", 115200)),
                           parity=parity, stopbits=stopbits,
                           bytesize=_int(text, "bytesize", params.get("bytesize", 8)),
                           rtscts=rtscts, mtu=mtu)


@TRANSPORTS.register("pty", example="pty://")
def _open_pty(text: str, parsed, listen: bool) -> Transport:
    params = _query(text, parsed, {"link", "mtu"})
    mtu = _int(text, "mtu", params["mtu"]) if params.get("mtu") else None
    return PtyTransport(text, link=params.get("link") or None, mtu=mtu)


@TRANSPORTS.register("sim", example="sim://NAME?ber=...")
def _open_sim(text: str, parsed, listen: bool) -> Transport:
    params = _query(text, parsed, _SIM_KEYS)
    name = (parsed.netloc + parsed.path).strip("/") or "default"
    try:
        return SimTransport(text, name, listen=listen, params=params)
    except ValueError as exc:
        raise SnnError(f"{text}: {exc}") from None


SCHEMES = TRANSPORTS.names()
