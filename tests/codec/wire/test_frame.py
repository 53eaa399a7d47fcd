"""Frame v2 (codec/wire/frame.py): round trips, exact lengths, every failure reason, the BCH code,
survival measured on real flips (channel.bit_errors), replay windows and the counter store."""
import random
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from channel.bit_errors import IIDModel
from codec.wire import bch
from codec.wire.frame import (
    BLOCK_BYTES,
    ErrorCode,
    Kind,
    data_bytes,
    encode_error,
    encode_inference,
    encode_reply,
    fitting_copies,
    frame_plan,
    header_copies_for,
    parse_data,
    parse_reply,
)
from codec.wire.keys import load_keys, new_keys, write_keys
from codec.wire.reassembly import Reassembler
from codec.wire.replay import ReplayWindow
from snn.errors import FrameError, SnnError

KEY = bytes(range(16))
FP = bytes.fromhex("1234abcd")


@dataclass
class Peer:
    key: bytes = KEY
    fingerprint: bytes = FP
    payload_bytes: int = 37


PEER = Peer()


def _payload(n=37, seed=0):
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def _parse(frame, peer=PEER, counter_high=0):
    return parse_data(frame, lambda dev: [peer] if dev == 7 else [], lambda dev, low: counter_high | low,
                      frozenset([peer.payload_bytes]))


def _frames(counter=5, **kw):
    kw.setdefault("mtu", 1400)
    return encode_inference(_payload(), key=KEY, device_id=7, fingerprint=FP, counter=counter, **kw)


@pytest.mark.parametrize("copies", [1, 3, 5])
@pytest.mark.parametrize("mtu", [40, 51, 64, 222, 1400])
@pytest.mark.parametrize("truth", [None, 9])
def test_round_trip_every_layout(copies, mtu, truth):
    try:
        frames = _frames(counter=70001, mtu=mtu, copies=copies, truth=truth)
    except ValueError:
        assert 37 + (3 if truth else 0) > 16 * (mtu - copies * 13)  # no room, or > 16 fragments
        return
    assert all(len(f) <= mtu for f in frames)
    assert sum(map(len, frames)) == data_bytes(37, mtu, copies, truth is not None)
    parsed = [_parse(f, counter_high=0x10000) for f in frames]
    assert b"".join(p.data for p in parsed) == _payload()
    assert {(p.counter, p.copies, p.frag_count, p.device_id) for p in parsed} == {(70001, copies, len(frames), 7)}
    assert parsed[-1].truth == truth and all(p.header_errors == 0 for p in parsed)


def test_one_copy_at_mtu_51_is_one_frame_and_the_budget_is_12_bytes():
    (frame,) = _frames(mtu=51)
    assert len(frame) == 37 + BLOCK_BYTES == 49
    assert frame_plan(37, 51, 1, truth=True) == 2  # test mode: 52 B does not fit, 2 fragments


def test_device_degrades_copies_to_fit_the_mtu_instead_of_stopping():
    assert fitting_copies(37, 51, 5) == (3, 4)
    assert fitting_copies(37, 222, 5) == (5, 1)
    assert fitting_copies(37, 40, 5) == (1, 2)
    with pytest.raises(ValueError, match="no room"):
        fitting_copies(37, 13, 1)


def test_payload_is_encrypted_and_errors_stay_in_place():
    (frame,) = _frames()
    assert _payload() not in frame
    damaged = bytearray(frame)
    damaged[20] ^= 0x81
    damaged[40] ^= 0x04
    got = bytearray(_parse(bytes(damaged)).data)
    want = bytearray(_payload())
    got[20 - 12] ^= 0x81
    got[40 - 12] ^= 0x04
    assert bytes(got) == bytes(want)


def test_keystream_differs_per_counter_device_and_direction():
    a = _frames(counter=1)[0][12:]
    b = _frames(counter=2)[0][12:]
    c = encode_inference(_payload(), key=KEY, device_id=8, fingerprint=FP, counter=1)[0][12:]
    assert len({a, b, c}) == 3


@pytest.mark.parametrize("copies", [1, 3, 5])
def test_truncation_and_extension_never_pass(copies):
    (frame,) = _frames(copies=copies)
    for cut in range(len(frame)):
        with pytest.raises(FrameError):
            _parse(frame[:cut])
    for extra in (b"\x00", b"\x00" * 3, frame[:12]):
        with pytest.raises(FrameError):
            _parse(frame + extra)


