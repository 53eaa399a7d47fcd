"""Issue 21 item 7, "a device never reuses a keystream", and the resynchronisation exchange
(docs/PROTOCOL.md §4.3, §4.7), against a real `snn edge serve` (shipped bundle) and the real
`snn device run`, with a relay that records every datagram on the air.

* Deleting a device's state file and running it again: no counter is used twice (checked on the
  recorded frames, by authenticating each one as the edge does) and the device is answered again.
* Two processes on one key and id: the second refuses; a `kill -9`ed one leaves no stale lock.
* Replayed RESYNC and CONFIRM frames get nothing and change nothing; a counter beyond the gap is
  answered ERROR RESYNC and does not move the window.
"""
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from codec.wire import control
from codec.wire.frame import ErrorCode, encode_inference, parse_data, parse_reply
from codec.wire.keys import new_keys, write_keys
from codec.wire.replay import MAX_GAP, ReplayWindow
from snn.errors import FrameError

ROOT = Path(__file__).resolve().parents[2]
ENCODER = ROOT / "codec" / "zoo" / "fmnist_default.int8.onnx"


@dataclass
class _Peer:
    key: bytes
    fingerprint: bytes
    payload_bytes: int = 37


class Relay:
    """device <-> relay <-> edge over loopback UDP; every datagram the device sends is recorded."""

    def __init__(self, edge_addr) -> None:
        self.front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.front.bind(("127.0.0.1", 0))
        self.back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.back.connect(edge_addr)
        self.url = "udp://127.0.0.1:%d" % self.front.getsockname()[1]
        self.uplink: list[bytes] = []
        self.downlink: list[bytes] = []
        self.peer = None
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._up, daemon=True), threading.Thread(target=self._down, daemon=True)]
        for t in self._threads:
            t.start()

    def _up(self) -> None:
        self.front.settimeout(0.1)
        while not self._stop.is_set():
            try:
                data, addr = self.front.recvfrom(4096)
            except OSError:
                continue
            self.peer = addr
            self.uplink.append(data)
            self.back.send(data)

    def _down(self) -> None:
        self.back.settimeout(0.1)
        while not self._stop.is_set():
            try:
                data = self.back.recv(4096)
            except OSError:
                continue
            self.downlink.append(data)
            if self.peer is not None:
                self.front.sendto(data, self.peer)

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(2)
        self.front.close()
        self.back.close()


