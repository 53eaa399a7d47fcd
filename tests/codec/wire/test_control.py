"""The resynchronisation exchange's frames (docs/PROTOCOL.md §4.7) and the v2.1 window rules (§4.3):
real frames, real bit flips, every field tampered with."""
from dataclasses import dataclass

import numpy as np
import pytest

from codec.wire import control
from codec.wire.control import ControlKind, ResyncStatus
from codec.wire.frame import encode_inference, parse_data
from codec.wire.replay import MAX_COUNTER, MAX_GAP, ReplayWindow
from snn.errors import FrameError

KEY = bytes(range(16))
OTHER = bytes(range(1, 17))
FP = bytes.fromhex("1234abcd")
NONCE = bytes.fromhex("0102030405")


@dataclass
class Peer:
    key: bytes = KEY
    fingerprint: bytes = FP
    payload_bytes: int = 37


def _peers(dev):
    return [Peer()] if dev == 7 else []


def _up(frame, pending=None):
    return control.parse_control_up(frame, _peers, lambda dev: [] if pending is None else [pending])


def _down(frame, nonce=NONCE, key=KEY):
    return control.parse_control_down(frame, key=key, device_id=7, fingerprint=FP, nonce=nonce)


@pytest.mark.parametrize("copies", [1, 3, 5])
def test_every_control_frame_round_trips_at_each_copy_count(copies):
    ctx = dict(key=KEY, device_id=7, fingerprint=FP, nonce=NONCE, copies=copies)
    r = control.encode_resync(**ctx)
    assert len(r) == 15 * copies and _up(r).nonce == NONCE and _up(r).copies == copies
    c = control.encode_confirm(start=12345, **ctx)
    assert _up(c, NONCE).start == 12345 and _up(c, NONCE).kind == ControlKind.CONFIRM
    o = control.encode_offer(start=99, status=ResyncStatus.NO_STATE, **ctx)
    got = _down(o)
    assert (got.kind, got.start, got.status, got.copies) == (ControlKind.OFFER, 99, 1, copies)
    assert _down(control.encode_ack(start=99, **ctx)).kind == ControlKind.ACK


def test_a_reply_bound_to_another_nonce_or_key_is_refused():
    offer = control.encode_offer(key=KEY, device_id=7, fingerprint=FP, nonce=NONCE, start=16898)
    for kwargs in (dict(nonce=bytes(5)), dict(key=OTHER)):
        with pytest.raises(FrameError) as exc:
            _down(offer, **kwargs)
        assert exc.value.reason == "auth"
    with pytest.raises(FrameError) as exc:   # another device's id in the MIC
        control.parse_control_down(offer, key=KEY, device_id=8, fingerprint=FP, nonce=NONCE)
    assert exc.value.reason == "auth"


def test_a_confirm_authenticates_only_against_the_open_exchange():
    confirm = control.encode_confirm(key=KEY, device_id=7, fingerprint=FP, nonce=NONCE, start=20000)
    with pytest.raises(FrameError) as exc:
        _up(confirm, None)
    assert exc.value.reason == "unmatched"
    with pytest.raises(FrameError) as exc:    # a replayed CONFIRM of an earlier exchange
        _up(confirm, bytes.fromhex("0a0b0c0d0e"))
    assert exc.value.reason == "auth"
    with pytest.raises(FrameError) as exc:     # unprovisioned device id: no key to try
        control.parse_control_up(control.encode_resync(key=KEY, device_id=9, fingerprint=FP, nonce=NONCE),
                                 _peers, lambda dev: None)
    assert exc.value.reason == "auth"


def test_every_changed_field_bit_is_refused_and_bit_errors_are_corrected():
    """Flip each info bit of the block and re-encode the parity (an attacker's edit, not noise):
    nothing authenticates. Then flip up to 4 bits as noise: BCH corrects them."""
    from codec.wire import bch
    resync = control.encode_resync(key=KEY, device_id=7, fingerprint=FP, nonce=NONCE)
    info = int.from_bytes(resync, "big") >> 28
    accepted = 0
    for bit in range(92):
        forged = bch.encode(info ^ (1 << bit), 92).to_bytes(15, "big")
        try:
            got = _up(forged)
            accepted += got.device_id == 7 and got.nonce == NONCE
        except FrameError:
            pass
    assert accepted == 0
    rng = np.random.default_rng(1)
    word = int.from_bytes(resync, "big")
    for _ in range(50):
        noisy = word
        for i in rng.choice(120, size=4, replace=False):
            noisy ^= 1 << int(i)
        got = _up(noisy.to_bytes(15, "big"))
        assert got.nonce == NONCE and got.header_errors == 4