def test_failure_reasons():
    (frame,) = _frames()
    cases = {
        "length": b"",
        "damaged": bytes([0x55]) * 49,
        "version": bytes(49),  # all zeros is a BCH codeword: version 0
        "auth": encode_inference(_payload(), key=bytes(16), device_id=7, fingerprint=FP, counter=5)[0],
    }
    for reason, data in cases.items():
        with pytest.raises(FrameError) as exc:
            _parse(data)
        assert exc.value.reason == reason, (reason, exc.value)
    with pytest.raises(FrameError) as exc:  # unknown device id
        parse_data(frame, lambda dev: [], lambda dev, low: low)
    assert exc.value.reason == "auth"
    with pytest.raises(FrameError) as exc:  # other codec provisioned: MIC covers the fingerprint
        _parse(frame, Peer(fingerprint=bytes(4)))
    assert exc.value.reason == "auth"
    with pytest.raises(FrameError) as exc:  # authenticated, but the codec takes 36 bytes
        parse_data(frame, lambda dev: [Peer(payload_bytes=36)], lambda dev, low: low)
    assert exc.value.reason == "bad_length"
    with pytest.raises(FrameError) as exc:  # a reply is not DATA
        _parse(encode_reply(key=KEY, device_id=7, fingerprint=FP, counter=5, label=1, confidence=1, ber=0) + bytes(36))
    assert exc.value.reason in ("kind", "damaged", "length")
    with pytest.raises(FrameError) as exc:  # wrong 32-bit counter reconstruction = MIC failure
        _parse(frame, counter_high=0x10000)
    assert exc.value.reason == "auth"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_only_raise_frame_error(data):
    with pytest.raises(FrameError):
        _parse(data)


def test_reply_and_error_round_trip_and_authentication():
    for copies in (1, 3, 5):
        reply = encode_reply(key=KEY, device_id=7, fingerprint=FP, counter=70000, label=4, confidence=0.93,
                             ber=0.0123, copies=copies)
        assert len(reply) == 13 * copies
        got = parse_reply(reply, key=KEY, device_id=7, fingerprint=FP, full_counter=lambda low: 70000)
        assert (got.counter, got.label) == (70000, 4) and abs(got.ber - 0.0123) / 0.0123 < 0.04
    err = encode_error(key=KEY, device_id=7, fingerprint=FP, counter=9, code=ErrorCode.UNSUPPORTED, detail=2)
    got = parse_reply(err, key=KEY, device_id=7, fingerprint=FP, full_counter=lambda low: 9)
    assert got.code == ErrorCode.UNSUPPORTED and "v2" in got.text
    for kw, reason in [({"key": bytes(16)}, "auth"), ({"device_id": 8}, "auth"), ({"fingerprint": bytes(4)}, "auth")]:
        args = dict(key=KEY, device_id=7, fingerprint=FP, full_counter=lambda low: 9) | kw
        with pytest.raises(FrameError) as exc:
            parse_reply(err, **args)
        assert exc.value.reason == reason
    with pytest.raises(FrameError) as exc:
        parse_reply(err, key=KEY, device_id=7, fingerprint=FP, full_counter=lambda low: None)
    assert exc.value.reason == "unmatched"
    with pytest.raises(FrameError) as exc:  # a 3-copy reply truncated to one copy: MIC binds copies
        parse_reply(encode_reply(key=KEY, device_id=7, fingerprint=FP, counter=9, label=1, confidence=1, ber=0,
                                 copies=3)[:13], key=KEY, device_id=7, fingerprint=FP, full_counter=lambda low: 9)
    assert exc.value.reason == "auth"


# --- BCH -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [64, 96, 104])
def test_bch_corrects_up_to_t_and_mostly_detects_beyond(n):
    rng = random.Random(n)
    detected = wrong = 0
    for _ in range(400):
        msg = rng.getrandbits(n - 28)
        word = bch.encode(msg, n - 28)
        errors = rng.randint(0, 4)
        bad = word
        for pos in rng.sample(range(n), errors):
            bad ^= 1 << pos
        assert bch.decode(bad, n) == (word, errors)
        bad = word
        for pos in rng.sample(range(n), 6):  # beyond t (distance 6 < 9): never "fixed" to the sent word
            bad ^= 1 << pos
        got = bch.decode(bad, n)
        detected += got is None
        wrong += got is not None and got[0] != word
    assert detected > 0.9 * 400 and detected + wrong == 400


def test_bch_prefix_remainders_match_each_prefix():
    rng = random.Random(3)
    data = bytes(rng.getrandbits(8) for _ in range(40))
    assert bch.prefix_remainders(data, [12, 13, 14, 15]) == {k: bch.remainder(data[:k]) for k in (12, 13, 14, 15)}


