import struct

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from codec.errors import FrameError
from codec.frame import (BASE_HEADER_BYTES, ErrorCode, Kind, crc16, encode_error, encode_inference,
                         encode_reply, fragment_count, parse_frame, pilot_bit_errors,
                         pilot_sequence)
from codec.reassembly import Reassembler

FP = bytes.fromhex("1234abcd")


def _payload(nbits=294, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (nbits + 7) // 8, dtype=np.uint8).tobytes()


def test_crc16_is_ccitt_false():
    assert crc16(b"123456789") == 0x29B1  # the standard check value


def test_worked_example_matches_protocol_doc():
    frames = encode_inference(bytes(range(37)), 294, FP, device_id=7, seq=513, mtu=222, pilot_len=4)
    assert len(frames) == 1
    head = frames[0][:16]
    assert struct.unpack(">BBB4sHHBHbB", head) == (0xA7, 0x10, 0, FP, 7, 513, 0x00, 294, -128, 4)
    assert frames[0][18:22] == pilot_sequence(4) == bytes.fromhex("ff87b859")
    assert frames[0][22:] == bytes(range(37))
    assert len(frames[0]) == BASE_HEADER_BYTES + 4 + 37


def test_round_trip_fields():
    payload = _payload()
    frames = encode_inference(payload, 294, FP, 65535, 40000, mtu=51, pilot_len=4, snr_hint=-7, truth=9)
    assert len(frames) == 2 and all(len(f) <= 51 for f in frames)
    parsed = [parse_frame(f) for f in frames]
    assert [p.frag_index for p in parsed] == [0, 1]
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


def test_reply_body_is_crc_protected():
    frame = bytearray(encode_reply(FP, 3, 77, 4, 0.5, 0.0))
    frame[-3] ^= 1
    with pytest.raises(FrameError, match="CRC"):
        parse_frame(bytes(frame))


def test_data_payload_errors_are_not_rejected_but_measured():
    frame = bytearray(encode_inference(_payload(), 294, FP, 1, 1, pilot_len=8)[0])
    frame[BASE_HEADER_BYTES] ^= 0b101       # two pilot bits
    frame[-1] ^= 0xFF                       # payload bits: not checked
    parsed = parse_frame(bytes(frame))
    assert pilot_bit_errors(parsed) == 2


def test_reserved_flags_refused():
    frame = bytearray(encode_inference(_payload(), 294, FP, 1, 1)[0])
    frame[2] = 0x40
    frame[16:18] = crc16(bytes(frame[:16])).to_bytes(2, "big")
    with pytest.raises(FrameError, match="reserved"):
        parse_frame(bytes(frame))


def test_wrong_version_refused_clearly():
    frame = bytearray(encode_inference(_payload(), 294, FP, 1, 1)[0])
    frame[1] = 0x20
    frame[16:18] = crc16(bytes(frame[:16])).to_bytes(2, "big")
    with pytest.raises(FrameError, match="version 2"):
        parse_frame(bytes(frame))


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=120))
def test_random_bytes_only_raise_frame_error(data):
    try:
        parse_frame(data)
    except FrameError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 63), st.data())
def test_truncations_and_header_flips_only_raise_frame_error(cut, data):
    frame = encode_inference(_payload(), 294, FP, 5, 6, mtu=222, truth=2)[0]
    try:
        parse_frame(frame[:cut])
    except FrameError:
        pass
    bit = data.draw(st.integers(0, 8 * 19 - 1))  # every header bit, CRC included
    flipped = bytearray(frame)
    flipped[bit // 8] ^= 0x80 >> (bit % 8)
    with pytest.raises(FrameError):
        parse_frame(bytes(flipped))  # any single header flip is caught (CRC-16 detects all 1-bit errors)


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
