"""The LoRa gateway feed: `snn edge serve --gateway udp://HOST:PORT --gateway-allow EUI@ADDR`.

A LoRa concentrator's packet forwarder (Semtech UDP protocol v2, `channel.semtech_udp`) hands
the edge every packet it received, with its CRC status, RSSI and SNR; with the device's payload
CRC off (or `forward_crc_error`) frames with bit errors arrive too, which is the point. Each
`rxpk` is one datagram of the device's frames and goes through the core's one entry
(`Front.offer`), authenticated like any other frame; the answer goes back as a `txpk` in the
class-A RX1 window, `rx1_delay_s` after the uplink's `tmst`.

The protocol has no authentication, so:

- a gateway is admitted only when its EUI is on the allow-list *and* the datagram comes from
  that entry's addresses; anything else is dropped unanswered (no PUSH_ACK: no reflection) and
  counted;
- one frame heard by several gateways is one inference: its copies are grouped for
  `dedup_s` by their header block as the public BCH code reads it (`codec.wire.frame.header_key`:
  copies with the same key authenticate alike, whatever their payload bits), and only the best
  copy (CRC good first, then highest lsnr, then rssi) is offered; the rest are counted
  duplicates, never offered (no false replays) and never answered;
- a gateway's metadata chooses only among gateways that delivered a copy of the frame that
  authenticated: the reply callable of a group is called by the core only for an
  authenticated frame, and every copy in the group carries that frame's header; the reply
  goes to the group's best-heard gateway (highest lsnr, then rssi) that has a downlink route
  (its latest PULL_DATA's address), once: a txpk is never re-targeted once sent.

Every figure is per gateway EUI on /metrics (`snn_edge_gateway_*`); label values are allow-
listed EUIs only, so an attacker cannot grow the exposition.
"""
from __future__ import annotations

import asyncio
import collections
import ipaddress
import logging
import socket
import time
from dataclasses import dataclass, field

from channel import semtech_udp as pf
from codec.wire.control import control_key
from codec.wire.frame import header_key
from edge.listeners import bind_or_explain
from snn.errors import SnnError

__all__ = ["AllowedGateway", "GatewayOptions", "GatewayListener", "parse_allow", "bind_gateway",
           "REFUSALS", "COPY_FATES"]

log = logging.getLogger("snn.edge")

REFUSALS = ("not_allowed", "malformed", "unexpected", "bad_rxpk", "no_route", "too_late", "send_failed",
            "groups_full")
COPY_FATES = ("offered", "duplicate", "late", "ungrouped")
STATS = {1: "crc_ok", -1: "crc_bad", 0: "no_crc"}


@dataclass(frozen=True, slots=True)
class AllowedGateway:
    """One allow-list entry: a gateway EUI and the network its datagrams must come from."""

    eui: bytes
    network: ipaddress.IPv4Network | ipaddress.IPv6Network

    def admits(self, host: str) -> bool:
        try:
            return ipaddress.ip_address(host) in self.network
        except ValueError:
            return False


def parse_allow(text: str) -> AllowedGateway:
    """`EUI@ADDRESS` or `EUI@NETWORK/PREFIX` (e.g. `aa555a0000000001@192.0.2.7`)."""
    eui, sep, where = str(text).partition("@")
    if not sep or not where:
        raise SnnError(f"--gateway-allow takes EUI@ADDRESS[/PREFIX] (e.g. aa555a0000000001@192.0.2.7), got {text!r}")
    try:
        network = ipaddress.ip_network(where.strip("[]"), strict=False)
    except ValueError:
        raise SnnError(f"--gateway-allow: {where!r} is not an IP address or network") from None
    return AllowedGateway(pf.parse_eui(eui), network)