def test_long_counter_and_repeated_headers_parse_clean_and_damaged():
    """Readings other than the common one (long counter, three header copies): clean frames are
    found by their codeword block before any BCH decoding; damaged ones still decode."""
    rng = random.Random(5)
    peer = Peer(payload_bytes=37)
    payload = bytes(rng.getrandbits(8) for _ in range(37))
    for copies in (1, 3):
        frame = encode_inference(payload, key=KEY, device_id=9, fingerprint=FP, counter=70000 + copies,
                                 copies=copies, long_counter=True)[0]
        got = parse_data(frame, lambda dev: [peer], lambda dev, low: low, frozenset({37}))
        assert (got.device_id, got.counter, got.data, got.header_errors) == (9, 70000 + copies, payload, 0)
        bad = bytearray(frame)
        for pos in rng.sample(range(14 * 8), 3):   # three flips in the first header block
            bad[pos // 8] ^= 0x80 >> pos % 8
        got = parse_data(bytes(bad), lambda dev: [peer], lambda dev, low: low, frozenset({37}))
        assert (got.counter, got.data, got.header_errors) == (70000 + copies, payload, 3)


def test_bch_generator_is_the_lcm_of_four_minimal_polynomials():
    assert bch.GENERATOR.bit_length() - 1 == 28
    for j in (1, 3, 5, 7):  # alpha^j is a root: g(alpha^j) = 0
        acc = 0
        for i in range(29):
            if bch.GENERATOR >> i & 1:
                acc ^= bch.EXP[(i * j) % 127]
        assert acc == 0


def _survival(copies, ber, trials, seed=0):
    """Fraction of one-fragment frames whose header is lost on an i.i.d. channel (real flips)."""
    rng = np.random.default_rng(seed)
    frames = np.frombuffer(b"".join(_frames(counter=c, copies=copies)[0] for c in range(trials)),
                           dtype=np.uint8).reshape(trials, -1)
    damaged, _ = IIDModel(ber).corrupt(frames, rng)
    lost = 0
    for c, row in enumerate(damaged):
        try:
            assert _parse(row.tobytes()).counter == c
        except FrameError:
            lost += 1
    return lost / trials


def test_header_loss_measured_on_real_flips():
    # binomial model: 0.29 % at 1e-2 (1 copy), 0.10 % at 5e-2 (3), 0.21 % at 1e-1 (5)
    assert _survival(1, 1e-2, 3000) <= 0.01
    assert _survival(3, 5e-2, 1000) <= 0.01
    assert _survival(5, 1e-1, 1000) <= 0.01
    assert _survival(1, 1e-1, 300) > 0.5   # one copy is not enough there: copies are needed


def test_header_copies_policy():
    assert [header_copies_for(b) for b in (0, 1e-2, 3e-2, 1e-1, 0.2)] == [1, 1, 3, 5, 5]


# --- replay window, reassembly ---------------------------------------------------------------------

def test_replay_window():
    w = ReplayWindow()
    assert w.full_counter(5) == 5 and not w.seen(5)
    w.mark(5)
    assert w.seen(5) and not w.seen(4) and not w.seen(6)
    w.mark(100)
    assert w.seen(5) and not w.seen(99) and w.seen(36)   # 100 - 36 = 64: too old to tell
    w.mark(99)
    assert w.seen(99)
    w.mark(0xFFF0)
    assert w.full_counter(0x0003) == 0x10003               # the low bits wrapped forward
    w.mark(0x10003)
    assert w.full_counter(0xFFF5) == 0xFFF5 and w.full_counter(0x0100) == 0x10100


def test_reassembly_with_lost_fragment_gives_erasures_and_duplicates_are_counted():
    frames = _frames(counter=9, mtu=30)
    parsed = [_parse(f) for f in frames]
    r = Reassembler(timeout_s=0.5)
    assert r.add(parsed[0], 0.0) == [] and r.add(parsed[0], 0.0) == [] and r.duplicates == 1
    assert r.pending(7, 9)
    for p in parsed[2:]:
        assert r.add(p, 0.1) == []
    (item,) = r.expire(1.0)
    assert not item.complete and not r.pending(7, 9)
    missing = range(*[(s.start, s.stop) for s in [__import__("codec.wire.frame", fromlist=["x"]).fragment_slice(
        37, len(frames), 1)]][0])
    assert item.erased[missing.start:missing.stop].all() and not item.erased[:missing.start].any()


# --- keys and the counter store ---------------------------------------------------------------------

def test_keys_file_mode_refusal_and_round_trip(tmp_path):
    path = tmp_path / "k.json"
    keys = new_keys([7, 8], FP)
    write_keys(path, keys)
    assert path.stat().st_mode & 0o777 == 0o600
    with pytest.raises(SnnError, match="--force"):
        write_keys(path, keys)
    write_keys(path, new_keys([7]), force=True)
    loaded = load_keys(path)
    assert set(loaded) == {7} and loaded[7].fingerprint is None and loaded[7].key != keys[0].key
    path.write_text("{}")
    with pytest.raises(SnnError, match="not an snn-keys"):
        load_keys(path)


def test_kind_values_are_the_documented_ones():
    assert [int(k) for k in Kind] == [0, 1, 2, 3]


@pytest.mark.parametrize("mtu", [51, 1400])
def test_long_counter_resynchronises_a_receiver_that_lost_track(mtu):
    counter = 0x12345678
    frames = encode_inference(_payload(), key=KEY, device_id=7, fingerprint=FP, counter=counter, mtu=mtu,
                              long_counter=True)
    assert len(frames[0]) in (14 + 37, 15 + 19)
    parsed = [parse_data(f, lambda dev: [PEER], lambda dev, low: low) for f in frames]  # knows no H
    assert {p.counter for p in parsed} == {counter} and all(p.long_counter for p in parsed)
    assert b"".join(p.data for p in parsed) == _payload()
    short = encode_inference(_payload(), key=KEY, device_id=7, fingerprint=FP, counter=counter)[0]
    with pytest.raises(FrameError) as exc:   # the short form needs the receiver's window
        parse_data(short, lambda dev: [PEER], lambda dev, low: low)
    assert exc.value.reason == "auth"
