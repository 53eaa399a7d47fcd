"""A local edge + channel proxy, started as real processes, for the demo and end-to-end checks.

Everything goes through the same `snn` commands a user runs, over real loopback sockets, so the
demo exercises exactly what ships: `snn edge serve`, `snn channel proxy`, `snn device run`.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from snn.errors import SnnError


def start_snn(*args: str) -> subprocess.Popen:
    """Start `snn ARGS...` with this interpreter; stdout/stderr are captured as text."""
    return subprocess.Popen([sys.executable, "-m", "snn", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10.0) -> str:
    """Stop a process politely, then firmly; return what it wrote on stderr."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.stderr.read() if proc.stderr else ""


def _wait(predicate, timeout: float, proc: subprocess.Popen, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc.poll() is not None:
            err = (proc.stderr.read() if proc.stderr else "").strip().splitlines()
            raise SnnError(f"{what} exited early: {err[-1] if err else proc.returncode}")
        time.sleep(0.05)
    raise SnnError(f"{what} did not become ready within {timeout:.0f} s")


def _gateway_allow(count: int = 16) -> list[str]:
    """--gateway-allow flags for the first `count` EUIs `snn channel gateways` gives its gateways."""
    from channel.gateway_sim import DEFAULT_EUI

    return [flag for i in range(count) for flag in ("--gateway-allow", f"{DEFAULT_EUI + i:016x}@127.0.0.1")]


class LocalStack:
    """`with LocalStack(ber=1e-2) as stack:` a keyed edge and a proxy in front of it.

    `link="udp"`: loopback UDP sockets. `link="serial"`: the edge listens on a pty, the proxy
    bridges a second pty to it, as a UART cable to real firmware would. `link="gateway"`: the
    edge listens only for LoRa gateways (`--gateway`), and `snn channel gateways` (its flags:
    `channel_args`) stands in front of it as the air and the gateways. `stack.device_url` is
    where a device sends; `stack.edge` and `stack.proxy` are the processes. The stack provisions
    its own keys for devices 1..`devices` (`stack.key_file`; `stack.device_args(ID)` are the
    flags a device needs).
    """

    def __init__(self, ber: float = 0.0, model: str = "iid", bundle: str | None = None,
                 seed: int = 0, link: str = "udp", baud: int = 115200,
                 extra_proxy_args: tuple[str, ...] = (), devices: int = 16,
                 channel_args: tuple[str, ...] | None = None, extra_edge_args: tuple[str, ...] = ()) -> None:
        if link not in ("udp", "serial", "gateway"):
            raise SnnError(f"link must be udp, serial or gateway, not {link}")
        self.ber, self.model, self.bundle, self.seed = ber, model, bundle, seed
        self.link, self.baud = link, baud
        self.extra_proxy_args = extra_proxy_args
        # the proxy's error model: by default --ber/--model; e.g. ("--lora-phy", "--sf", "7", "--snr-db", "-7.5")
        self.channel_args = channel_args
        self.extra_edge_args = extra_edge_args    # e.g. ("--mqtt", URL)
        self._tmp = tempfile.TemporaryDirectory(prefix="snn-stack-")
        self.edge: subprocess.Popen | None = None
        self.proxy: subprocess.Popen | None = None
        self.addresses: dict = {}
        self.device_url = ""
        self.proxy_summary: dict = {}
        self.key_file = Path(self._tmp.name) / "keys.json"
        from codec.wire.edge_state import EdgeState, edge_state_path, write_edge_state
        from codec.wire.keys import new_keys, write_keys
        write_keys(self.key_file, new_keys(list(range(1, devices + 1))))
        write_edge_state(edge_state_path(self.key_file), EdgeState())   # as `snn keys new` makes it

    def device_args(self, device_id: int = 1) -> list[str]:
        """What `snn device run` / `snn mcu run` need to be device `device_id` of this stack."""
        return ["--key-file", str(self.key_file), "--device-id", str(device_id)]

    def __enter__(self) -> "LocalStack":
        tmp = Path(self._tmp.name)
        ready = tmp / "edge.json"
        listen = {"udp": ["--udp", "127.0.0.1:0"], "serial": ["--udp", "none", "--serial", "pty://"],
                  "gateway": ["--udp", "none", "--gateway", "127.0.0.1:0", *_gateway_allow()]}[self.link]
        args = ["edge", "serve", *listen, "--http", "127.0.0.1:0", "--ready-json", str(ready),
                "--log-level", "warning", "--keys", str(self.key_file)]
        if self.bundle:
            args += ["--bundle", self.bundle]
        args += list(self.extra_edge_args)
        try:
            self.edge = start_snn(*args)
            self.addresses = _wait(lambda: ready.is_file() and ready.stat().st_size
                                   and json.loads(ready.read_text()), 120, self.edge, "snn edge serve")
            if self.link == "gateway":
                self._start_gateways(tmp)
                return self
            if self.link == "udp":
                proxy_ends = ["--listen", "udp://127.0.0.1:0", "--to", self.addresses["udp"]]
            else:
                proxy_ends = ["--listen", "pty://", "--to", f"serial://{self.addresses['serial'][0]}?baud={self.baud}"]
            channel = (self.channel_args if self.channel_args is not None
                       else ("--ber", str(self.ber), "--model", self.model))
            self.proxy = start_snn("channel", "proxy", *proxy_ends, *channel,
                                   "--seed", str(self.seed), "--stats-interval", "0",
                                   "--json", str(tmp / "proxy.json"), *self.extra_proxy_args)
            line = _wait(self.proxy.stdout.readline, 30, self.proxy, "snn channel proxy")
            if not line.startswith("proxy ready:"):
                raise SnnError(f"unexpected proxy start line: {line.strip()}")
            listen_at = dict(kv.split("=", 1) for kv in line.split()[2:])["listen"]
            self.device_url = listen_at if self.link == "udp" else f"serial://{listen_at}?baud={self.baud}"
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _start_gateways(self, tmp: Path) -> None:
        self.proxy = start_snn("channel", "gateways", "--listen", "udp://127.0.0.1:0", "--to",
                               self.addresses["gateway"], *(self.channel_args or ()), "--seed", str(self.seed),
                               "--json", str(tmp / "proxy.json"))
        line = _wait(self.proxy.stdout.readline, 30, self.proxy, "snn channel gateways")
        if not line.startswith("gateways ready:"):
            raise SnnError(f"unexpected gateway simulator start line: {line.strip()}")
        self.device_url = dict(kv.split("=", 1) for kv in line.split()[2:])["listen"]

    def __exit__(self, *exc) -> None:
        if self.proxy is not None:
            stop(self.proxy, signal.SIGINT)
            summary = Path(self._tmp.name) / "proxy.json"
            if summary.is_file():
                self.proxy_summary = json.loads(summary.read_text())
        if self.edge is not None:
            stop(self.edge)
        self._tmp.cleanup()
