"""The replay state outlives the edge process (KEYS.edge-state, docs/PROTOCOL.md §4.3, §4.8): it is
required, committed before the replies that depend on it, and a restarted edge refuses what it
had authenticated before — and nothing else."""
import asyncio
import json

import pytest
from standin import standin_registry
from wire_client import KEYS, data_frame, empty_state, key_for, open_reply

from codec.wire.edge_state import EdgeState, edge_state_path, load_edge_state, write_edge_state
from codec.wire.frame import ErrorCode, ErrorReply, Reply
from codec.wire.keys import key_id
from codec.wire.replay import MAX_GAP
from edge.core import EdgeConfig, EdgeCore
from edge.replay_state import NEAR_EXHAUSTION
from snn.errors import SnnError


def _core(path, **kw) -> EdgeCore:
    return EdgeCore(standin_registry(), EdgeConfig(keys=KEYS, state_path=str(path), **kw))


def _feed(core: EdgeCore, frames) -> list[bytes]:
    out: list[bytes] = []
    for frame in frames:
        core.offer(frame, None, out.append, ("192.0.2.1", 1), "udp")
    return out


def _serve(core: EdgeCore, frames) -> list:
    """Run the core on a loop, offer `frames`, and return the replies opened."""
    async def main():
        core.start()
        out = _feed(core, frames)
        for _ in range(400):
            if len(out) >= len(frames):
                break
            await asyncio.sleep(0.01)
        await core.stop()
        return out
    return [open_reply(r) for r in asyncio.run(main())]


def test_a_reply_goes_out_only_after_its_counter_is_on_disk(tmp_path):
    path = empty_state()
    core = _core(path)
    frames = [data_frame(k, device=9) for k in range(3)] + [data_frame(1, device=10)]
    replies = _serve(core, frames)
    assert len(replies) == 4 and all(isinstance(r, Reply) for r in replies)
    on_disk = load_edge_state(path).devices
    sent = {int.from_bytes(f[2:4], "big"): int.from_bytes(f[:2], "big") for f in frames}
    # every answered counter is at or below what the file says its device used
    assert all((r.counter & 0xFFFF) in sent and r.counter <= on_disk[sent[r.counter & 0xFFFF]].highest
               for r in replies)
    assert on_disk[9].key_id == key_id(key_for(9)) and core.state.writes >= 1
    again = _core(path)                       # the restart
    assert _feed(again, frames) == []         # silence: nothing goes back to a replay
    assert again.metrics.reject_counts["replay"] == len(frames)
    assert _serve(_core(path), [data_frame(2, device=9)])[0].label == 2    # a new counter is fine


@pytest.mark.parametrize("content", ["{", '{"format": "snn-edge-state", "version": 1, "devices": {"7": '
                                          '{"key": "00000000", "highest": -1}}}', "{}", "[]"])
def test_a_damaged_state_refuses_to_start(tmp_path, content):
    path = tmp_path / "keys.json.edge-state"
    path.write_text(content)
    with pytest.raises(SnnError, match="reset-replay-state"):
        _core(path)


def test_a_missing_state_refuses_to_start_unless_reset(tmp_path, caplog):
    path = tmp_path / "keys.json.edge-state"
    with pytest.raises(SnnError, match="does not exist"):
        _core(path)
    core = _core(path, reset_replay_state=True)
    assert "REPLAY STATE RESET" in caplog.text
    doc = json.loads(path.read_text())
    assert doc["devices"]["7"] == {"key": key_id(key_for(7)), "unknown": True}
    # unknown history: the first authenticated counter is accepted whatever it is
    assert _feed(core, [data_frame(1, device=7, counter=3_000_000, long_counter=True)]) == []
    assert len(core.batcher) == 1


def test_a_device_absent_from_the_state_is_new_and_an_entry_of_another_key_too(tmp_path):
    path = tmp_path / "keys.json.edge-state"
    from codec.wire.edge_state import CounterRecord
    write_edge_state(path, EdgeState({9: CounterRecord("deadbeef", 10_000), 11: CounterRecord(key_id(key_for(11)), 500)}))
    core = _core(path)
    _feed(core, [data_frame(1, device=9, counter=5), data_frame(1, device=11, counter=400),
                 data_frame(1, device=11, counter=501)])
    counts = core.metrics.reject_counts
    assert counts["replay"] == 1 and len(core.batcher) == 2    # 9 is new under its key; 11's 400 was used


def test_beyond_the_gap_is_an_authenticated_resync_and_moves_nothing(tmp_path):
    path = empty_state()
    core = _core(path)
    out = _feed(core, [data_frame(1, device=12, counter=100, long_counter=True),
                       data_frame(1, device=12, counter=100 + MAX_GAP + 1, long_counter=True)])
    [error] = [open_reply(f) for f in out]
    assert isinstance(error, ErrorReply) and error.code == ErrorCode.RESYNC
    assert core.state.window(12).top == 100 and core.metrics.reject_counts["gap"] == 1


def test_a_counter_near_exhaustion_is_reported(tmp_path, caplog):
    from codec.wire.edge_state import CounterRecord
    path = tmp_path / "keys.json.edge-state"
    write_edge_state(path, EdgeState({13: CounterRecord(key_id(key_for(13)), NEAR_EXHAUSTION - 10)}))
    core = _core(path)
    assert 13 not in core.state.near_exhaustion
    _feed(core, [data_frame(1, device=13, counter=NEAR_EXHAUSTION + 5, long_counter=True)])
    assert 13 in core.state.near_exhaustion and "rotate" in caplog.text
    assert "snn_edge_counters_near_exhaustion 1.0" in core.metrics_text().decode()


def test_state_path_is_required_with_keys():
    with pytest.raises(ValueError, match="state_path"):
        EdgeConfig(keys=KEYS)
    assert edge_state_path("/x/keys.json").name == "keys.json.edge-state"


def test_without_a_loop_a_commit_is_written_at_once_and_what_waited_for_it_runs():
    """A library caller without an event loop: `commit_floor` writes synchronously and its `then`
    runs after the write (not never)."""
    from edge.replay_state import ReplayState

    path = empty_state()
    state = ReplayState(path, KEYS)
    ran: list[int | None] = []
    state.commit_floor(12, 99, lambda: ran.append(load_edge_state(path).devices[12].highest))
    assert ran == [99] and state.durable(state.version)
