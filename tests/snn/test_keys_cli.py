"""`snn keys new|show`: per-device keys files (mode 0600, no silent overwrite, one-line errors)."""
import json
import os
import stat
import subprocess
import sys


def _snn(*args):
    return subprocess.run([sys.executable, "-m", "snn", "keys", *args], capture_output=True, text=True, timeout=60)


def test_keys_new_show_and_refusals(tmp_path):
    path = tmp_path / "keys.json"
    r = _snn("new", "--device", "7", "--device", "8", "--fingerprint", "1234abcd", "-o", str(path))
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    doc = json.loads(path.read_text())
    assert doc["format"] == "snn-keys/1" and [d["id"] for d in doc["devices"]] == [7, 8]
    assert all(len(bytes.fromhex(d["key"])) == 16 and d["fingerprint"] == "1234abcd" for d in doc["devices"])
    shown = _snn("show", str(path))
    assert shown.returncode == 0 and "device     7" in shown.stdout and "1234abcd" in shown.stdout
    assert doc["devices"][0]["key"] not in shown.stdout                # never the keys
    again = _snn("new", "--device", "9", "-o", str(path))
    assert again.returncode == 2 and "--force" in again.stderr and len(again.stderr.strip().splitlines()) == 1
    assert json.loads(path.read_text()) == doc
    assert _snn("new", "--device", "9", "-o", str(path), "--force").returncode == 0
    for bad in (["new", "--device", "70000", "-o", str(tmp_path / "x")],
                ["new", "--device", "1", "--fingerprint", "zz", "-o", str(tmp_path / "y")],
                ["show", str(tmp_path / "missing.json")]):
        r = _snn(*bad)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
