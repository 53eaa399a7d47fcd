"""Files a user hands the wire layer: the edge's replay state (docs/PROTOCOL.md §4.8), and the file
primitives under it (regular files only, size caps, atomic writes, flock that dies with its holder).
Real files, FIFOs and processes."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from codec.wire.edge_state import (
    CounterRecord,
    EdgeState,
    edge_state_path,
    load_edge_state,
    locked,
    update_edge_state,
    write_edge_state,
)
from codec.wire.files import LockHeld, atomic_write, hold_lock, load_json, read_user_file, release_lock
from codec.wire.keys import DeviceKey, key_id
from snn.errors import SnnError

KEY7, KEY9 = bytes(range(16)), bytes(range(1, 17))


def _state(tmp_path, doc) -> str:
    path = tmp_path / "keys.json.edge-state"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def _doc(entry) -> dict:
    return {"format": "snn-edge-state", "version": 1, "devices": {"7": entry}}


def test_round_trip_and_key_binding(tmp_path):
    path = edge_state_path(tmp_path / "keys.json")
    assert path.name == "keys.json.edge-state"
    state = EdgeState({7: CounterRecord(key_id(KEY7), 513), 9: CounterRecord(key_id(KEY9), None)})
    write_edge_state(path, state)
    assert path.stat().st_mode & 0o777 == 0o600
    back = load_edge_state(path)
    assert back.devices == state.devices
    assert back.record_for(7, KEY7).highest == 513 and back.record_for(9, KEY9).unknown
    assert back.record_for(7, KEY9) is None          # an entry of another key: a new device
    assert back.record_for(8, KEY7) is None          # absent: a new device


@pytest.mark.parametrize("highest", [-1, -5, 1 << 32, 2 ** 40, "12", 513.0, 300.7, {}, [], True, None])
def test_a_highest_that_is_not_an_integer_in_range_is_an_error(tmp_path, highest):
    path = _state(tmp_path, _doc({"key": key_id(KEY7), "highest": highest}))
    with pytest.raises(SnnError, match="'highest' must be an integer") as exc:
        load_edge_state(path)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("doc", [
    "", "{", "[]", "{}", "null", '"x"',
    {"format": "snn-edge-state", "version": 2, "devices": {}},
    {"format": "snn-edge-state", "version": "1", "devices": {}},
    {"format": "snn-edge-state", "version": 1, "devices": []},
    {"format": "snn-edge-state", "version": 1, "devices": {}, "extra": 1},
    {"format": "snn-edge-state", "version": 1, "devices": {"07": {"key": "00000000", "highest": 1}}},
    {"format": "snn-edge-state", "version": 1, "devices": {"65536": {"key": "00000000", "highest": 1}}},
    {"format": "snn-edge-state", "version": 1, "devices": {"-1": {"key": "00000000", "highest": 1}}},
    {"format": "snn-edge-state", "version": 1, "devices": {"7": {"key": "0000000", "highest": 1}}},
    {"format": "snn-edge-state", "version": 1, "devices": {"7": {"key": "ABCDEF00", "highest": 1}}},
    {"format": "snn-edge-state", "version": 1, "devices": {"7": {"highest": 1}}},
    {"format": "snn-edge-state", "version": 1, "devices": {"7": {"key": "00000000", "highest": 1, "x": 2}}},
    {"format": "snn-edge-state", "version": 1, "devices": {"7": {"key": "00000000", "unknown": False}}},
    {"format": "snn-edge-state", "version": 1, "devices": {"7": 5}},
    {"format": "snn-edge-counters/1", "highest": {"7": -3}},
    {"format": "snn-edge-counters/1", "highest": {"7": "9"}},
    {"format": "snn-edge-counters/1", "highest": []},
    "[" * 100000 + "]" * 100000,
])
def test_malformed_state_is_one_line_never_a_fresh_start(tmp_path, doc):
    path = _state(tmp_path, doc)
    with pytest.raises(SnnError) as exc:
        load_edge_state(path)
    assert "\n" not in str(exc.value) and str(path) in str(exc.value)


def test_a_missing_state_is_an_error_that_names_the_way_out(tmp_path):
    with pytest.raises(SnnError, match="--reset-replay-state"):
        load_edge_state(tmp_path / "nope.edge-state")


def test_the_v2_file_is_read_and_rewritten_with_key_ids(tmp_path):
    path = _state(tmp_path, {"format": "snn-edge-counters/1", "highest": {"7": 513, "8": 4}})
    state = load_edge_state(path)
    assert state.legacy and state.devices[7] == CounterRecord(None, 513)
    assert state.record_for(7, KEY7).highest == 513       # a v2 entry names no key: it applies
    with locked(path):
        update_edge_state(path, {7: DeviceKey(7, KEY7)}, forget=set())
    doc = json.loads(path.read_text())
    assert doc["format"] == "snn-edge-state" and doc["devices"] == {"7": {"key": key_id(KEY7), "highest": 513}}


def test_update_forgets_changed_devices_and_never_creates_a_missing_file(tmp_path):
    path = tmp_path / "k.edge-state"
    write_edge_state(path, EdgeState({7: CounterRecord(key_id(KEY7), 5), 9: CounterRecord(key_id(KEY9), 6)}))
    with locked(path):
        update_edge_state(path, {}, forget={9})
    assert set(load_edge_state(path).devices) == {7}
    missing = tmp_path / "none.edge-state"
    with locked(missing), pytest.raises(SnnError, match="does not exist"):
        update_edge_state(missing, {})
    assert not missing.exists()


# --- the primitives ----------------------------------------------------------------------------

def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    t0 = time.monotonic()
    with pytest.raises(SnnError, match="a FIFO"):
        read_user_file(fifo, 1000, "keys file")
    assert time.monotonic() - t0 < 2
    with pytest.raises(SnnError, match="a directory"):
        read_user_file(tmp_path, 1000, "keys file")
    with pytest.raises(SnnError, match="character device"):
        read_user_file("/dev/zero", 1000, "keys file")


def test_size_limit_private_mode_and_nesting(tmp_path):
    big = tmp_path / "big"
    big.write_bytes(b" " * 2000)
    with pytest.raises(SnnError, match="over the 1000-byte limit"):
        read_user_file(big, 1000, "state")
    secret = tmp_path / "secret"
    secret.write_text("{}")
    for mode in (0o644, 0o666, 0o640, 0o604):
        secret.chmod(mode)
        with pytest.raises(SnnError, match=f"permissions {mode:04o}.*too open.*chmod 600"):
            read_user_file(secret, 1000, "keys file", private=True)
    secret.chmod(0o600)
    assert read_user_file(secret, 1000, "keys file", private=True) == b"{}"
    deep = tmp_path / "deep"
    deep.write_text("[" * 40 + "]" * 40)
    with pytest.raises(SnnError, match="nests too deeply"):
        load_json(deep, 1 << 20, "keys file")
    bad = tmp_path / "bad"
    bad.write_bytes(b"\xff\xfe{")
    with pytest.raises(SnnError, match="not JSON"):
        load_json(bad, 1 << 20, "keys file")


def test_atomic_write_leaves_no_temporary_and_keeps_the_old_content_on_failure(tmp_path):
    path = tmp_path / "f"
    atomic_write(path, b"one")
    atomic_write(path, b"two")
    assert path.read_bytes() == b"two" and os.listdir(tmp_path) == ["f"]


_HOLD = """
import sys, time
from codec.wire.files import hold_lock
hold_lock(sys.argv[1], "the test lock")
print("held", flush=True)
time.sleep(60)
"""


def test_a_second_holder_refuses_and_a_killed_holder_leaves_no_stale_lock(tmp_path):
    lock = tmp_path / "x.lock"
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(LockHeld, match=f"in use by another process \\(pid {proc.pid}\\)"):
            hold_lock(lock, "the test lock")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        fd = hold_lock(lock, "the test lock")        # the kernel dropped the dead holder's lock
        release_lock(fd)
    finally:
        proc.kill()
        proc.wait(10)
