"""The server under test: a real keyed `snn edge serve` on ephemeral loopback ports.

    with edge_server(bundles, ["--max-batch", "64"]) as server:
        maker = FrameMaker(server.codec(), server.keys)
        udp_closed_loop(server.udp_target, maker, 5.0)
        server.metrics()             # its /metrics, parsed (bench.loadgen.metrics)

`EdgeServer.get` is the one way the benchmarks read the server's HTTP API.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.loadgen.frames import provision
from bench.loadgen.metrics import Metrics
from codec.wire.keys import DeviceKey, write_keys
from snn.errors import SnnError

ROOT = Path(__file__).resolve().parents[2]


def http_get(url: str, timeout: float = 5.0, token: str | None = None) -> str:
    """The body of a GET, as text (with `token`: as the edge's operator, Authorization: Bearer)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as resp:
        return resp.read().decode()


@dataclass
class EdgeServer:
    """A running `snn edge serve`: its process, the addresses it printed (--ready-json), the
    keys of the devices provisioned for it (by id) and its log file (stdout and stderr)."""

    proc: subprocess.Popen
    addresses: dict
    keys: dict[int, bytes]
    log_path: Path

    @property
    def http(self) -> str:
        return self.addresses["http"]

    @property
    def udp(self) -> str:
        return self.addresses["udp"]

    @property
    def udp_target(self) -> tuple[str, int]:
        host, port = self.udp[len("udp://"):].rsplit(":", 1)
        return host, int(port)

    @property
    def operator_token(self) -> str | None:
        """The operator credential, read from the file the server named (`operator_token_file`)."""
        path = self.addresses.get("operator_token_file")
        return Path(path).read_text().strip() if path else None

    def get(self, path: str, timeout: float = 5.0) -> str:
        """GET `path` ("/metrics", "/healthz", ...) on the server's HTTP API, as its operator."""
        return http_get(self.http + path, timeout=timeout, token=self.operator_token)

    def codec(self) -> dict:
        """The first codec it serves (GET /v1/codecs)."""
        return json.loads(self.get("/v1/codecs"))[0]

    def metrics(self, timeout: float = 5.0) -> Metrics:
        return Metrics(self.get("/metrics", timeout=timeout))

    def write_device_keys(self, path: Path, device_ids: list[int]) -> Path:
        """A keys file holding only these provisioned devices (for `snn device run --key-file`)."""
        write_keys(path, [DeviceKey(d, self.keys[d]) for d in device_ids], force=True)
        return path

    def stop(self, timeout: float = 10.0) -> float:
        """SIGTERM and wait (then kill); the seconds it took to exit."""
        return _stop(self.proc, timeout)


def _stop(proc: subprocess.Popen, timeout: float = 10.0) -> float:
    t = time.perf_counter()
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return time.perf_counter() - t


@contextmanager
def edge_server(bundles: list[str] | None, extra: list[str] | None = None, timeout: float = 60.0,
                n_devices: int = 64):
    """Start a keyed `snn edge serve` (devices 1..n_devices provisioned) on ephemeral loopback
    ports; yield it as an `EdgeServer`; stop it on the way out."""
    with tempfile.TemporaryDirectory() as tmp:
        ready = Path(tmp) / "ready.json"
        keys = provision(Path(tmp) / "keys.json", n_devices)
        cmd = [sys.executable, "-m", "snn", "edge", "serve", "--http", "127.0.0.1:0",
               "--udp", "127.0.0.1:0", "--ready-json", str(ready), "--keys", str(Path(tmp) / "keys.json")]
        for b in bundles or []:
            cmd += ["--bundle", str(b)]
        cmd += extra or []
        log_path = Path(tmp) / "server.log"
        log = open(log_path, "w+")
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=str(ROOT))
        try:
            t0 = time.monotonic()
            while not ready.exists() or not ready.read_text().strip().endswith("}"):
                if proc.poll() is not None or time.monotonic() - t0 > timeout:
                    log.seek(0)
                    raise SnnError("the edge server did not start: " + log.read().strip()[-500:])
                time.sleep(0.05)
            yield EdgeServer(proc, json.loads(ready.read_text()), keys, log_path)
        finally:
            _stop(proc)
            log.close()
