"""The channel emulator: forward frames both ways between two transports, damaging them.

    device ──► --listen URL ══ uplink: loss, bit errors, airtime ══► --to URL ──► edge
    device ◄── --listen URL ══ downlink: (optional) the same ══════ --to URL ◄── edge

UDP: every datagram is one frame. The proxy listens on --listen; for each device address it
opens its own socket towards --to (as a NAT does), so the edge's replies find their way back.

Serial (serial:// or pty:// on either side): frames are COBS-decoded on arrival, their bits are
flipped, and they are COBS-encoded again on the way out. This emulates a radio link *behind* the
UARTs (device UART -> radio -> radio -> edge UART): the byte framing stays intact and only the
frame contents suffer, which is what a LoRa/BLE modem hands to its host. Flipping bits in the raw
COBS stream instead would mostly destroy framing and measure the UART decoder, not the codec.
With a stream transport on --to, all devices share it and replies go to the last device heard.

With a link model (--link lora-sf7 ...) each frame is delayed by its time on air and frames in
one direction queue behind each other, as on a half-duplex radio.
"""
from __future__ import annotations

import heapq
import itertools
import json
import selectors
import signal
import sys
import threading
import time

import numpy as np

from channel.bit_errors import ErrorModel
from channel.emulator import LinkDirection
from channel.links import Link
from channel.loss import LossModel
from channel.transports import Transport, open_transport
from snn.errors import SnnError

__all__ = ["ChannelProxy"]


class ChannelProxy:
    """Forward frames between `listen_url` (device side) and `to_url` (edge side)."""

    def __init__(self, listen_url: str, to_url: str, *, uplink: ErrorModel | None,
                 downlink: ErrorModel | None = None, uplink_loss: LossModel | None = None,
                 downlink_loss: LossModel | None = None, link: Link | None = None,
                 delay_s: float = 0.0, seed: int | None = None, duty_cycle: bool = False) -> None:
        self.listen_url, self.to_url = listen_url, to_url
        self.link = link
        ss = np.random.SeedSequence(seed)
        rng_up, rng_down = (np.random.default_rng(s) for s in ss.spawn(2))
        self.up = LinkDirection(uplink, uplink_loss, link, rng_up, delay_s=delay_s, duty_cycle=duty_cycle)
        self.down = LinkDirection(downlink, downlink_loss, link, rng_down, delay_s=delay_s,
                                  duty_cycle=duty_cycle)
        self._sel = selectors.DefaultSelector()
        self._pending: list = []  # heap (due, seq, transport, data, addr)
        self._seq = itertools.count()
        self._stop = threading.Event()
        self._upstreams: dict = {}  # device addr -> transport towards the edge
        self._last_device = None
        self.started = 0.0
        for url in (listen_url, to_url):
            if str(url).lower().startswith("sim:"):
                raise SnnError(f"{url}: sim:// links live inside one process; the proxy joins "
                               "processes, so use udp://, serial:// or pty://")
        self.listener = open_transport(listen_url, listen=True)
        self._sel.register(self.listener, selectors.EVENT_READ, ("listen", None))
        self._shared_upstream: Transport | None = None
        try:
            if not to_url.lower().startswith("udp:"):
                self._shared_upstream = open_transport(to_url)
                self._sel.register(self._shared_upstream, selectors.EVENT_READ, ("up", None))
            else:
                open_transport(to_url).close()  # validate the URL now, not at the first frame
        except BaseException:
            self.listener.close()
            raise

    # -- lifecycle
    @property
    def listen_address(self) -> str:
        return self.listener.address

    @property
    def to_address(self) -> str:
        return self._shared_upstream.address if self._shared_upstream else self.to_url

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self._sel.close()
        for t in [self.listener, *self._upstreams.values()]:
            t.close()
        if self._shared_upstream is not None:
            self._shared_upstream.close()

    def summary(self) -> dict:
        return {
            "listen": self.listen_url, "listen_address": self.listen_address,
            "to": self.to_url, "to_address": self.to_address,
            "uplink_model": self.up.model.describe() if self.up.model else "clean",
            "downlink_model": self.down.model.describe() if self.down.model else "clean",
            "link": self.link.name if self.link else None,
            "duration_s": time.monotonic() - self.started if self.started else 0.0,
            "devices": max(len(self._upstreams), 1 if self._last_device is not None else 0),
            "uplink": self.up.stats.as_dict(), "downlink": self.down.stats.as_dict(),
            "framing_errors": sum(getattr(t, "dropped", 0) for t in self._all_transports()),
        }

    def _all_transports(self):
        yield self.listener
        yield from self._upstreams.values()
        if self._shared_upstream is not None:
            yield self._shared_upstream

    # -- forwarding
    def _upstream_for(self, device_addr) -> Transport:
        if self._shared_upstream is not None:
            return self._shared_upstream
        t = self._upstreams.get(device_addr)
        if t is None:
            t = open_transport(self.to_url)
            self._upstreams[device_addr] = t
            self._sel.register(t, selectors.EVENT_READ, ("up", device_addr))
        return t

    def _forward(self, direction: LinkDirection, data: bytes, target: Transport, addr) -> None:
        out, due = direction.transmit(data)
        if out is None:
            return
        if due <= time.monotonic():
            self._deliver(direction, target, out, addr)
        else:
            heapq.heappush(self._pending, (due, next(self._seq), direction, target, out, addr))

    def _deliver(self, direction: LinkDirection, target: Transport, data: bytes, addr) -> None:
        try:
            target.send(data, addr)
            direction.delivered()
        except OSError:
            pass  # a vanished peer must not stop the proxy

    def _on_readable(self, transport: Transport, role: str, device_addr) -> None:
        # drain everything that is ready now (stream transports may hold several frames)
        for _ in range(256):
            got = transport.recv(0)
            if got is None:
                return
            data, addr = got
            if role == "listen":
                self._last_device = addr
                self._forward(self.up, data, self._upstream_for(addr), None)
            else:
                target_addr = device_addr if device_addr is not None else self._last_device
                if target_addr is None and not self.listener.stream:
                    continue  # nobody to answer yet
                self._forward(self.down, data, self.listener, target_addr)

    def run(self, *, stats_interval: float = 1.0, out=None, on_ready=None) -> dict:
        """Forward until stop() or Ctrl-C; print live counters to `out` every stats_interval s."""
        out = sys.stderr if out is None else out
        self.started = time.monotonic()
        next_stats = self.started + stats_interval if stats_interval > 0 else float("inf")
        live_tty = hasattr(out, "isatty") and out.isatty()
        if on_ready is not None:
            on_ready(self)
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                while self._pending and self._pending[0][0] <= now:
                    _, _, direction, target, data, addr = heapq.heappop(self._pending)
                    self._deliver(direction, target, data, addr)
                timeout = 0.2
                if self._pending:
                    timeout = min(timeout, max(0.0, self._pending[0][0] - now))
                timeout = min(timeout, max(0.0, next_stats - now))
                for key, _ in self._sel.select(timeout):
                    role, device_addr = key.data
                    self._on_readable(key.fileobj, role, device_addr)
                if time.monotonic() >= next_stats:
                    line = self.counters_line()
                    out.write(("\r" + line + "\x1b[K") if live_tty else line + "\n")
                    out.flush()
                    next_stats += stats_interval
        except KeyboardInterrupt:
            pass
        finally:
            if live_tty and stats_interval > 0:
                out.write("\n")
        return self.summary()

    def counters_line(self) -> str:
        u, d = self.up.stats, self.down.stats
        return (f"up {u.frames} frames, {u.bits_flipped} bits flipped, BER {u.measured_ber:.3g}, "
                f"{u.dropped} dropped | down {d.frames} frames, {d.bits_flipped} bits flipped, "
                f"BER {d.measured_ber:.3g}, {d.dropped} dropped")


