"""A UDP balancer that keeps each device on one front: `snn edge balance`.

Fronts hold per-device state (fragments waiting for reassembly, BER estimates, replay windows),
so all datagrams of a device must reach the same front. The balancer reads the device id the
first header block claims (bytes 0-1 of a DATA frame, docs/PROTOCOL.md §3.1: unverified, which
is enough to route; the front authenticates, and a frame whose first copy the link damaged may
reach another front, which refuses it silently) and picks the front by rendezvous hashing (the
highest hash of (front, device id)), so a device keeps its front while the list stays the same
and only the devices of a removed front move.

Replies: each (client address, front) pair gets its own upstream socket (NAT style; a gateway
that relays many devices has one per front its devices hash to), and what comes back on it is
sent to that client. At most `max_clients` such sockets (least recently
used closed first) and idle ones close after `idle_s`: bounded state under any load.
"""
from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict


def claimed_device(data: bytes) -> int:
    """The device id a DATA frame's first header block claims (0 for a runt)."""
    return int.from_bytes(data[:2], "big") if len(data) >= 2 else 0


def pick(device_id: int, backends: list[tuple[str, int]]) -> tuple[str, int]:
    """Rendezvous hashing: the backend with the highest hash of (backend, device id)."""
    def score(b):
        return hashlib.blake2b(f"{b[0]}:{b[1]}/{device_id}".encode(), digest_size=8).digest()
    return max(backends, key=score)


class _Upstream(asyncio.DatagramProtocol):
    """One client's socket to its front: replies go back to the client."""

    def __init__(self, balancer: "UdpBalancer", client) -> None:
        self.balancer, self.client = balancer, client
        self.transport: asyncio.DatagramTransport | None = None
        self.last = time.monotonic()

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        self.last = time.monotonic()
        self.balancer.replies += 1
        self.balancer.listen.sendto(data, self.client)


class UdpBalancer(asyncio.DatagramProtocol):
    def __init__(self, backends: list[tuple[str, int]], max_clients: int = 4096, idle_s: float = 60.0) -> None:
        if not backends:
            raise ValueError("at least one backend")
        self.backends = backends
        self.max_clients = max_clients
        self.idle_s = idle_s
        self.listen: asyncio.DatagramTransport | None = None
        self.clients: OrderedDict = OrderedDict()   # (client, front) -> _Upstream, or datagrams held while it opens
        self.forwarded = self.replies = self.evicted = 0

    def connection_made(self, transport) -> None:
        self.listen = transport

    def datagram_received(self, data: bytes, client) -> None:
        backend = pick(claimed_device(data), self.backends)
        key = (client, backend)
        up = self.clients.get(key)
        if isinstance(up, _Upstream) and up.transport is not None:
            self.clients.move_to_end(key)
            up.last = time.monotonic()
            up.transport.sendto(data)
            self.forwarded += 1
            return
        if up is None:   # a new (client, front): open a socket to that front
            self.clients[key] = pending = []
            asyncio.get_running_loop().create_task(self._open(key, pending))
            while len(self.clients) > self.max_clients:
                _, old = self.clients.popitem(last=False)
                self.evicted += 1
                if isinstance(old, _Upstream) and old.transport is not None:
                    old.transport.close()
            up = pending
        if isinstance(up, list) and len(up) < 64:   # hold what arrives while the socket opens
            up.append(data)

    async def _open(self, key, pending: list) -> None:
        client, backend = key
        loop = asyncio.get_running_loop()
        _, up = await loop.create_datagram_endpoint(lambda: _Upstream(self, client), remote_addr=backend)
        if self.clients.get(key) is not pending:     # evicted meanwhile
            up.transport.close()
            return
        self.clients[key] = up
        for data in pending:
            up.transport.sendto(data)
            self.forwarded += 1

    def expire(self) -> None:
        now = time.monotonic()
        for key, up in list(self.clients.items()):
            if isinstance(up, _Upstream) and now - up.last > self.idle_s:
                del self.clients[key]
                up.transport.close()


async def serve_balancer(listen: tuple[str, int], backends: list[tuple[str, int]], max_clients: int = 4096,
                         idle_s: float = 60.0, on_ready=None, stop: asyncio.Event | None = None) -> UdpBalancer:
    """Run until `stop` is set (or forever)."""
    from edge.listeners import bind_udp

    loop = asyncio.get_running_loop()
    sock = bind_udp(*listen)
    balancer = UdpBalancer(backends, max_clients, idle_s)
    transport, _ = await loop.create_datagram_endpoint(lambda: balancer, sock=sock)
    if on_ready is not None:
        on_ready("udp://%s:%d" % sock.getsockname()[:2])
    stop = stop or asyncio.Event()
    try:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=min(5.0, idle_s))
            except asyncio.TimeoutError:
                balancer.expire()
    finally:
        transport.close()
        for up in balancer.clients.values():
            if isinstance(up, _Upstream) and up.transport is not None:
                up.transport.close()
    return balancer