@dataclass(frozen=True)
class GatewayOptions:
    """What `--gateway` configures; the defaults are the class-A RX1 timing of LoRaWAN."""

    address: tuple[str, int]
    allow: tuple[AllowedGateway, ...]
    dedup_s: float = 0.2          # copies of one frame heard within this window are one inference
    rx1_delay_s: float = 1.0      # the device's receive window opens this long after its uplink ended
    tx_lead_s: float = 0.1        # a txpk must leave this long before its window, else it is counted too late
    power_dbm: int = 14
    max_groups: int = 4096        # frames waiting in their dedup window or remembered after it

    def __post_init__(self) -> None:
        if not self.allow:
            raise SnnError("--gateway needs --gateway-allow EUI@ADDRESS: the packet-forwarder protocol has no "
                           "authentication, so the edge listens only to the gateways you name")
        if not 0 <= self.dedup_s < self.rx1_delay_s - self.tx_lead_s:
            raise SnnError(f"the de-duplication window ({self.dedup_s * 1e3:g} ms) must be at least 0 and end "
                           f"before the RX1 window ({self.rx1_delay_s:g} s) less the txpk lead "
                           f"({self.tx_lead_s * 1e3:g} ms)")
        if not 0 < self.rx1_delay_s <= 15:
            raise SnnError(f"--rx1-delay takes 0 < seconds <= 15, got {self.rx1_delay_s:g}")
        if not 1 <= self.max_groups <= 1 << 20:
            raise SnnError("max_groups must lie in 1..2^20")


