"""sim://: an in-process link for benchmarks and tests, through the channel emulator."""
from __future__ import annotations

import heapq
import itertools
import queue
import threading
import time

import numpy as np

from channel.emulator import LinkDirection
from channel.transports.base import Transport, _deadline, _remaining
from snn.errors import SnnError


class _SimHub:
    def __init__(self, name: str) -> None:
        self.name = name
        self.server: SimTransport | None = None
        self.inbox: queue.Queue = queue.Queue()  # frames for the server: (due, data, client id)
        self.clients: dict[int, SimTransport] = {}
        self.ids = itertools.count(1)


_HUBS: dict[str, _SimHub] = {}
_HUBS_LOCK = threading.Lock()


class SimTransport(Transport):
    """In-process endpoint; see the module docstring."""

    stream = False

    def __init__(self, url: str, name: str, *, listen: bool, params: dict) -> None:
        from channel.bit_errors import make_error_model
        from channel.links import get_link
        from channel.loss import make_loss_model

        self.url, self.name, self.listen = url, name, listen
        self._inbox: queue.Queue = queue.Queue()
        self._held: list = []  # heap of (due, seq, data, addr) not yet due
        self._seq = itertools.count()
        self._closed = False
        link = get_link(params["link"]) if params.get("link") else None
        self.mtu = int(params["mtu"]) if params.get("mtu") else (link.mtu if link else None)
        seed = params.get("seed")
        ss = np.random.SeedSequence(None if seed is None else int(seed))
        rng_up, rng_down = (np.random.default_rng(s) for s in ss.spawn(2))
        model = params.get("model", "iid")
        burst = float(params["burst"]) if params.get("burst") else None
        up_model = down_model = None
        if params.get("ber") or params.get("snr_db"):
            kw = {"snr_db": float(params["snr_db"])} if params.get("snr_db") else {}
            if "sf" in params:
                kw["sf"] = int(params["sf"])
            ber = float(params["ber"]) if params.get("ber") else None
            if model == "lora-phy":  # the bit-true LoRa PHY, both directions (downlink_snr_db: else the same)
                kw.update({k: params[k] for k in ("cr", "offset_bins") if k in params})
                up_model = make_error_model(model, ber, burst, **kw)
                kw["snr_db"] = float(params.get("downlink_snr_db", kw.get("snr_db", 0.0)))
                down_model = make_error_model(model, None, None, **kw)
            else:
                up_model = make_error_model(model, ber, burst, **kw)
        if params.get("downlink_ber"):
            down_model = make_error_model(model, float(params["downlink_ber"]), burst)
        drop = float(params.get("drop") or 0.0)
        drop_burst = float(params["drop_burst"]) if params.get("drop_burst") else None
        up_loss = make_loss_model(drop, drop_burst) if drop else None
        self.uplink = LinkDirection(up_model, up_loss, link, rng_up)
        self.downlink = LinkDirection(down_model, None, link, rng_down)
        with _HUBS_LOCK:
            self._hub = _HUBS.setdefault(name, _SimHub(name))
            if listen:
                if self._hub.server is not None and not self._hub.server._closed:
                    raise SnnError(f"{url}: a sim server named {name!r} is already listening in this "
                                   "process; close it or choose another name")
                self._hub.server = self
                self._inbox = self._hub.inbox
                self.id = 0
            else:
                self.id = next(self._hub.ids)
                self._hub.clients[self.id] = self

    @property
    def address(self) -> str:
        return f"sim://{self.name}"

    def stats(self) -> dict:
        return {"uplink": self.uplink.stats.as_dict(), "downlink": self.downlink.stats.as_dict()}

    def send(self, frame, addr=None) -> None:
        data = self._check_mtu(frame)
        if self.listen:
            client = self._hub.clients.get(addr if addr is not None else -1)
            if client is None:
                raise ValueError(f"{self.url}: send() on a listening sim transport needs the addr "
                                 "recv() returned, of a client still open")
            out, due = client.downlink.transmit(data)
            if out is not None:
                client._inbox.put((due, out, self.address))
                client.downlink.delivered()
        else:
            out, due = self.uplink.transmit(data)
            if out is None:
                return
            self.uplink.delivered()
            if self.name == "loop":
                self._inbox.put((due, out, self.address))
            else:
                self._hub.inbox.put((due, out, self.id))

    def recv(self, timeout=None):
        deadline = _deadline(timeout)
        while True:
            try:  # move what arrived into the due-time heap, then deliver the earliest due
                while True:
                    due, data, addr = self._inbox.get_nowait()
                    heapq.heappush(self._held, (due, next(self._seq), data, addr))
            except queue.Empty:
                pass
            now = time.monotonic()
            if self._held and self._held[0][0] <= now:
                _, _, data, addr = heapq.heappop(self._held)
                return data, addr
            wait = _remaining(deadline)
            if wait is not None and wait <= 0:
                return None
            if self._held:
                until_due = self._held[0][0] - now
                wait = until_due if wait is None else min(wait, until_due)
            try:
                due, data, addr = self._inbox.get(timeout=wait)
                heapq.heappush(self._held, (due, next(self._seq), data, addr))
            except queue.Empty:
                pass

    def close(self) -> None:
        self._closed = True
        with _HUBS_LOCK:
            hub = self._hub
            if self.listen and hub.server is self:
                hub.server = None
            hub.clients.pop(getattr(self, "id", -1), None)
            if hub.server is None and not hub.clients and _HUBS.get(hub.name) is hub:
                del _HUBS[hub.name]
