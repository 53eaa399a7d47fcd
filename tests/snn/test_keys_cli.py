"""`snn keys new|add|revoke|rotate|show` (docs/PROTOCOL.md §4.4, §4.8): the real CLI on real files."""
import json
import subprocess
import sys

from codec.wire.edge_state import CounterRecord, EdgeState, load_edge_state, write_edge_state
from codec.wire.keys import key_id, load_keys


def _snn(*args):
    return subprocess.run([sys.executable, "-m", "snn", "keys", *map(str, args)], capture_output=True, text=True,
                          timeout=60)


def _ok(*args):
    proc = _snn(*args)
    assert proc.returncode == 0, proc.stderr
    return proc


def test_new_writes_private_keys_and_an_empty_replay_state(tmp_path):
    path = tmp_path / "keys.json"
    _ok("new", "--device", 1, "--device", 2, "--fingerprint", "2bf16127", "-o", path)
    keys = load_keys(path)
    assert set(keys) == {1, 2} and keys[1].fingerprint.hex() == "2bf16127" and keys[1].key != keys[2].key
    assert path.stat().st_mode & 0o777 == 0o600
    state = tmp_path / "keys.json.edge-state"
    assert load_edge_state(state).devices == {}
    proc = _snn("new", "--device", 3, "-o", path)
    assert proc.returncode == 2 and "--force" in proc.stderr and set(load_keys(path)) == {1, 2}


def test_add_revoke_rotate_keep_the_other_devices_and_their_replay_state(tmp_path):
    path = tmp_path / "keys.json"
    _ok("new", "--device", 1, "--device", 2, "-o", path)
    before = load_keys(path)
    state = tmp_path / "keys.json.edge-state"
    write_edge_state(state, EdgeState({1: CounterRecord(key_id(before[1].key), 700),
                                       2: CounterRecord(key_id(before[2].key), 900)}))
    _ok("add", "--device", 5, "--integrity", path)
    keys = load_keys(path)
    assert set(keys) == {1, 2, 5} and keys[5].integrity and keys[1] == before[1] and keys[2] == before[2]
    proc = _snn("add", "--device", 2, path)
    assert proc.returncode == 2 and "rotate" in proc.stderr

    _ok("rotate", "--device", 2, path)
    keys = load_keys(path)
    assert keys[2].key != before[2].key and keys[1] == before[1]
    got = load_edge_state(state)
    assert got.record_for(1, keys[1].key).highest == 700      # untouched
    assert got.record_for(2, keys[2].key) is None              # the new key starts as a new device
    assert 2 not in got.devices

    _ok("revoke", "--device", 1, path)
    keys = load_keys(path)
    assert set(keys) == {2, 5} and 1 not in load_edge_state(state).devices
    proc = _snn("revoke", "--device", 1, path)
    assert proc.returncode == 2 and "no device 1" in proc.stderr
    _ok("revoke", "--device", 2, "--device", 5, path)         # every device revoked: an empty, valid file
    assert load_keys(path) == {}
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_missing_replay_state_is_left_to_the_edge_operator(tmp_path):
    path = tmp_path / "keys.json"
    _ok("new", "--device", 1, "-o", path)
    state = tmp_path / "keys.json.edge-state"
    state.unlink()
    proc = _ok("add", "--device", 2, path)
    assert "does not exist" in proc.stdout and not state.exists()


def test_show_masks_the_keys(tmp_path):
    path = tmp_path / "keys.json"
    _ok("new", "--device", 4, "-o", path)
    full = load_keys(path)[4].key.hex()
    out = _ok("show", path, "--json", tmp_path / "shown.json").stdout
    assert full not in out and full[:2] + "…" + full[-2:] in out
    assert json.loads((tmp_path / "shown.json").read_text())["devices"][0]["id"] == 4


def test_bad_ids_are_one_line(tmp_path):
    path = tmp_path / "keys.json"
    for args in (("new", "--device", 70000, "-o", path), ("new", "--device", 1, "--device", 1, "-o", path),
                 ("new", "--device", 1, "--fingerprint", "abc", "-o", path)):
        proc = _snn(*args)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
