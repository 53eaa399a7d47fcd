"""Frame v2: round trips, exact lengths, every failure reason, survival on real bit flips."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from channel.bit_errors import IIDModel
from codec.wire.crypto import DeviceKeys
from codec.wire.frame import (
    BLOCK_BYTES,
    ERROR_BLOCK,
    REPLY_BLOCK,
    ErrorCode,
    Kind,
    ReplayWindow,
    body_lengths,
    check_length,
    encode_error,
    encode_inference,
    encode_reply,
    fragment_count,
    frame_lengths,
    header_copies_for,
    is_v1,
    overhead_bytes,
    plan_frames,
    read_answer,
    read_header,
    reconstruct_counter,
    verify,
)
from snn.errors import FrameError

KEYS = DeviceKeys(7, bytes(range(16)))
OTHER = DeviceKeys(7, bytes(16))
PAYLOAD = bytes(np.random.default_rng(0).integers(0, 256, 37, dtype=np.uint8))


def _open(frame: bytes, keys=KEYS, counter=513, n=37):
    head = read_header(frame, body_lengths(n))
    assert verify(head, keys, counter)
    piece = check_length(head, n)
    return head, keys.crypt(0, counter, head.body, piece.start)


def test_single_frame_is_49_bytes_for_37_payload_bytes():
    (frame,) = encode_inference(KEYS, 513, PAYLOAD, mtu=222)
    assert len(frame) == BLOCK_BYTES + 37 == 49
    head, plain = _open(frame)
    assert plain == PAYLOAD and head.device_id == 7 and head.counter_low == 513
    assert head.frag_count == 1 and head.truth is None and head.bit_errors == 0 and head.bits == 96


def test_payload_is_encrypted_and_bit_errors_stay_in_place():
    (frame,) = encode_inference(KEYS, 513, PAYLOAD)
    assert frame[12:] != PAYLOAD
    damaged = bytearray(frame)
    damaged[19] ^= 0x21  # two payload bits
    _, plain = _open(bytes(damaged))
    diff = bytes(a ^ b for a, b in zip(plain, PAYLOAD))
    assert diff[7] == 0x21 and sum(diff) == 0x21


@pytest.mark.parametrize("copies", [1, 3, 5])
@pytest.mark.parametrize("truth", [None, 9])
def test_fragments_round_trip_within_mtu(copies, truth):
    frames = encode_inference(KEYS, 70_000, PAYLOAD, mtu=51 if copies == 1 else 120, copies=copies, truth=truth)
    out = bytearray(37)
    for frame in frames:
        head = read_header(frame, body_lengths(37))
        assert head.copies == copies and head.truth == truth and head.frag_count == len(frames)
        assert verify(head, KEYS, 70_000)
        piece = check_length(head, 37)
        out[piece.start:piece.stop] = KEYS.crypt(0, 70_000, head.body, piece.start)
    assert bytes(out) == PAYLOAD
    assert all(len(f) <= (51 if copies == 1 else 120) for f in frames)


def test_mtu_51_carries_37_bytes_in_one_frame_and_degrades_copies():
    assert fragment_count(37, 51, 1) == 1
    assert plan_frames(37, 51, 1) == (1, 1)
    assert plan_frames(37, 51, 3) == (3, 4)     # 3 x 13-byte blocks leave 12 bytes per fragment
    assert plan_frames(37, 51, 5) == (3, 4)     # 5 x 13 = 65 > 51: degrade, never stop
    assert plan_frames(37, 16, 5) == (1, 13)    # 3 payload bytes behind each 13-byte block
    with pytest.raises(ValueError):
        plan_frames(37, 14, 1)


def test_overhead_budget():
    assert overhead_bytes(1) == 12 <= 13
    assert overhead_bytes(5) == 60 <= 73


def test_wrong_key_or_counter_fails_the_mic():
    (frame,) = encode_inference(KEYS, 513, PAYLOAD)
    head = read_header(frame)
    assert not verify(head, OTHER, 513)
    assert not verify(head, KEYS, 513 + 4096)


@pytest.mark.parametrize("copies", [3, 5])
def test_every_truncation_or_extension_fails(copies):
    (frame,) = encode_inference(KEYS, 513, PAYLOAD, copies=copies)
    for cut in range(len(frame) + 3):
        data = (frame + b"\0\0\0")[:cut]
        if cut == len(frame):
            continue
        with pytest.raises(FrameError):
            head = read_header(data, body_lengths(37))
            check_length(head, 37)


def test_failure_reasons():
    with pytest.raises(FrameError) as exc:
        read_header(b"")
    assert exc.value.reason == "short"
    with pytest.raises(FrameError) as exc:
        read_header(bytes(30), body_lengths(37))
    assert exc.value.reason == "length"         # 18 bytes after a 12-byte block: no whole payload
    with pytest.raises(FrameError) as exc:
        read_header(bytes(range(1, 50)))
    assert exc.value.reason == "damaged"
    reply = encode_reply(KEYS, 513, 1, 0.5, 0.0)
    with pytest.raises(FrameError):  # a REPLY sent to the edge
        read_header(reply + bytes(37))
    from codec.wire import bch
    v3 = bch.encode(0xC0 << 60, 68) + bytes(37)
    with pytest.raises(FrameError) as exc:
        read_header(v3)
    assert exc.value.reason == "version"
    frag = bch.encode((0x82 << 68) | (0x31 << 32), 76) + bytes(10)  # fragment index 3 of 2
    with pytest.raises(FrameError) as exc:
        read_header(frag)
    assert exc.value.reason == "fragment"


def test_length_filter_skips_decoding():
    lengths = frame_lengths(37)
    assert 49 in lengths and 97 in lengths and 1000 not in lengths and 12 not in lengths
    body = body_lengths(37)
    assert body.whole == {37} and 19 in body.pieces and 37 not in body.pieces
    with pytest.raises(FrameError) as exc:
        read_header(bytes(108), body_lengths(37))
    assert exc.value.reason == "length"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_only_raise_frame_error(data):
    try:
        head = read_header(data)
    except FrameError:
        return
    assert not verify(head, KEYS, head.counter_low)  # 2^-32 for garbage


@pytest.mark.parametrize("copies", [1, 3, 5])
def test_reply_and_error_round_trip(copies):
    r = read_answer(encode_reply(KEYS, 70_000, 4, 0.93, 0.0123, copies), KEYS, {70_000 & 0xFFF: 70_000})
    assert (r.kind, r.counter, r.label, r.copies) == (Kind.REPLY, 70_000, 4, copies)
    assert abs(r.confidence - 0.93) < 1 / 255 and abs(r.ber / 0.0123 - 1) < 0.03
    e = read_answer(encode_error(KEYS, 9, ErrorCode.BUSY, 5, copies), KEYS, {9: 9})
    assert (e.kind, e.code, e.detail, e.copies) == (Kind.ERROR, ErrorCode.BUSY, 5, copies)
    assert len(encode_reply(KEYS, 1, 1, 1, 0, copies)) == copies * REPLY_BLOCK
    assert len(encode_error(KEYS, 1, 1, 0, copies)) == copies * ERROR_BLOCK


def test_forged_or_misaddressed_answers_are_refused():
    reply = encode_reply(OTHER, 9, 4, 0.9, 0.0)
    with pytest.raises(FrameError) as exc:
        read_answer(reply, KEYS, {9: 9})
    assert exc.value.reason == "auth"
    with pytest.raises(FrameError) as exc:
        read_answer(encode_reply(KEYS, 9, 4, 0.9, 0.0), KEYS, {10: 10})
    assert exc.value.reason == "counter"
    with pytest.raises(FrameError) as exc:
        read_answer(encode_reply(DeviceKeys(8, bytes(range(16))), 9, 4, 0.9, 0.0), KEYS, {9: 9})
    assert exc.value.reason == "device"
    with pytest.raises(FrameError) as exc:
        read_answer(encode_reply(KEYS, 9, 4, 0.9, 0.0)[:-2], KEYS, {9: 9})
    assert exc.value.reason == "length"


def test_counter_reconstruction_and_replay_window():
    assert reconstruct_counter(0x1FFF, 0x003) == 0x2003
    assert reconstruct_counter(0x2003, 0xFFF) == 0x1FFF
    assert reconstruct_counter(1000, 1000 + 256) == 1256
    w = ReplayWindow()
    for c in (0, 1, 5, 3):
        assert not w.seen(c)
        w.accept(c)
    assert w.seen(3) and w.seen(5) and not w.seen(4) and not w.seen(6)
    w.accept(200)
    assert w.seen(100) and not w.seen(199)  # older than 64 below the highest: refused as stale


def test_v1_frames_are_recognised():
    v1 = bytes.fromhex("a7100012 34abcd0007 0201000126 8004ffbd4b".replace(" ", "")) + bytes(14)
    assert is_v1(v1)
    assert not is_v1(encode_inference(KEYS, 1, PAYLOAD)[0])


def test_copies_choice():
    assert header_copies_for(1e-2) == 1 and header_copies_for(5e-2) == 3 and header_copies_for(1e-1) == 5
    assert header_copies_for(8e-2) == 3 and header_copies_for(9e-2) == 5


def _survival(ber: float, copies: int, n: int, seed: int) -> float:
    """Fraction of DATA headers that survive real i.i.d. flips (channel.bit_errors) and verify."""
    frames = [encode_inference(KEYS, i, PAYLOAD, copies=copies)[0] for i in range(n)]
    arr = np.frombuffer(b"".join(frames), dtype=np.uint8).reshape(n, -1).copy()
    flipped, _ = IIDModel(ber).corrupt(arr, np.random.default_rng(seed))
    ok = 0
    for i, row in enumerate(flipped):
        try:
            head = read_header(row.tobytes(), body_lengths(37))
            ok += verify(head, KEYS, i) and head.counter_low == i
        except FrameError:
            pass
    return ok / n


@pytest.mark.parametrize("ber, copies, bar", [(1e-2, 1, 0.99), (5e-2, 3, 0.98), (1e-1, 5, 0.98)])
def test_header_survival_on_real_flips(ber, copies, bar):
    """Binomial: 1 copy at 1e-2 loses 0.29 %, 3 at 5e-2 0.07 %, 5 at 1e-1 0.15 %."""
    assert _survival(ber, copies, 2000, seed=int(ber * 1e4)) >= bar
