"""The replay windows outlive the edge process (FILE.edge-state): a restarted edge refuses old
counters and still follows a device whose counter passed many 12-bit wraps."""
import pytest
from conftest import FleetDevice
from standin import standin_registry, write_test_keys

from codec.wire.keys import load_keys
from edge.core import EdgeConfig, EdgeCore, Rejected


def test_restarted_edge_keeps_replay_windows(tmp_path):
    keys = load_keys(write_test_keys(tmp_path / "keys.json"))
    state = str(tmp_path / "keys.json.edge-state")
    first = EdgeCore(standin_registry(), EdgeConfig(keys=keys, state_path=state))
    dev = FleetDevice(3, counter=10_000)
    sent = [dev.frame(1) for _ in range(3)]
    for frame in sent:
        first._authenticate(frame)
    first.save_state()
    again = EdgeCore(standin_registry(), EdgeConfig(keys=keys, state_path=state))
    for frame in sent:                                   # replays after the restart
        with pytest.raises(Rejected) as exc:
            again._authenticate(frame)
        assert exc.value.reason == "replay"
    _, _, counter = again._authenticate(dev.frame(1))    # 10,003: beyond 12 bits, followed
    assert counter == 10_003


def test_edge_without_keys_refuses_to_start():
    from snn.errors import SnnError
    with pytest.raises(SnnError, match="--keys"):
        EdgeCore(standin_registry(), EdgeConfig())
