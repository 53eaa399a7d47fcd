import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codec.wire.frame import (
    HEADER_BYTES,
    ErrorCode,
    Kind,
    crc16,
    encode_error,
    encode_inference,
    encode_reply,
    fragment_count,
    header_bytes,
    header_copies_for,
    parse_frame,
    pilot_bit_errors,
    pilot_sequence,
)
from codec.wire.reassembly import Reassembler
from snn.errors import FrameError

FP = bytes.fromhex("1234abcd")


def _payload(nbits=294, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (nbits + 7) // 8, dtype=np.uint8).tobytes()


def test_crc16_is_ccitt_false():
    assert crc16(b"123456789") == 0x29B1  # the standard check value


def test_worked_example_matches_protocol_doc():
    frames = encode_inference(bytes(range(37)), 294, FP, device_id=7, seq=513, mtu=222, pilot_len=4)
    assert len(frames) == 1
    head = frames[0][:17]
    assert struct.unpack(">BBB4sHHBHbBB", head) == (0xA7, 0x10, 0, FP, 7, 513, 0x00, 294, -128, 4, 0xFF)
    assert frames[0][31:35] == pilot_sequence(4) == bytes.fromhex("ff87b859")
    assert frames[0][35:] == bytes(range(37))
    assert len(frames[0]) == HEADER_BYTES + 4 + 37


def test_round_trip_fields():
    payload = _payload()
    frames = encode_inference(payload, 294, FP, 65535, 40000, mtu=51, pilot_len=4, snr_hint=-7, truth=9)
    assert len(frames) == 3 and all(len(f) <= 51 for f in frames)
    parsed = [parse_frame(f) for f in frames]
    assert [p.frag_index for p in parsed] == [0, 1, 2]
    assert all(p.kind == Kind.DATA and p.device_id == 65535 and p.seq == 40000 and p.snr_hint == -7
               and p.truth == 9 and p.fingerprint == FP and pilot_bit_errors(p) == 0 for p in parsed)
    assert b"".join(p.data for p in parsed) == payload


@pytest.mark.parametrize("mtu", [51, 64, 222, 1400])
def test_fragments_fit_mtu(mtu):
    frames = encode_inference(_payload(1200), 1200, FP, 1, 1, mtu=mtu, pilot_len=4)
    assert all(len(f) <= mtu for f in frames)
    assert len(frames) == fragment_count(1200, mtu, 4)


def test_mtu_too_small_is_refused():
    with pytest.raises(ValueError, match="no room"):
        encode_inference(_payload(), 294, FP, 1, 1, mtu=20, pilot_len=4)


def test_reply_and_error_round_trip():
    r = parse_frame(encode_reply(FP, 3, 77, label=4, confidence=0.93, ber=0.0123)).reply()
    assert r.label == 4 and abs(r.confidence - 0.93) < 1 / 255 and abs(r.ber - 0.0123) < 1e-5
    code, reason = parse_frame(encode_error(FP, 3, 77, ErrorCode.UNKNOWN_CODEC, "unknown codec")).error()
    assert code == ErrorCode.UNKNOWN_CODEC and reason == "unknown codec"


def test_reply_body_is_protected():
    good = encode_reply(FP, 3, 77, 4, 0.5, 0.0)
    assert len(good) == HEADER_BYTES + 4 + 14  # body + CRC-16 + RS parity
    frame = bytearray(good)
    frame[-3] ^= 1  # repaired
    assert parse_frame(bytes(frame)).reply().label == 4
    for offset in range(HEADER_BYTES, len(frame), 2):  # 9 damaged bytes of 18: beyond repair
        frame[offset] ^= 0xA5
    with pytest.raises(FrameError, match="reply body"):
        parse_frame(bytes(frame))


def test_data_payload_errors_are_not_rejected_but_measured():
    frame = bytearray(encode_inference(_payload(), 294, FP, 1, 1, pilot_len=8)[0])
    frame[HEADER_BYTES] ^= 0b101       # two pilot bits
    frame[-1] ^= 0xFF                       # payload bits: not checked
    parsed = parse_frame(bytes(frame))
    assert pilot_bit_errors(parsed) == 2


def _reheader(frame: bytes, offset: int, value: int) -> bytes:
    """The frame with one header byte changed and its CRC and RS parity made valid again."""
    from codec.wire.frame import _RS
    head = bytearray(frame[:17])
    head[offset] = value
    protected = bytes(head) + crc16(bytes(head)).to_bytes(2, "big")
    return bytes(_RS.encode(protected)) + frame[HEADER_BYTES:]


def test_reserved_flags_refused():
    frame = _reheader(encode_inference(_payload(), 294, FP, 1, 1)[0], 2, 0x40)
    with pytest.raises(FrameError, match="reserved"):
        parse_frame(frame)


def test_wrong_version_refused_clearly():
    frame = _reheader(encode_inference(_payload(), 294, FP, 1, 1)[0], 1, 0x20)
    with pytest.raises(FrameError, match="version 2"):
        parse_frame(frame)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=120))
def test_random_bytes_only_raise_frame_error(data):
    try:
        parse_frame(data)
    except FrameError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 80), st.binary(min_size=1, max_size=80))
def test_truncations_and_garbage_only_raise_frame_error(cut, noise):
    frame = encode_inference(_payload(), 294, FP, 5, 6, mtu=222, truth=2)[0]
    for candidate in (frame[:cut], frame[:cut] + noise, noise + frame[cut:]):
        try:
            parse_frame(candidate)
        except FrameError:
            pass


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, HEADER_BYTES - 1), st.integers(1, 255)), min_size=1,
                max_size=6, unique_by=lambda t: t[0]))
