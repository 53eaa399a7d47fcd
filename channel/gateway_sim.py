"""A LoRa radio and packet-forwarder gateways, emulated: a device's frames reach an edge as a real
gateway would hand them over (Semtech UDP protocol v2, `channel.semtech_udp`).

    device ──udp──► --listen (the air) ──► each gateway: its own channel (LoRa PHY at its SNR,
        loss), the device radio's CRC checked (stat 1 / -1) or absent (stat 0) ──PUSH_DATA──► edge
    device ◄──────── the air ◄── the gateway the edge picked: PULL_RESP txpk, emitted at its tmst
        (the RX1 window), through that gateway's downlink channel, TX_ACK back

Each gateway has its own UDP socket (its "host"), its own 8-byte EUI, its own free-running µs
counter (`tmst`, a random offset per gateway, as on real concentrators), sends PULL_DATA every
`keepalive_s` and acknowledges each PULL_RESP with TX_ACK (TOO_LATE when its tmst has passed,
TOO_EARLY when it is more than 3 s ahead). A txpk is "emitted" to every device heard in the last
5 s (the air is shared; devices keep only what authenticates). Counters in `summary()`.
"""
from __future__ import annotations

import heapq
import itertools
import random
import selectors
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from channel import semtech_udp as pf
from channel.bit_errors import ErrorModel
from channel.loss import LossModel
from channel.transports import open_transport

__all__ = ["GatewaySpec", "GatewaySim", "crc16"]

FREQ_MHZ = 868.1
TOO_EARLY_S = 3.0
HEARD_S = 5.0


