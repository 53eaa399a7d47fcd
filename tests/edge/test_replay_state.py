"""The replay windows outlive the edge process (KEYS.edge-state, docs/PROTOCOL.md §4.3): a
restarted edge refuses the frames it had authenticated before, and nothing else."""
import json

import pytest
from standin import standin_registry
from wire_client import KEYS, data_frame

from edge.core import EdgeConfig, EdgeCore
from snn.errors import SnnError


def _core(path) -> EdgeCore:
    return EdgeCore(standin_registry(), EdgeConfig(keys=KEYS, state_path=str(path)))


def _feed(core: EdgeCore, frames) -> list[bytes]:
    out: list[bytes] = []
    for frame in frames:
        core.offer(frame, None, out.append, None, "udp")
    return out


def test_a_restarted_edge_refuses_old_frames(tmp_path):
    path = tmp_path / "keys.json.edge-state"
    first = _core(path)
    frames = [data_frame(k, device=9) for k in range(3)] + [data_frame(1, device=10)]
    _feed(first, frames)
    assert first.metrics.reject_counts["replay"] == 0
    first._save_windows()
    doc = json.loads(path.read_text())
    assert doc["format"] == "snn-edge-counters/1" and set(doc["highest"]) == {"9", "10"}
    again = _core(path)                       # the restart
    assert _feed(again, frames) == []         # silence: nothing goes back to a replay
    assert again.metrics.reject_counts["replay"] == len(frames)
    _feed(again, [data_frame(2, device=9)])   # a new counter is fine
    assert again.metrics.reject_counts["replay"] == len(frames)


def test_a_damaged_state_file_is_one_clear_error(tmp_path):
    path = tmp_path / "state"
    path.write_text("{")
    with pytest.raises(SnnError, match="damaged"):
        _core(path)
