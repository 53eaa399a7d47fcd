"""Fixtures: real edge servers (uvicorn + UDP [+ serial]) in subprocesses on ephemeral ports, keyed
with the test keys file of `wire_client`."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STANDIN = Path(__file__).resolve().parent / "standin.py"
sys.path.insert(0, str(Path(__file__).resolve().parent))

from wire_client import open_reply, write_test_keys  # noqa: E402,F401


class EdgeProcess:
    """A running server: its process, HTTP base URL, UDP address, serial paths."""

    def __init__(self, proc: subprocess.Popen, addresses: dict, log_path: Path) -> None:
        self.proc = proc
        self.addresses = addresses
        self.http = addresses["http"]
        host, port = addresses["udp"][len("udp://"):].rsplit(":", 1) if addresses.get("udp") else (None, 0)
        self.udp = (host, int(port))
        self.log_path = log_path
        token_file = addresses.get("operator_token_file")
        self.token = Path(token_file).read_text().strip() if token_file else None
        # what the operator sends: tests read figures the way an operator does
        self.auth = {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def get(self, path: str, **kw):
        """GET an operator endpoint with the operator credential (httpx response)."""
        import httpx
        return httpx.get(self.http + path, headers={**self.auth, **kw.pop("headers", {})}, **kw)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 10.0) -> float:
        """SIGTERM; seconds until the process exited."""
        t0 = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return time.monotonic() - t0


def start_standin(tmp_path: Path, *args: str, timeout: float = 60.0) -> EdgeProcess:
    if "--insecure" not in args and "--keys" not in args:
        args = (*args, "--keys", str(write_test_keys(tmp_path / "keys.json")))
    log_path = tmp_path / f"edge-{time.monotonic_ns()}.log"
    log = open(log_path, "w")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, str(STANDIN), *args], stdout=log,
                            stderr=subprocess.STDOUT, cwd=str(ROOT), env=env)
    t0 = time.monotonic()
    while True:
        text = log_path.read_text(errors="replace")
        if "READY " in text and text.split("READY ", 1)[1].count("\n"):
            addresses = json.loads(text.split("READY ", 1)[1].splitlines()[0])
            return EdgeProcess(proc, addresses, log_path)
        if proc.poll() is not None or time.monotonic() - t0 > timeout:
            proc.kill()
            raise RuntimeError("stand-in edge did not start:\n" + text)
        time.sleep(0.05)


@pytest.fixture(scope="module")
def edge(tmp_path_factory):
    """A stand-in edge with two codecs (FP_A, FP_B), default settings, short reassembly timeout."""
    server = start_standin(tmp_path_factory.mktemp("edge"), "--reassembly-timeout", "0.3",
                           "--max-devices", "64")
    yield server
    server.stop()


class UdpClient:
    def __init__(self, addr) -> None:
        self.addr = addr
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.settimeout(5.0)

    def send(self, data: bytes) -> None:
        self.sock.sendto(data, self.addr)

    def recv(self, timeout: float = 5.0):
        """The next authenticated REPLY/ERROR (codec.wire.frame.Reply / ErrorReply)."""
        self.sock.settimeout(timeout)
        return open_reply(self.sock.recv(4096))

    def silent(self, timeout: float = 0.3) -> bool:
        """True when nothing at all comes back within `timeout`."""
        self.sock.settimeout(timeout)
        try:
            self.sock.recv(4096)
        except socket.timeout:
            return True
        return False

    def ask(self, data: bytes, timeout: float = 5.0):
        self.send(data)
        return self.recv(timeout)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def udp(edge):
    client = UdpClient(edge.udp)
    yield client
    client.close()