def test_lengths_kinds_and_reserved_bits():
    from codec.wire import bch
    with pytest.raises(FrameError) as exc:
        _up(bytes(16))
    assert exc.value.reason == "length"
    offer = control.encode_offer(key=KEY, device_id=7, fingerprint=FP, nonce=NONCE, start=5)
    with pytest.raises(FrameError) as exc:   # a downlink frame sent up
        _up(offer)
    assert exc.value.reason == "kind"
    with pytest.raises(FrameError) as exc:
        _down(control.encode_resync(key=KEY, device_id=7, fingerprint=FP, nonce=NONCE))
    assert exc.value.reason == "kind"
    info = int.from_bytes(offer, "big") >> 28
    with pytest.raises(FrameError) as exc:
        _down(bch.encode(info | (1 << 40), 92).to_bytes(15, "big"))
    assert exc.value.reason == "reserved"
    assert control.CONTROL_LENGTHS == {15, 45, 75}
    assert not control.CONTROL_LENGTHS & {13, 39, 65}       # never confused with a REPLY/ERROR


def test_a_control_frame_never_authenticates_as_data_nor_data_as_control():
    resync = control.encode_resync(key=KEY, device_id=7, fingerprint=FP, nonce=NONCE)
    for n in (15, 45, 75):
        frame = (resync * 5)[:n]
        with pytest.raises(FrameError):
            parse_data(frame, _peers, lambda dev, low: low)
    payload = bytes(range(3))      # a 15-byte DATA frame: 12-byte block + 3 payload bytes
    (data,) = encode_inference(payload, key=KEY, device_id=7, fingerprint=FP, counter=5)
    assert len(data) == 15
    with pytest.raises(FrameError):
        _up(data)


def test_offers_leave_room_and_confirms_never_go_below_the_offer():
    assert control.offer_for(None) == (ResyncStatus.OK, MAX_GAP)
    assert control.offer_for(513) == (ResyncStatus.OK, 513 + MAX_GAP + 1)
    status, start = control.offer_for(MAX_COUNTER - MAX_GAP)
    assert status == ResyncStatus.EXHAUSTED
    assert control.offer_for(MAX_COUNTER - 2 * MAX_GAP) == (ResyncStatus.OK, MAX_COUNTER + 1 - MAX_GAP)
    assert control.offer_for(7, known=False) == (ResyncStatus.NO_STATE, 0)
    assert control.confirmable(16898, 16898, ResyncStatus.OK)
    assert control.confirmable(16898, 40000, ResyncStatus.OK)
    assert not control.confirmable(16898, 16897, ResyncStatus.OK)
    assert control.confirmable(0, 5, ResyncStatus.NO_STATE)
    assert not control.confirmable(0, MAX_COUNTER, ResyncStatus.NO_STATE)
    assert not control.confirmable(5, 5, ResyncStatus.EXHAUSTED)


def test_nonces_are_fresh():
    assert len({control.new_nonce() for _ in range(10000)}) == 10000


# --- v2.1 window rules --------------------------------------------------------------------------

def test_gap_rule_and_reconstruction_without_a_tie():
    w = ReplayWindow()
    assert w.verdict(0) is None and w.verdict(MAX_GAP - 1) is None and w.verdict(MAX_GAP) == "gap"
    w.mark(100)
    assert w.verdict(100 + MAX_GAP) is None and w.verdict(101 + MAX_GAP) == "gap"
    assert w.full_counter(0xFFFF) == 0xFFFF and w.verdict(0xFFFF) == "gap"    # near 0: no jump of 65,535
    for top in (70000, 0x12345678):
        w = ReplayWindow.restored(top)
        values = {w.full_counter(low) for low in range(1 << 16)}
        assert len(values) == 1 << 16                     # one value per low-bit pattern: no tie
        assert max(values) == top + MAX_GAP and min(values) >= top + MAX_GAP - 0xFFFF
    w = ReplayWindow.restored(MAX_COUNTER - 5)
    assert all(w.full_counter(low) <= MAX_COUNTER for low in range(1 << 16))


def test_one_forged_success_moves_the_window_by_at_most_the_gap():
    w = ReplayWindow.restored(1000)
    assert w.verdict(MAX_COUNTER) == "gap"           # the lucky guess near 2^32 cannot lock a device out
    w.mark(1000 + MAX_GAP)                            # the worst a forgery can do
    assert w.top == 1000 + MAX_GAP


def test_commit_floor_marks_everything_below_as_used():
    w = ReplayWindow()
    w.mark(10)
    w.commit_floor(16393)
    assert w.top == 16393 and all(w.verdict(c) == "replay" for c in (10, 16330, 16393))
    assert w.verdict(16394) is None
    w = ReplayWindow()
    w.mark(100)
    w.commit_floor(90)                                # below the top: the window below it fills
    assert w.verdict(95) is None and w.verdict(90) == "replay" and w.verdict(60) == "replay"


def test_unknown_history_accepts_any_first_counter_then_the_normal_rules():
    w = ReplayWindow(unknown=True)
    assert w.verdict(3_000_000_000) is None
    w.mark(3_000_000_000)
    assert not w.unknown and w.verdict(3_000_000_000 + MAX_GAP + 1) == "gap"


def test_insecure_windows_have_no_gap():
    w = ReplayWindow(max_gap=None)
    w.mark(5)
    assert w.verdict(3_000_000_000) is None