def format_summary(s: dict) -> str:
    rows = [("", "uplink", "downlink")]
    for key, label in (("frames", "frames in"), ("delivered", "delivered"), ("dropped", "dropped"),
                       ("bits", "bits"), ("bits_flipped", "bits flipped")):
        rows.append((label, str(s["uplink"][key]), str(s["downlink"][key])))
    rows.append(("measured BER", f"{s['uplink']['measured_ber']:.4g}", f"{s['downlink']['measured_ber']:.4g}"))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"channel proxy summary ({s['duration_s']:.1f} s, {s['listen_address']} -> {s['to_address']})",
             f"  uplink model: {s['uplink_model']}", f"  downlink model: {s['downlink_model']}"]
    if s.get("link"):
        lines.append(f"  link: {s['link']} (frames delayed by time on air)")
    for r in rows:
        lines.append("  " + "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))))
    if s.get("framing_errors"):
        lines.append(f"  COBS framing errors: {s['framing_errors']}")
    return "\n".join(lines)


def install_sigterm(proxy: ChannelProxy) -> None:
    """Ctrl-C (SIGINT), SIGTERM and SIGHUP stop the proxy cleanly: it finishes the loop turn,
    closes its ports and prints its summary. A handler (not KeyboardInterrupt) so a signal that
    lands between two statements cannot skip the cleanup."""
    install_stop_signals(proxy.stop)


def install_stop_signals(stop) -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if sig is not None:
            signal.signal(sig, lambda *_: stop())


def write_json(path: str, data: dict) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")
