"""The edge's resync desk (docs/PROTOCOL.md §4.7) on a real ReplayState file, on an event loop: an
ACK only once its commit is on disk, replays cost the device nothing, a replayed RESYNC does not
displace the device's own exchange, a repeated CONFIRM is idempotent until DATA shows the ACK."""
import asyncio
import json

from codec.wire import control
from codec.wire.edge_state import CounterRecord, EdgeState, write_edge_state
from codec.wire.keys import DeviceKey, key_id
from codec.wire.replay import MAX_GAP
from edge.auth import Keyring
from edge.replay_state import ReplayState
from edge.resync import ResyncDesk

KEY = bytes(range(16))
FP = bytes.fromhex("2bf16127")
DEV = 7


def _desk(tmp_path, highest=None):
    keys = {DEV: DeviceKey(DEV, KEY, FP)}
    path = tmp_path / "keys.json.edge-state"
    records = {} if highest is None else {DEV: CounterRecord(key_id(KEY), highest)}
    write_edge_state(path, EdgeState(records))
    state = ReplayState(str(path), keys)
    return ResyncDesk(Keyring({}, keys), state), state, path


def _on_disk(path) -> dict:
    return json.loads(path.read_text())["devices"].get(str(DEV))


def _resync(nonce, copies=1):
    return control.encode_resync(key=KEY, device_id=DEV, fingerprint=FP, nonce=nonce, copies=copies)


def _confirm(nonce, start, copies=1):
    return control.encode_confirm(key=KEY, device_id=DEV, fingerprint=FP, nonce=nonce, start=start, copies=copies)


def _down(data, nonce):
    return control.parse_control_down(data, key=KEY, device_id=DEV, fingerprint=FP, nonce=nonce)


async def _settle(state):
    for _ in range(400):
        if state.committed >= state.version and not state._waiting:
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the replay state never committed")


def test_the_ack_goes_out_only_once_the_commit_is_on_disk(tmp_path):
    async def run():
        desk, state, path = _desk(tmp_path, highest=500)
        got = []
        nonce = control.new_nonce()
        assert desk.handle(_resync(nonce, 3), got.append) == "resync_offer"
        offer = _down(got.pop(), nonce)
        assert (offer.kind, offer.start, offer.status, offer.copies) == (control.ControlKind.OFFER,
                                                                         500 + MAX_GAP + 1, 0, 3)
        start = offer.start + 10       # a device with its own, higher, next
        seen_on_disk = []

        def reply(data):
            seen_on_disk.append(_on_disk(path))
            got.append(data)

        assert desk.handle(_confirm(nonce, start, 3), reply) == "resync_ack"
        assert got == []               # nothing before the disk has it
        await _settle(state)
        ack = _down(got.pop(), nonce)
        assert (ack.kind, ack.start, ack.status) == (control.ControlKind.ACK, start, 0)
        assert seen_on_disk == [{"key": key_id(KEY), "highest": start - 1}]
        assert state.window(DEV).verdict(start - 1) == "replay" and state.window(DEV).verdict(start) is None
        await state.close()
    asyncio.run(run())


def test_a_replayed_resync_costs_the_device_nothing_and_displaces_nothing(tmp_path):
    async def run():
        desk, state, _ = _desk(tmp_path)
        got = []
        recorded = control.new_nonce()
        assert desk.handle(_resync(recorded), got.append) == "resync_offer"     # captured by the attacker
        got.clear()
        for _ in range(200):           # the same frame, again and again: no answer, no budget spent
            assert desk.handle(_resync(recorded), got.append) == "replay"
        assert got == []
        mine = control.new_nonce()     # the device's own exchange
        assert desk.handle(_resync(mine), got.append) == "resync_offer"
        start = _down(got.pop(), mine).start
        assert start == MAX_GAP        # a new device: H = -1
        # RESYNCs this edge never saw (recorded elsewhere, or before a restart) open exchanges of
        # their own, but the device's stays open: its CONFIRM still authenticates
        for _ in range(2):
            assert desk.handle(_resync(control.new_nonce()), got.append) == "resync_offer"
        got.clear()
        assert desk.handle(_confirm(mine, start), got.append) == "resync_ack"
        await _settle(state)
        assert _down(got.pop(), mine).start == start
        await state.close()
    asyncio.run(run())


def test_a_repeated_confirm_is_idempotent_until_data_shows_the_ack(tmp_path):
    async def run():
        desk, state, path = _desk(tmp_path, highest=10)
        got = []
        nonce = control.new_nonce()
        desk.handle(_resync(nonce), got.append)
        start = _down(got.pop(), nonce).start
        desk.handle(_confirm(nonce, start), got.append)
        await _settle(state)
        first, writes = got.pop(), state.writes
        assert desk.handle(_confirm(nonce, start), got.append) == "resync_ack"   # its ACK was lost
        assert got.pop() == first and state.writes == writes                      # the same ACK, no commit
        assert desk.handle(_confirm(nonce, start + 1), got.append) == "resync_refused" and got == []
        state.mark(DEV, start)         # the device's first DATA from its start authenticated
        state.kick()
        assert desk.handle(_confirm(nonce, start), got.append) == "replay"
        assert desk.handle(_confirm(nonce, start), got.append) == "unmatched" and got == []
        await _settle(state)
        assert _on_disk(path)["highest"] == start
        await state.close()
    asyncio.run(run())


def test_a_confirm_below_the_offer_or_without_an_exchange_commits_nothing(tmp_path):
    async def run():
        desk, state, path = _desk(tmp_path, highest=1000)
        got = []
        nonce = control.new_nonce()
        assert desk.handle(_confirm(nonce, 5000), got.append) == "unmatched"     # no exchange open
        desk.handle(_resync(nonce), got.append)
        offered = _down(got.pop(), nonce).start
        assert desk.handle(_confirm(nonce, offered - 1), got.append) == "resync_refused"
        forged = control.encode_confirm(key=bytes(16 * [9]), device_id=DEV, fingerprint=FP, nonce=nonce,
                                        start=offered)
        assert desk.handle(forged, got.append) == "auth"
        assert got == [] and state.version == 0 and _on_disk(path)["highest"] == 1000
        await state.close()
    asyncio.run(run())