@pytest.fixture()
def stack(tmp_path):
    keys = new_keys([1, 2])
    key_file = tmp_path / "keys.json"
    write_keys(key_file, keys)
    from codec.wire.edge_state import EdgeState, edge_state_path, write_edge_state
    write_edge_state(edge_state_path(key_file), EdgeState())
    ready = tmp_path / "edge.json"
    log = open(tmp_path / "edge.log", "w")
    edge = subprocess.Popen([sys.executable, "-m", "snn", "edge", "serve", "--keys", str(key_file), "--udp",
                             "127.0.0.1:0", "--http", "127.0.0.1:0", "--ready-json", str(ready), "--log-level", "info"],
                            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    deadline = time.monotonic() + 120
    while not (ready.is_file() and ready.stat().st_size):
        assert edge.poll() is None and time.monotonic() < deadline, (tmp_path / "edge.log").read_text()
        time.sleep(0.05)
    host, port = json.loads(ready.read_text())["udp"][len("udp://"):].rsplit(":", 1)
    relay = Relay((host, int(port)))
    try:
        yield {"keys": {k.device_id: k for k in keys}, "key_file": key_file, "relay": relay, "edge": edge,
               "edge_addr": (host, int(port)), "tmp": tmp_path}
    finally:
        relay.close()
        edge.send_signal(signal.SIGTERM)
        try:
            edge.wait(15)
        except subprocess.TimeoutExpired:
            edge.kill()


def _device(stack, *extra, count=20, check=True, device=1):
    out = stack["tmp"] / f"device-{time.monotonic_ns()}.json"
    proc = subprocess.run([sys.executable, "-m", "snn", "device", "run", "--encoder", str(ENCODER), "--to",
                           stack["relay"].url, "--key-file", str(stack["key_file"]), "--device-id", str(device),
                           "--count", str(count), "--link", "none", "--mtu", "1400", "--timeout", "2", "--quiet",
                           "--json", str(out), *map(str, extra)], capture_output=True, text=True, timeout=300,
                          cwd=ROOT)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(out.read_text())
    return proc


def _counters_on_air(frames: list[bytes], key, fingerprint: bytes) -> list[int]:
    """Every DATA counter in the recorded uplink, found as the edge finds it (MIC over the full
    counter, short counters reconstructed from the window)."""
    window = ReplayWindow()
    peer = _Peer(key.key, fingerprint)
    used = []
    for data in frames:
        if control.is_control_length(len(data)):
            try:
                control.parse_control_up(data, lambda dev: [peer], lambda dev: [])
                continue       # a RESYNC (a CONFIRM needs its nonce; it never authenticates as DATA)
            except FrameError:
                pass
        try:
            frame = parse_data(data, lambda dev: [peer], lambda dev, low: window.full_counter(low))
        except FrameError:
            continue
        used.append(frame.counter)
        if window.verdict(frame.counter) is None:
            window.mark(frame.counter)
    return used


def _answers_to(stack, frames: list[bytes], quiet_s: float = 0.5) -> list[bytes]:
    """Send `frames` to the edge from a fresh socket; every datagram that comes back (until
    `quiet_s` of silence)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(quiet_s)
    sock.connect(stack["edge_addr"])
    got = []
    try:
        for data in frames:
            sock.send(data)
        while True:
            got.append(sock.recv(4096))
    except socket.timeout:
        return got
    finally:
        sock.close()


def test_deleting_the_state_file_never_reuses_a_counter_and_the_device_is_answered_again(stack):
    state = Path(f"{stack['key_file']}.dev1.state")
    first = _device(stack, count=20)
    assert first["answered"] == 20 and first["resyncs"] == 1          # a new device resynchronises first
    assert state.is_file()
    state.unlink()                                                   # the state is lost
    second = _device(stack, count=20)
    assert second["answered"] == 20 and second["resyncs"] == 1
    state.unlink()
    third = _device(stack, count=5)
    assert third["answered"] == 5
    fp = bytes.fromhex(first["fingerprint"])
    used = _counters_on_air(stack["relay"].uplink, stack["keys"][1], fp)
    assert len(used) >= 45
    assert len(used) == len(set(used)), "a counter went on the air twice"
    assert used == sorted(used), "counters on the air went backwards"
    # each run after a lost state starts above every counter the edge could have seen: MAX_GAP on
    jumps = [b - a for a, b in zip(used, used[1:]) if b - a > 1000]
    assert len(jumps) == 2 and all(j > MAX_GAP for j in jumps) and min(used) >= MAX_GAP, (jumps, min(used))
    # the control frames on the air carried no encrypted payload: 15 bytes a copy, nothing else
    resyncs = [d for d in stack["relay"].uplink if control.is_control_length(len(d))]
    assert len(resyncs) >= 6 and all(len(d) in (15, 45, 75) for d in resyncs)
    # the Done-when figure (pytest -s prints it)
    print(f"\nstate file deleted twice: {len(used)} DATA counters on the air, {len(set(used))} distinct, "
          f"runs answered {first['answered']}/20, {second['answered']}/20, {third['answered']}/5, "
          f"jumps {jumps}, {len(resyncs)} control frames")


def test_a_second_process_on_the_same_key_refuses_and_a_killed_one_leaves_no_stale_lock(stack):
    slow = subprocess.Popen([sys.executable, "-m", "snn", "device", "run", "--encoder", str(ENCODER), "--to",
                             stack["relay"].url, "--key-file", str(stack["key_file"]), "--device-id", "2",
                             "--count", "100000", "--link", "none", "--quiet", "--window", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while not Path(f"{stack['key_file']}.dev2.state").is_file():
            assert slow.poll() is None and time.monotonic() < deadline, slow.stderr.read()
            time.sleep(0.05)
        second = _device(stack, count=1, check=False, device=2)
        assert second.returncode == 2 and "in use by another process" in second.stderr
        assert len(second.stderr.strip().splitlines()) == 1
        slow.send_signal(signal.SIGKILL)
        slow.wait(10)
    finally:
        slow.kill()
        slow.wait(10)
    again = _device(stack, count=5, device=2)      # no stale lock; counters continue from the state
    assert again["answered"] == 5
    fp = bytes.fromhex(again["fingerprint"])
    used = _counters_on_air(stack["relay"].uplink, stack["keys"][2], fp)
    assert len(used) == len(set(used))


def test_replayed_resync_and_confirm_get_nothing_and_change_nothing(stack):
    _device(stack, count=3)
    relay = stack["relay"]
    resync = [d for d in relay.uplink if control.is_control_length(len(d))]
    assert len(resync) >= 2
    got = _answers_to(stack, resync * 3)          # the captured RESYNC and CONFIRM, again and again
    assert got == [], [g.hex() for g in got]
    # the window did not move: the device goes on from its state, answered, without a resync
    after = _device(stack, count=3)
    assert after["answered"] == 3 and after["resyncs"] == 0


def test_a_counter_beyond_the_gap_is_answered_resync_and_never_moves_the_window(stack):
    first = _device(stack, count=2)
    key = stack["keys"][1]
    fp = bytes.fromhex(first["fingerprint"])
    used = _counters_on_air(stack["relay"].uplink, key, fp)
    top = max(used)
    payload = bytes(37)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(3)
    sock.connect(stack["edge_addr"])

    def ask(counter):
        (frame,) = encode_inference(payload, key=key.key, device_id=1, fingerprint=fp, counter=counter,
                                    long_counter=True)
        sock.send(frame)
        return parse_reply(sock.recv(4096), key=key.key, device_id=1, fingerprint=fp,
                           full_counter=lambda low: counter if low == counter & 0xFFFF else None)

    try:
        far = ask(top + MAX_GAP + 1)
        assert getattr(far, "code", None) == ErrorCode.RESYNC
        near = ask(top + 1)                          # the window did not move: the next counter is fine
        assert hasattr(near, "label")
        lucky = ask(0xFFFFFFFF)                      # a forged success near 2^32 could not lock the device out
        assert getattr(lucky, "code", None) == ErrorCode.RESYNC
    finally:
        sock.close()
    assert _device(stack, count=2)["answered"] == 2


def _edge_log_until(stack, needle: str, timeout: float = 20.0) -> None:
    path = stack["tmp"] / "edge.log"
    deadline = time.monotonic() + timeout
    while needle not in path.read_text(errors="replace"):
        assert time.monotonic() < deadline, path.read_text(errors="replace")[-3000:]
        time.sleep(0.05)


def test_rotate_and_sighup_old_frames_stay_refused_and_the_new_key_starts_afresh(stack):
    """Issue 24: `snn keys rotate` + SIGHUP: the frames recorded under the old key get silence, the
    device (whose state names the old key: no state for the new one) resynchronises and is
    answered, and no (key, counter) pair is ever used twice."""
    before = _device(stack, count=5, device=2)
    assert before["answered"] == 5
    relay = stack["relay"]
    recorded = list(relay.uplink)
    old_key = stack["keys"][2]
    rotate = subprocess.run([sys.executable, "-m", "snn", "keys", "rotate", "--device", "2", str(stack["key_file"])],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert rotate.returncode == 0, rotate.stderr
    stack["edge"].send_signal(signal.SIGHUP)
    _edge_log_until(stack, "re-keyed [2]")
    got = _answers_to(stack, recorded)       # every frame of the old key, DATA and control, again
    assert got == [], [g.hex() for g in got]
    relay.uplink.clear()
    after = _device(stack, count=5, device=2)
    assert after["answered"] == 5 and after["resyncs"] == 1
    from codec.wire.keys import load_keys
    new_key = load_keys(stack["key_file"])[2]
    assert new_key.key != old_key.key
    fp = bytes.fromhex(after["fingerprint"])
    used_new = _counters_on_air(relay.uplink, new_key, fp)
    assert len(used_new) == 5 and len(set(used_new)) == 5
    assert _counters_on_air(relay.uplink, old_key, fp) == []      # nothing under the old key any more
