"""A real `snn edge serve` (the shipped bundle, keyed, loopback, ephemeral ports) for the attacks of
issue 21, and the device and attacker sockets around it. Not a conftest: plain helpers."""
from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import httpx

from codec.wire.edge_state import EdgeState, edge_state_path, write_edge_state
from codec.wire.frame import encode_inference, parse_reply
from codec.wire.keys import DeviceKey, write_keys
from snn.errors import FrameError

ROOT = Path(__file__).resolve().parents[2]
DEVICES = (1, 2, 3, 4)


def key_for(dev: int) -> bytes:
    return bytes((dev * 37 + i * 11) % 251 for i in range(16))


def provision(folder: Path) -> Path:
    keys = folder / "keys.json"
    write_keys(keys, [DeviceKey(d, key_for(d), None) for d in DEVICES], force=True)
    write_edge_state(edge_state_path(keys), EdgeState())
    return keys


class Edge:
    """One `snn edge serve` process; `start()` again after `kill()` is a restart on new ports."""

    def __init__(self, folder: Path, *extra: str) -> None:
        self.folder, self.extra = folder, extra
        self.keys = provision(folder) if not (folder / "keys.json").exists() else folder / "keys.json"
        self.proc: subprocess.Popen | None = None
        self.runs = 0

    def start(self, *more: str, expect_ready: bool = True, timeout: float = 120.0) -> "Edge":
        self.runs += 1
        ready = self.folder / f"ready-{self.runs}.json"
        self.log_path = self.folder / f"edge-{self.runs}.log"
        cmd = [sys.executable, "-m", "snn", "edge", "serve", "--keys", str(self.keys), "--http", "127.0.0.1:0",
               "--udp", "127.0.0.1:0", "--ready-json", str(ready), *self.extra, *more]
        self.proc = subprocess.Popen(cmd, stdout=open(self.log_path, "w"), stderr=subprocess.STDOUT, cwd=ROOT)
        if not expect_ready:
            self.proc.wait(timeout)
            return self
        t0 = time.monotonic()
        while not (ready.exists() and ready.read_text().strip().endswith("}")):
            if self.proc.poll() is not None or time.monotonic() - t0 > timeout:
                raise RuntimeError("edge did not start:\n" + self.log())
            time.sleep(0.05)
        self.addr = json.loads(ready.read_text())
        host, port = self.addr["udp"][len("udp://"):].rsplit(":", 1)
        self.udp = (host, int(port))
        self.http = self.addr["http"]
        self.token = Path(self.addr["operator_token_file"]).read_text().strip()
        self.codec = self.operator("/v1/codecs").json()[0]
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def operator(self, path: str) -> httpx.Response:
        return httpx.get(self.http + path, headers={"Authorization": f"Bearer {self.token}"}, timeout=10)

    def rejects(self, *reasons: str) -> float:
        total = 0.0
        for line in self.operator("/metrics").text.splitlines():
            if line.startswith("snn_edge_rejects_total{") and line.split('"')[1] in reasons:
                total += float(line.rsplit(" ", 1)[1])
        return total

    def stop(self) -> int:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode if self.proc else 0

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


class Device:
    """A keyed device's frames (fresh counters it chooses) and its socket."""

    def __init__(self, edge: Edge, device_id: int = 1, first_counter: int = 1) -> None:
        self.edge, self.id, self.counter = edge, device_id, first_counter
        self.key = key_for(device_id)
        self.fp = bytes.fromhex(edge.codec["fingerprint"])
        self.payload = bytes(int(edge.codec["payload_bytes"]))
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.pending: dict[int, int] = {}

    @property
    def address(self) -> tuple[str, int]:
        return self.sock.getsockname()

    def frames(self, mtu: int = 1400, long_counter: bool = False, counter: int | None = None) -> list[bytes]:
        c = self.counter if counter is None else counter
        if counter is None:
            self.counter += 1
        self.pending[c & 0xFFFF] = c
        return encode_inference(self.payload, key=self.key, device_id=self.id, fingerprint=self.fp, counter=c,
                                mtu=mtu, long_counter=long_counter)

    def frame(self, **kw) -> bytes:
        return self.frames(**kw)[0]

    def send(self, data: bytes, to=None) -> None:
        self.sock.sendto(data, to or self.edge.udp)

    def replies(self, timeout: float = 2.0, want: int | None = None) -> list:
        """Authenticated REPLY/ERROR frames received within `timeout` (or until `want` of them);
        anything that does not open under this device's key raises."""
        out, end = [], time.monotonic() + timeout
        while time.monotonic() < end and (want is None or len(out) < want):
            self.sock.settimeout(max(0.01, end - time.monotonic()))
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                break
            out.append(parse_reply(data, key=self.key, device_id=self.id, fingerprint=self.fp,
                                   full_counter=self.pending.get))
        return out

    def close(self) -> None:
        self.sock.close()


def silent_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


def bytes_back(socks) -> int:
    """Bytes waiting on every socket (what the edge sent the attacker)."""
    total = 0
    for s in socks:
        while True:
            try:
                total += len(s.recv(4096))
            except (BlockingIOError, OSError):
                break
    return total


def can_spoof() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def spoofed_udp(src: tuple[str, int], dst: tuple[str, int], payload: bytes) -> bytes:
    """An IPv4 + UDP packet from `src` (a raw socket sends it; UDP checksum 0 = none on IPv4)."""
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28 + len(payload), 0, 0, 64, socket.IPPROTO_UDP, 0,
                         socket.inet_aton(src[0]), socket.inet_aton(dst[0]))
    return header + struct.pack("!HHHH", src[1], dst[1], 8 + len(payload), 0) + payload


def wrong_mic_frame(device: Device, counter: int) -> bytes:
    """A frame whose header block decodes and claims `device` but whose MIC is a guess."""
    return encode_inference(device.payload, key=os.urandom(16), device_id=device.id, fingerprint=device.fp,
                            counter=counter)[0]


__all__ = ["Edge", "Device", "FrameError", "bytes_back", "can_spoof", "silent_socket", "spoofed_udp",
           "wrong_mic_frame", "key_for"]