def test_up_to_six_damaged_header_bytes_are_repaired(damage):
    frame = encode_inference(_payload(), 294, FP, 5, 6, mtu=222, snr_hint=3, truth=2)[0]
    broken = bytearray(frame)
    for offset, xor in damage:
        broken[offset] ^= xor
    assert parse_frame(bytes(broken)) == parse_frame(frame)


def test_header_damage_beyond_repair_is_dropped():
    frame = bytearray(encode_inference(_payload(), 294, FP, 5, 6, mtu=222)[0])
    for offset in range(0, 28, 4):  # 7 damaged bytes > t = 6
        frame[offset] ^= 0x5A
    with pytest.raises(FrameError, match="header"):
        parse_frame(bytes(frame))


def test_header_survives_ber_1e2_mostly():
    rng = np.random.default_rng(1)
    frame = np.frombuffer(encode_inference(_payload(), 294, FP, 5, 6, mtu=222)[0], np.uint8)
    ok = 0
    for _ in range(400):
        bits = np.unpackbits(frame) ^ (rng.random(frame.size * 8) < 1e-2)
        try:
            parse_frame(np.packbits(bits.astype(np.uint8)).tobytes())
            ok += 1
        except FrameError:
            pass
    assert ok >= 0.97 * 400  # binomial model: 0.8% of headers lost; CRC alone would lose 78%


def test_reassembly_with_lost_fragment_gives_erasures():
    payload = _payload(1200)
    frames = [parse_frame(f) for f in encode_inference(payload, 1200, FP, 1, 9, mtu=64, pilot_len=4)]
    r = Reassembler(timeout_s=0.5)
    for f in frames[:1] + frames[2:]:
        assert r.add(f, now=0.0) == []
    assert r.expire(now=0.1) == []
    (item,) = r.expire(now=0.6)
    assert not item.complete
    missing = np.flatnonzero(item.erased)
    piece = frames[1]
    assert len(missing) == len(piece.data)
    ok = ~item.erased
    assert bytes(np.frombuffer(bytes(item.payload), np.uint8)[ok]) == bytes(np.frombuffer(payload, np.uint8)[ok])


def test_reassembly_complete_out_of_order_and_duplicates():
    payload = _payload(1200)
    frames = [parse_frame(f) for f in encode_inference(payload, 1200, FP, 1, 9, mtu=64)]
    r = Reassembler()
    out = []
    for f in reversed(frames):
        out += r.add(f, 0.0)
    out += r.add(frames[0], 0.0)  # late duplicate starts a new partial, released on expiry
    assert len(out) == 1 and out[0].complete and bytes(out[0].payload) == payload
    assert not out[0].erased.any()


def test_reassembly_is_bounded():
    r = Reassembler(max_pending=10)
    released = []
    for seq in range(100):
        f = parse_frame(encode_inference(_payload(1200), 1200, FP, 1, seq, mtu=64)[0])
        released += r.add(f, 0.0)
    assert len(r) == 10 and len(released) == 90


def _survival(frame: bytes, ber: float, trials: int, seed: int = 2) -> float:
    rng = np.random.default_rng(seed)
    arr = np.frombuffer(frame, np.uint8)
    ok = 0
    for _ in range(trials):
        bits = np.unpackbits(arr) ^ (rng.random(arr.size * 8) < ber)
        try:
            parsed = parse_frame(np.packbits(bits.astype(np.uint8)).tobytes())
            ok += parsed.seq == 6 and parsed.device_id == 5
        except FrameError:
            pass
    return ok / trials


@pytest.mark.parametrize("copies", [1, 3, 5])
def test_header_copies_round_trip(copies):
    payload = _payload()
    (frame,) = encode_inference(payload, 294, FP, 5, 6, mtu=1400, header_copies=copies)
    assert len(frame) == header_bytes(copies) + 4 + len(payload)
    parsed = parse_frame(frame)
    assert parsed.header_copies == copies and parsed.data == payload
    reply = parse_frame(encode_reply(FP, 5, 6, 3, 0.5, 0.05, header_copies=copies))
    assert reply.header_copies == copies and reply.reply().label == 3


@pytest.mark.parametrize("ber,copies,bar", [(5e-2, 3, 0.97), (1e-1, 5, 0.95)])
def test_repeated_header_survives_bad_links(ber, copies, bar):
    assert header_copies_for(ber) == copies
    (frame,) = encode_inference(_payload(), 294, FP, 5, 6, mtu=1400, header_copies=copies)
    # binomial model: 0.2% (3 copies at 5e-2) and 0.4% (5 copies at 1e-1) of headers lost
    assert _survival(frame, ber, 300) >= bar
    (single,) = encode_inference(_payload(), 294, FP, 5, 6, mtu=1400)
    assert _survival(single, ber, 100) < 0.2
    reply = encode_reply(FP, 5, 6, 3, 0.5, 0.05, header_copies=copies)
    assert _survival(reply, ber, 300) >= bar - 0.01  # the downlink answer survives too


def test_header_copies_refused_outside_1_3_5():
    with pytest.raises(ValueError):
        encode_inference(_payload(), 294, FP, 5, 6, header_copies=2)


def test_reassembly_remembers_header_copies():
    frames = [parse_frame(f) for f in encode_inference(_payload(1200), 1200, FP, 1, 9, mtu=400, header_copies=3)]
    r = Reassembler()
    out = []
    for f in frames:
        out += r.add(f, 0.0)
    assert len(out) == 1 and out[0].header_copies == 3
