"""A device's counter state (docs/PROTOCOL.md §4.3): validated, locked, written ahead, bounded by its
limit; no state means no counter until a resynchronisation. Real files and real processes."""
import json
import os
import signal
import subprocess
import sys

import pytest

from codec.wire.keys import (
    RESERVE,
    CounterStore,
    ResyncNeeded,
    key_id,
    read_device_state,
    state_path,
    write_device_state,
)
from codec.wire.replay import MAX_COUNTER, MAX_GAP
from snn.errors import SnnError

KEY, OTHER = bytes(range(16)), bytes(range(1, 17))


def _store(path, key=KEY, dev=7) -> CounterStore:
    return CounterStore(path, key=key, device_id=dev)


def test_no_state_means_no_counter_until_a_resync(tmp_path):
    path = state_path(tmp_path / "k.json", 7)
    with _store(path) as store:
        assert store.needs_resync and not store.has_state
        with pytest.raises(ResyncNeeded, match="does not exist"):
            store.take()
        assert not path.exists()                 # nothing guessed, nothing written
        store.resynced(16898)
        assert [store.take() for _ in range(3)] == [16898, 16899, 16900]
        state = read_device_state(path)
        assert state.next == 16898 + RESERVE and state.limit == 16897 + MAX_GAP and state.key_id == key_id(KEY)
    assert read_device_state(path).next == 16901          # a clean exit writes the exact next


def test_written_ahead_so_a_crash_never_reuses(tmp_path):
    path = tmp_path / "s.state"
    write_device_state(path, KEY, 1000, 1000 + MAX_GAP)
    a = _store(path)
    used = [a.take() for _ in range(300)]                    # crosses a reservation
    os.close(a._locks.pop(0))                                # "crash": locks gone, nothing else written
    os.close(a._locks.pop(0))
    b = _store(path)
    assert b.take() > max(used) and b.take() == 1000 + 2 * RESERVE + 1
    b.close()


def test_the_limit_forces_a_resync_and_answers_raise_it(tmp_path):
    path = tmp_path / "s.state"
    write_device_state(path, KEY, 100, 102)
    with _store(path) as store:
        assert [store.take() for _ in range(3)] == [100, 101, 102]
        with pytest.raises(ResyncNeeded, match="beyond"):
            store.take()
        store.vouched(101)                                   # an authenticated REPLY for 101
        assert store.limit == 101 + MAX_GAP and store.take() == 103
        assert store.confirm_start(50) == 104 and store.confirm_start(90000) == 90000


def test_a_state_for_another_key_is_no_state(tmp_path):
    path = tmp_path / "s.state"
    write_device_state(path, OTHER, 5000, 5000 + MAX_GAP)
    with _store(path) as store:
        assert store.needs_resync and "another key" in store.reason
        assert store.confirm_start(16384) == 16384


def test_the_v2_state_is_read(tmp_path):
    path = tmp_path / "s.state"
    path.write_text('{"next": 512}')
    with _store(path) as store:
        assert store.take() == 512 and store.limit == 511 + MAX_GAP
    assert json.loads(path.read_text())["format"] == "snn-device-state"


@pytest.mark.parametrize("doc", [
    '{"next": -5}', '{"next": "12"}', '{"next": 300.7}', '{"next": true}', '{"next": 4294967297}',
    '{"next": null}', '{"next": {}}', '{}', '[]', '', 'garbage', '{"next": 5, "x": 1}',
    '{"format": "snn-device-state", "version": 1, "key": "%s", "next": 5}' % key_id(KEY),
    '{"format": "snn-device-state", "version": 1, "key": "%s", "next": 5, "limit": -1}' % key_id(KEY),
    '{"format": "snn-device-state", "version": 1, "key": "%s", "next": 5, "limit": 4294967296}' % key_id(KEY),
    '{"format": "snn-device-state", "version": 1, "key": "zz", "next": 5, "limit": 9}',
    '{"format": "snn-device-state", "version": 2, "key": "%s", "next": 5, "limit": 9}' % key_id(KEY),
    '[' * 10000 + ']' * 10000,
])
def test_a_malformed_state_is_one_line_and_never_a_restart(tmp_path, doc):
    path = tmp_path / "s.state"
    path.write_text(doc)
    with pytest.raises(SnnError) as exc:
        _store(path)
    assert "\n" not in str(exc.value) and str(path) in str(exc.value)
    assert path.read_text() == doc                          # nothing overwritten
    _store(path.with_name("other.state")).close()          # and the lock was released


def test_a_fifo_as_state_is_refused_without_hanging(tmp_path):
    path = tmp_path / "s.state"
    os.mkfifo(path)
    with pytest.raises(SnnError, match="FIFO"):
        _store(path)


def test_exhaustion_is_a_clear_error(tmp_path):
    path = tmp_path / "s.state"
    write_device_state(path, KEY, MAX_COUNTER, MAX_COUNTER)
    with _store(path) as store:
        assert store.take() == MAX_COUNTER and store.remaining == 0
        with pytest.raises(SnnError, match="exhausted.*snn keys rotate"):
            store.take()


_HOLD = """
import sys, time
from codec.wire.keys import CounterStore
store = CounterStore(sys.argv[1], key=bytes(range(16)), device_id=7)
store.resynced(0) if store.needs_resync else None
print(store.take(), flush=True)
time.sleep(60)
"""


def _holder(path):
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(path)], stdout=subprocess.PIPE, text=True)
    return proc, int(proc.stdout.readline())


def test_a_second_process_on_the_same_key_and_id_refuses_and_a_killed_one_leaves_no_lock(tmp_path):
    path = tmp_path / "k.json.dev7.state"
    proc, first = _holder(path)
    try:
        with pytest.raises(SnnError, match=f"in use by another process \\(pid {proc.pid}\\)"):
            _store(path)
        with pytest.raises(SnnError, match="in use by another process"):
            _store(tmp_path / "elsewhere.state")        # same key and id, another state file
        _store(tmp_path / "dev8.state", dev=8).close()  # another device id is fine
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        with _store(path) as store:                      # no stale lock, and no reuse
            assert store.take() > first
    finally:
        proc.kill()
        proc.wait(10)


def test_an_unwritable_state_is_a_clear_error(tmp_path):
    with pytest.raises(SnnError, match="lock file"):
        _store(tmp_path / "missing-dir" / "k.state")
