"""Issue 24, keys lifecycle: `snn keys add|revoke|rotate` + SIGHUP on a real `snn edge serve` (shipped
bundle) while a real `snn device run` keeps sending: the new device is answered, the running one
never misses a frame, a revoked one gets silence, a bad keys file keeps the old keys (one log line)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENCODER = ROOT / "codec" / "zoo" / "fmnist_default.int8.onnx"


def _snn(*args, **kw):
    return subprocess.run([sys.executable, "-m", "snn", *map(str, args)], capture_output=True, text=True,
                          timeout=kw.pop("timeout", 300), cwd=ROOT, **kw)


def _device_args(url, keys, dev, count, out, *extra):
    return ["device", "run", "--encoder", ENCODER, "--to", url, "--key-file", keys, "--device-id", dev,
            "--count", count, "--link", "none", "--mtu", "1400", "--quiet", "--json", out, *extra]


def _log_until(path: Path, needle: str, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_text(errors="replace")
        if needle in text:
            return text
        time.sleep(0.05)
    raise AssertionError(f"{needle!r} not in the edge log:\n{path.read_text(errors='replace')[-3000:]}")


def test_add_revoke_and_a_bad_file_on_sighup_while_a_device_keeps_sending(tmp_path):
    keys = tmp_path / "keys.json"
    assert _snn("keys", "new", "--device", 1, "--device", 2, "-o", keys).returncode == 0
    ready, log_path = tmp_path / "edge.json", tmp_path / "edge.log"
    log = open(log_path, "w")
    edge = subprocess.Popen([sys.executable, "-m", "snn", "edge", "serve", "--keys", str(keys), "--udp", "127.0.0.1:0",
                             "--http", "127.0.0.1:0", "--ready-json", str(ready), "--log-level", "info"],
                            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        deadline = time.monotonic() + 120
        while not (ready.is_file() and ready.stat().st_size):
            assert edge.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.05)
        url = json.loads(ready.read_text())["udp"]
        # device 1 sends all along, until SIGTERM (one inference in flight: every answer accounted for)
        busy = subprocess.Popen([sys.executable, "-m", "snn", *map(str, _device_args(
            url, keys, 1, 1_000_000, tmp_path / "busy.json", "--window", "1", "--timeout", "3"))],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        time.sleep(2.0)
        assert busy.poll() is None, busy.stderr.read()

        new = _snn(*_device_args(url, keys, 3, 2, tmp_path / "before.json", "--timeout", "0.5", "--retries", "0"))
        assert new.returncode == 2 and "no key for device 3" in new.stderr    # not provisioned yet
        assert _snn("keys", "add", "--device", 3, keys).returncode == 0
        edge.send_signal(signal.SIGHUP)
        _log_until(log_path, "added [3]")
        added = _snn(*_device_args(url, keys, 3, 10, tmp_path / "added.json"))
        assert added.returncode == 0, added.stderr
        assert json.loads((tmp_path / "added.json").read_text())["answered"] == 10

        # a bad keys file: the old keys stay, one line in the log
        good = keys.read_bytes()
        keys.write_text("{not json")
        keys.chmod(0o600)
        edge.send_signal(signal.SIGHUP)
        text = _log_until(log_path, "keys not reloaded")
        assert len([line for line in text.splitlines() if "keys not reloaded" in line]) == 1
        assert "Traceback" not in text
        keys.write_bytes(good)
        again = _snn(*_device_args(url, keys, 3, 3, tmp_path / "again.json"))
        assert again.returncode == 0 and json.loads((tmp_path / "again.json").read_text())["answered"] == 3

        assert _snn("keys", "revoke", "--device", 3, keys).returncode == 0
        os.utime(keys, None)
        edge.send_signal(signal.SIGHUP)
        _log_until(log_path, "revoked [3]")
        # the revoked device still has its key file copy (here: the old file's bytes): it gets silence
        old_copy = tmp_path / "device3-keys.json"
        old_copy.write_bytes(good)
        old_copy.chmod(0o600)
        state = Path(f"{keys}.dev3.state")
        if state.exists():
            os.replace(state, Path(f"{old_copy}.dev3.state"))
        revoked = _snn(*_device_args(url, old_copy, 3, 3, tmp_path / "revoked.json", "--timeout", "0.5",
                                     "--retries", "0"))
        assert revoked.returncode == 1, revoked.stderr
        got = json.loads((tmp_path / "revoked.json").read_text())
        assert got["answered"] == 0 and got["foreign_frames"] == 0 and got["duplicates"] == 0   # silence
        assert busy.poll() is None, "device 1 must still be sending through every reload"

        busy.send_signal(signal.SIGTERM)
        out, err = busy.communicate(timeout=60)
        assert busy.returncode == 0, err[-2000:]
        steady = json.loads((tmp_path / "busy.json").read_text())
        figures = {k: steady[k] for k in ("count", "answered", "lost", "errors", "busy", "resends", "duplicates")}
        # every inference answered (a BUSY under machine load is retried, as a device does), none lost
        assert steady["count"] > 500 and steady["answered"] == steady["count"], figures
        assert steady["lost"] == steady["errors"] == 0, figures
        print(f"\nthrough add+SIGHUP, a bad file+SIGHUP, revoke+SIGHUP: device 1 {figures}; device 3 answered "
              f"10/10 after add, 3/3 after the bad file, revoked 0 answered, 0 foreign frames")
    finally:
        edge.send_signal(signal.SIGTERM)
        try:
            edge.wait(15)
        except subprocess.TimeoutExpired:
            edge.kill()
