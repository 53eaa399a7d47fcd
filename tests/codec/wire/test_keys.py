"""Keys files and the persisted frame counter."""
import json
import os
import stat

import pytest

from codec.wire.keys import CounterStore, counter_path, load_keys, new_entries, write_keys
from snn.errors import SnnError


def test_keys_file_round_trip_mode_0600_and_no_overwrite(tmp_path):
    path = tmp_path / "keys.json"
    entries = new_entries([7, 8], bytes.fromhex("1234abcd"))
    write_keys(path, entries)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    loaded = load_keys(path)
    assert sorted(loaded) == [7, 8] and loaded[7].key == entries[0].key and loaded[8].fingerprint.hex() == "1234abcd"
    assert entries[0].key != entries[1].key and len(entries[0].key) == 16
    with pytest.raises(SnnError, match="--force"):
        write_keys(path, entries)
    write_keys(path, new_entries([9]), force=True)
    assert sorted(load_keys(path)) == [9]


@pytest.mark.parametrize("text", ["", "[]", '{"format": "x", "devices": []}',
                                  '{"format": "snn-keys/1", "devices": [{"id": 1, "key": "00"}]}',
                                  '{"format": "snn-keys/1", "devices": [{"id": 70000, "key": "' + "00" * 16 + '"}]}'])
def test_bad_keys_files_are_one_clear_error(tmp_path, text):
    path = tmp_path / "k.json"
    path.write_text(text)
    with pytest.raises(SnnError):
        load_keys(path)
    with pytest.raises(SnnError, match="not found"):
        load_keys(tmp_path / "missing.json")


def test_duplicate_ids_refused():
    with pytest.raises(SnnError):
        new_entries([1, 1])


def test_counter_persists_ahead_and_never_repeats_across_restarts(tmp_path):
    path = counter_path(tmp_path / "keys.json", 7)
    first = CounterStore(path, block=4)
    used = [first.take() for _ in range(6)]      # crosses a block: persists the next one first
    assert used == list(range(6))
    assert json.loads(path.read_text())["reserved"] == 8
    second = CounterStore(path, block=4)          # a restart (or a crash) after counter 5
    assert second.take() == 8 and second.take() == 9
    assert set(used).isdisjoint({8, 9})


def test_damaged_counter_state_refuses(tmp_path):
    path = tmp_path / "c"
    path.write_text("{")
    with pytest.raises(SnnError, match="damaged"):
        CounterStore(path)