def bind_gateway(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    bind_or_explain(sock, "udp", host, port, "--gateway")
    sock.setblocking(False)
    return sock


@dataclass(slots=True)
class _Copy:
    eui: bytes
    rx: pf.RxPacket
    heard: float                  # monotonic time its PUSH_DATA arrived (~ the end of the uplink)


@dataclass(slots=True)
class _Group:
    """The copies of one frame, and where its answer went."""

    copies: dict = field(default_factory=dict)   # eui -> its best _Copy
    open: bool = True
    sent_to: bytes | None = None
    expires: float = 0.0


def _heard_better(c: _Copy) -> tuple:
    return (c.rx.lsnr, c.rx.rssi)


def _payload_better(c: _Copy) -> tuple:
    return (c.rx.stat == 1, c.rx.lsnr, c.rx.rssi)


class GatewayMetrics:
    """Counters by gateway EUI, exported as a Prometheus collector (`EdgeCore.register_collector`)."""

    def __init__(self, allow: tuple[AllowedGateway, ...]) -> None:
        self.euis = sorted({a.eui.hex() for a in allow})
        zero = {e: 0 for e in self.euis}
        self.datagrams = {k: dict(zero) for k in ("PUSH_DATA", "PULL_DATA", "TX_ACK")}
        self.rxpk = {s: dict(zero) for s in STATS.values()}
        self.copies = {f: dict(zero) for f in COPY_FATES}
        self.txpk = dict(zero)
        self.tx_ack: dict[str, dict[str, int]] = {}
        self.refused = dict.fromkeys(REFUSALS, 0)
        self.last_seen: dict[str, float] = {}

    def ack(self, eui: str, error: str) -> None:
        error = error if error in _TX_ERRORS else "OTHER"
        self.tx_ack.setdefault(error, {e: 0 for e in self.euis})[eui] += 1

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        yield _per_eui("snn_edge_gateway_datagrams", "packet-forwarder datagrams from admitted gateways", "kind",
                       self.datagrams)
        yield _per_eui("snn_edge_gateway_rxpk", "received packets by CRC status", "stat", self.rxpk)
        yield _per_eui("snn_edge_gateway_copies", "frame copies: offered to the core (best of its group), "
                       "duplicate, late (after the window), ungrouped (no header read)", "fate", self.copies)
        fam = CounterMetricFamily("snn_edge_gateway_txpk", "replies sent as txpk", labels=["eui"])
        for eui, n in self.txpk.items():
            fam.add_metric([eui], n)
        yield fam
        yield _per_eui("snn_edge_gateway_tx_ack", "TX_ACK by error", "error", self.tx_ack)
        fam = CounterMetricFamily("snn_edge_gateway_refused", "datagrams or replies refused, by reason",
                                  labels=["reason"])
        for reason, n in self.refused.items():
            fam.add_metric([reason], n)
        yield fam
        gauge = GaugeMetricFamily("snn_edge_gateway_last_seen_seconds", "seconds since the gateway's last datagram",
                                  labels=["eui"])
        now = time.monotonic()
        for eui, at in self.last_seen.items():
            gauge.add_metric([eui], round(now - at, 3))
        yield gauge

    def snapshot(self) -> dict:
        return {"euis": self.euis, "datagrams": self.datagrams, "rxpk": self.rxpk, "copies": self.copies,
                "txpk": self.txpk, "tx_ack": self.tx_ack, "refused": self.refused}


def _per_eui(name: str, doc: str, label: str, table: dict[str, dict[str, int]]):
    """One counter family from a {label value: {eui: count}} table."""
    from prometheus_client.core import CounterMetricFamily

    fam = CounterMetricFamily(name, doc, labels=["eui", label])
    for value, by in table.items():
        for eui, n in by.items():
            fam.add_metric([eui, value], n)
    return fam


_TX_ERRORS = ("NONE", "TOO_LATE", "TOO_EARLY", "COLLISION_PACKET", "COLLISION_BEACON", "TX_FREQ", "TX_POWER",
              "GPS_UNLOCKED")


class GatewayListener:
    """Packet-forwarder datagrams in, frames into `front.offer`, replies out as txpk (on the loop)."""

    def __init__(self, front, sock: socket.socket, options: GatewayOptions, burst: int = 64) -> None:
        self.front = front
        self.sock = sock
        self.options = options
        self.allowed = {a.eui: [] for a in options.allow}
        for a in options.allow:
            self.allowed[a.eui].append(a)
        self.metrics = GatewayMetrics(options.allow)
        self.routes: dict[bytes, tuple] = {}            # eui -> address of its latest PULL_DATA
        self.groups: collections.OrderedDict = collections.OrderedDict()   # header key -> _Group
        self._tokens: collections.OrderedDict = collections.OrderedDict()  # PULL_RESP token -> eui
        self._token = 0
        self.burst = burst
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    @classmethod
    async def start(cls, front, sock: socket.socket, options: GatewayOptions) -> "GatewayListener":
        listener = cls(front, sock, options)
        listener._loop = asyncio.get_running_loop()
        listener._loop.add_reader(sock.fileno(), listener._on_readable)
        return listener

    @property
    def address(self) -> str:
        host, port = self.sock.getsockname()[:2]
        return f"udp://{host}:{port}"

    # --- datagrams in ----------------------------------------------------------------------

    def _on_readable(self) -> None:
        for _ in range(self.burst):
            try:
                data, addr = self.sock.recvfrom(pf.MAX_DATAGRAM + 1)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.debug("gateway receive error: %s", exc)
                continue
            self.datagram(data, addr)

    def datagram(self, data: bytes, addr) -> None:
        """One packet-forwarder datagram from `addr`: admitted, acknowledged, its packets offered."""
        m = self.metrics
        try:
            msg = pf.parse_message(data)
        except pf.ProtocolError:
            m.refused["malformed"] += 1
            return
        if msg.eui is None or not any(a.admits(addr[0]) for a in self.allowed.get(msg.eui, ())):
            m.refused["not_allowed"] += 1   # silence: the protocol cannot tell a gateway from a spoofer
            return
        eui = msg.eui.hex()
        m.last_seen[eui] = time.monotonic()
        if msg.kind == pf.PUSH_DATA:
            m.datagrams["PUSH_DATA"][eui] += 1
            self._send(pf.push_ack(msg.token), addr)
            m.refused["bad_rxpk"] += msg.skipped
            for rx in msg.rxpk:
                self.packet(msg.eui, rx)
        elif msg.kind == pf.PULL_DATA:
            m.datagrams["PULL_DATA"][eui] += 1
            self.routes[msg.eui] = addr
            self._send(pf.pull_ack(msg.token), addr)
        elif msg.kind == pf.TX_ACK:
            m.datagrams["TX_ACK"][eui] += 1
            if self._tokens.pop(msg.token, None) == msg.eui:
                ack = (msg.body or {}).get("txpk_ack")
                error = ack.get("error", "NONE") if isinstance(ack, dict) else "NONE"
                m.ack(eui, error if isinstance(error, str) else "OTHER")
        else:
            m.refused["unexpected"] += 1

    def packet(self, eui: bytes, rx: pf.RxPacket) -> None:
        """One received radio packet: into its frame's group (first copy: a new group)."""
        m, name = self.metrics, eui.hex()
        m.rxpk[STATS[rx.stat]][name] += 1
        now = time.monotonic()
        copy = _Copy(eui, rx, now)
        key = header_key(rx.data) or control_key(rx.data)
        if key is None:   # no header the BCH code can read: the core counts its failure
            m.copies["ungrouped"][name] += 1
            self.front.offer(rx.data, None, self._replier(_Group({eui: copy}, open=False)), eui)
            return
        self._expire(now)
        group = self.groups.get(key)
        if group is not None:
            # one fate per copy: a loser is a duplicate now, the group's best is offered at its close;
            # after the close a copy is late, but may still carry the reply if none went out yet
            known = group.copies.get(eui)
            better = known is None or _payload_better(copy) > _payload_better(known)
            if group.open:
                if known is not None:
                    m.copies["duplicate"][name] += 1
            else:
                m.copies["late"][name] += 1
            if better and group.sent_to is None:
                group.copies[eui] = copy
            return
        if len(self.groups) >= self.options.max_groups:
            m.refused["groups_full"] += 1
            oldest_key, oldest = next(iter(self.groups.items()))
            if oldest.open:
                self._close(oldest_key)
            self.groups.pop(oldest_key, None)
        group = _Group({eui: copy}, expires=now + self.options.dedup_s + self.options.rx1_delay_s + 1.0)
        self.groups[key] = group
        if self.options.dedup_s <= 0:
            self._close(key)
        else:
            self._loop.call_later(self.options.dedup_s, self._close, key)

    def _close(self, key) -> None:
        """The window of a frame ended: offer its best copy (one offer per frame)."""
        group = self.groups.get(key)
        if group is None or not group.open or self._closed:
            return
        group.open = False
        best = max(group.copies.values(), key=_payload_better)
        m = self.metrics
        for c in group.copies.values():
            m.copies["offered" if c is best else "duplicate"][c.eui.hex()] += 1
        self.front.offer(best.rx.data, None, self._replier(group), best.eui)

    def _expire(self, now: float) -> None:
        groups = self.groups
        while groups:
            key, group = next(iter(groups.items()))
            if group.open or group.expires > now:
                return
            groups.popitem(last=False)

    # --- replies out -------------------------------------------------------------------------

    def _replier(self, group: _Group):
        return lambda frame: self.reply(group, frame)

    def reply(self, group: _Group, frame: bytes) -> None:
        """The core's answer to an authenticated frame of `group`: one txpk, to the gateway that
        heard the frame best among those that delivered it and have a downlink route."""
        m = self.metrics
        if group.sent_to is not None:   # never re-targeted, never twice
            return
        routed = [c for c in group.copies.values() if c.eui in self.routes]
        if not routed:
            m.refused["no_route"] += 1
            self.front.reply_failed()
            return
        best = max(routed, key=_heard_better)
        left = best.heard + self.options.rx1_delay_s - time.monotonic()
        if left < self.options.tx_lead_s:
            m.refused["too_late"] += 1
            self.front.reply_failed()
            return
        self._token = (self._token + 1) & 0xFFFF
        txpk = pf.txpk_for(best.rx, frame, self.options.rx1_delay_s, self.options.power_dbm)
        group.sent_to = best.eui
        if self._send(pf.pull_resp(self._token, txpk), self.routes[best.eui]):
            m.txpk[best.eui.hex()] += 1
            self._tokens[self._token] = best.eui
            while len(self._tokens) > 1024:
                self._tokens.popitem(last=False)
        else:
            m.refused["send_failed"] += 1
            self.front.reply_failed()

    def _send(self, data: bytes, addr) -> bool:
        try:
            self.sock.sendto(data, addr)
            return True
        except OSError as exc:   # a full buffer or a vanished gateway: counted, never fatal
            log.debug("gateway send error: %s", exc)
            return False

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._loop is not None:
            self._loop.remove_reader(self.sock.fileno())
        self.sock.close()