def crc16(data: bytes) -> int:
    """CRC-16/CCITT (poly 0x1021, init 0): the LoRa payload CRC's polynomial."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


@dataclass
class GatewaySpec:
    """One emulated gateway: its EUI, its channels and the SNR it reports (lsnr)."""

    eui: bytes
    uplink: ErrorModel | None = None
    downlink: ErrorModel | None = None
    loss: LossModel | None = None
    snr_db: float = 0.0            # mean lsnr it reports (±0.5 dB jitter)
    rssi_dbm: float = -110.0
    stats: dict = field(default_factory=lambda: {"rx": 0, "lost": 0, "stat_ok": 0, "stat_fail": 0, "stat_none": 0,
                                                 "push_acks": 0, "pull_acks": 0, "txpk": 0, "too_late": 0,
                                                 "too_early": 0, "emitted": 0, "rx1_exact": 0})
    uplink_tmst: list = field(default_factory=list)   # tmst of the last uplinks it heard


class GatewaySim:
    """The air and its gateways between `listen_url` (devices) and an edge's gateway port."""

    def __init__(self, listen_url: str, server: tuple[str, int], gateways: list[GatewaySpec], *, sf: int = 7,
                 bw_khz: int = 125, cr: str = "4/5", device_crc: bool = True, keepalive_s: float = 1.0,
                 seed: int | None = None, rx1_delay_s: float = 1.0) -> None:
        self.server = server
        self.rx1_us = int(round(rx1_delay_s * 1e6))
        self.gateways = gateways
        self.datr, self.codr = pf.lora_datr(sf, bw_khz), cr
        self.device_crc = device_crc
        self.keepalive_s = keepalive_s
        self.rng = np.random.default_rng(seed)
        self._rand = random.Random(seed)
        self.air = open_transport(listen_url, listen=True)
        self._sel = selectors.DefaultSelector()
        self._sel.register(self.air, selectors.EVENT_READ, None)
        self._socks = []
        for g in gateways:
            t = open_transport(f"udp://{server[0]}:{server[1]}")
            self._socks.append(t)
            self._sel.register(t, selectors.EVENT_READ, g)
        self._clock0 = {g.eui: self._rand.randrange(1 << 32) for g in gateways}
        self._tokens = itertools.count(self._rand.randrange(1 << 16))
        self._heard: dict = {}                 # device address -> last time heard
        self._queue: list = []                 # (due monotonic, seq, gateway, data)
        self._seq = itertools.count()
        self._stop = threading.Event()
        self.unknown = 0                       # datagrams from the server that are not the protocol
        self.uplinks = 0

    @property
    def listen_address(self) -> str:
        return self.air.address

    def tmst(self, g: GatewaySpec, at: float | None = None) -> int:
        """Gateway g's internal µs counter at monotonic time `at`."""
        return (self._clock0[g.eui] + int((time.monotonic() if at is None else at) * 1e6)) & 0xFFFFFFFF

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self._sel.close()
        for t in [self.air, *self._socks]:
            t.close()

    # -- uplink
    def _uplink(self, frame: bytes, device) -> None:
        now = time.monotonic()
        self.uplinks += 1
        self._heard[device] = now
        sent = frame + (crc16(frame).to_bytes(2, "big") if self.device_crc else b"")
        for g, sock in zip(self.gateways, self._socks):
            g.stats["rx"] += 1
            if g.loss is not None and g.loss.drop(1, self.rng)[0]:
                g.stats["lost"] += 1
                continue
            got = sent
            if g.uplink is not None and g.uplink.ber > 0:
                out, _ = g.uplink.corrupt(np.frombuffer(sent, np.uint8), self.rng)
                got = out.tobytes()
            if self.device_crc:
                data, crc = got[:-2], int.from_bytes(got[-2:], "big")
                stat = 1 if crc16(data) == crc else -1
            else:
                data, stat = got, 0
            g.stats["stat_ok" if stat == 1 else "stat_fail" if stat == -1 else "stat_none"] += 1
            g.uplink_tmst.append(self.tmst(g, now))
            del g.uplink_tmst[:-64]
            rx = pf.RxPacket(data=data, stat=stat, tmst=g.uplink_tmst[-1], freq=FREQ_MHZ, datr=self.datr,
                             codr=self.codr, rssi=g.rssi_dbm + self._rand.uniform(-2, 2),
                             lsnr=round(g.snr_db + self._rand.uniform(-0.5, 0.5), 1), chan=0)
            sock.send(pf.push_data(next(self._tokens) & 0xFFFF, g.eui, [rx]))

    # -- downlink
    def _from_server(self, g: GatewaySpec, sock, data: bytes) -> None:
        try:
            msg = pf.parse_message(data)
        except pf.ProtocolError:
            self.unknown += 1
            return
        if msg.kind == pf.PUSH_ACK:
            g.stats["push_acks"] += 1
        elif msg.kind == pf.PULL_ACK:
            g.stats["pull_acks"] += 1
        elif msg.kind == pf.PULL_RESP:
            try:
                txpk, payload = pf.parse_txpk(msg)
            except pf.ProtocolError:
                self.unknown += 1
                return
            g.stats["txpk"] += 1
            now = time.monotonic()
            ahead_us = ((int(txpk.get("tmst", 0)) - self.tmst(g, now) + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)
            if txpk.get("imme"):
                ahead_us = 0
            if ahead_us < 0:
                g.stats["too_late"] += 1
                sock.send(pf.tx_ack(msg.token, g.eui, "TOO_LATE"))
                return
            if ahead_us > TOO_EARLY_S * 1e6:
                g.stats["too_early"] += 1
                sock.send(pf.tx_ack(msg.token, g.eui, "TOO_EARLY"))
                return
            sock.send(pf.tx_ack(msg.token, g.eui, "NONE"))
            heapq.heappush(self._queue, (now + ahead_us / 1e6, next(self._seq), g, payload))
            want = int(txpk.get("tmst", 0))
            # scheduled exactly RX1 after an uplink this gateway heard (its own tmst clock)?
            g.stats["rx1_exact"] += any(((want - u) & 0xFFFFFFFF) == self.rx1_us for u in g.uplink_tmst)
        else:
            self.unknown += 1

    def _emit(self, g: GatewaySpec, payload: bytes) -> None:
        g.stats["emitted"] += 1
        now = time.monotonic()
        data = payload
        if g.downlink is not None and g.downlink.ber > 0:
            out, _ = g.downlink.corrupt(np.frombuffer(payload, np.uint8), self.rng)
            data = out.tobytes()
        for device, heard in list(self._heard.items()):
            if now - heard > HEARD_S:
                del self._heard[device]
                continue
            try:
                self.air.send(data, device)
            except OSError:
                pass

    def run(self, on_ready=None) -> dict:
        next_pull = 0.0
        if on_ready is not None:
            on_ready(self)
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_pull:
                for g, sock in zip(self.gateways, self._socks):
                    sock.send(pf.pull_data(next(self._tokens) & 0xFFFF, g.eui))
                next_pull = now + self.keepalive_s
            while self._queue and self._queue[0][0] <= now:
                _, _, g, payload = heapq.heappop(self._queue)
                self._emit(g, payload)
            timeout = min(0.1, max(0.0, next_pull - now))
            if self._queue:
                timeout = min(timeout, max(0.0, self._queue[0][0] - now))
            for key, _ in self._sel.select(timeout):
                transport, g = key.fileobj, key.data
                for _ in range(64):
                    got = transport.recv(0)
                    if got is None:
                        break
                    data, addr = got
                    if g is None:
                        self._uplink(data, addr)
                    else:
                        self._from_server(g, transport, data)
        return self.summary()

    def summary(self) -> dict:
        gws = {}
        for g in self.gateways:
            gws[g.eui.hex()] = dict(g.stats)
        return {"uplinks": self.uplinks, "unknown_from_server": self.unknown, "gateways": gws,
                "txpk": sum(g.stats["txpk"] for g in self.gateways),
                "emitted": sum(g.stats["emitted"] for g in self.gateways)}


# --------------------------------------------------------------------------- snn channel gateways

DEFAULT_EUI = 0xAA555A0000000001
NOISE_FLOOR_DBM = -117.0    # thermal noise in 125 kHz (-174 + 51) plus a 6 dB noise figure


def add_parser(sub) -> None:
    """`snn channel gateways`: the subcommand's flags."""
    g = sub.add_parser("gateways", help="emulate LoRa gateways (Semtech UDP packet forwarder) in front of an edge",
                       description="Devices send their frames to --listen; every emulated gateway hears each one "
                                   "through its own LoRa PHY channel at its own SNR and forwards it, CRC status "
                                   "and all, to the edge's --gateway address (PUSH_DATA); replies the edge sends "
                                   "as txpk (PULL_RESP) are emitted at their tmst to the devices.")
    g.add_argument("--listen", required=True, metavar="URL", help="where devices send, e.g. udp://127.0.0.1:9200")
    g.add_argument("--to", required=True, metavar="HOST:PORT", help="the edge's --gateway address")
    g.add_argument("--gateways", type=int, default=1, metavar="N", help="how many gateways hear the devices")
    g.add_argument("--eui", action="append", default=None, metavar="HEX",
                   help="a gateway's EUI (repeat per gateway; default aa555a0000000001, ...02, ...)")
    g.add_argument("--snr-db", default="-7.5", metavar="DB[,DB...]",
                   help="each gateway's SNR, comma-separated, one value for all (default -7.5: the SF7 limit)")
    g.add_argument("--sf", type=int, default=7, help="spreading factor (default 7)")
    g.add_argument("--cr", default="4/5", metavar="4/5..4/8", help="coding rate (default 4/5)")
    g.add_argument("--offset-bins", type=float, default=0.0, metavar="E",
                   help="residual frequency/timing offset in FFT bins (default 0)")
    g.add_argument("--no-crc", action="store_true",
                   help="the device radio sends no payload CRC: every rxpk has stat 0 (default: CRC on, "
                        "bad ones forwarded with stat -1)")
    g.add_argument("--drop", type=float, default=0.0, metavar="P", help="each gateway misses a packet with P")
    g.add_argument("--keepalive", type=float, default=1.0, metavar="S", help="PULL_DATA interval (default 1 s)")
    g.add_argument("--seed", type=int, default=None,
                   help="seed for reproducible errors (default: a fresh seed each run)")
    g.add_argument("--duration", type=float, default=None, metavar="S",
                   help="stop after S seconds (default: until Ctrl-C)")
    g.add_argument("--ready-json", default=None, metavar="PATH",
                   help="write the listen address here when ready (default: not written)")
    g.add_argument("--json", default=None, metavar="PATH", help="write the summary here at exit (default: not written)")


def build_from_args(args) -> GatewaySim:
    """The simulator of `snn channel gateways` (SnnError on bad flags)."""
    from channel.bit_errors import make_error_model
    from channel.loss import make_loss_model
    from snn.errors import SnnError

    if not 1 <= args.gateways <= 64:
        raise SnnError(f"--gateways takes 1..64, got {args.gateways}")
    try:
        snrs = [float(v) for v in str(args.snr_db).split(",") if v.strip()]
    except ValueError:
        raise SnnError(f"--snr-db takes comma-separated dB values, got {args.snr_db!r}") from None
    if len(snrs) == 1:
        snrs *= args.gateways
    if len(snrs) != args.gateways:
        raise SnnError(f"--snr-db gives {len(snrs)} values for {args.gateways} gateways")
    euis = [pf.parse_eui(e) for e in args.eui] if args.eui else \
        [(DEFAULT_EUI + i).to_bytes(8, "big") for i in range(args.gateways)]
    if len(euis) != args.gateways or len(set(euis)) != len(euis):
        raise SnnError(f"--eui: give {args.gateways} distinct EUIs, one per gateway")
    host, sep, port = str(args.to).removeprefix("udp://").rpartition(":")
    if not sep or not port.isdigit():
        raise SnnError(f"--to takes HOST:PORT (the edge's --gateway address), got {args.to!r}")
    kw = {"sf": args.sf, "cr": args.cr, "offset_bins": args.offset_bins}
    specs = [GatewaySpec(eui, uplink=make_error_model("lora-phy", snr_db=s, **kw),
                         downlink=make_error_model("lora-phy", snr_db=s, **kw),
                         loss=make_loss_model(args.drop) if args.drop else None, snr_db=s,
                         rssi_dbm=NOISE_FLOOR_DBM + s)
             for eui, s in zip(euis, snrs)]
    return GatewaySim(args.listen, (host.strip("[]") or "127.0.0.1", int(port)), specs, sf=args.sf, cr=args.cr,
                      device_crc=not args.no_crc, keepalive_s=args.keepalive, seed=args.seed)


def run_from_args(args) -> int:
    import json
    import sys

    from channel.proxy import install_stop_signals, write_json

    sim = build_from_args(args)
    install_stop_signals(sim.stop)
    if args.duration is not None:
        timer = threading.Timer(args.duration, sim.stop)
        timer.daemon = True
        timer.start()
    ready = {"listen": sim.listen_address, "gateways": [g.eui.hex() for g in sim.gateways]}

    def on_ready(_sim) -> None:
        if args.ready_json:
            with open(args.ready_json, "w", encoding="utf-8") as fh:
                json.dump(ready, fh)
        print(f"gateways ready: listen={sim.listen_address} to=udp://{sim.server[0]}:{sim.server[1]}", flush=True)
        print(f"snn channel gateways: devices -> {sim.listen_address}; {len(sim.gateways)} gateway(s) "
              f"{', '.join(ready['gateways'])} -> udp://{sim.server[0]}:{sim.server[1]}", file=sys.stderr, flush=True)

    try:
        summary = sim.run(on_ready)
    finally:
        sim.close()
    print(json.dumps(summary, indent=1), flush=True)
    if args.json:
        write_json(args.json, summary)
    return 0
