from hypothesis import given, settings
from hypothesis import strategies as st

from codec.wire.cobs import CobsStreamDecoder, cobs_decode, cobs_encode, cobs_frame
from snn.errors import FrameError


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=1200))
def test_round_trip_has_no_zero(data):
    enc = cobs_encode(data)
    assert 0 not in enc
    assert len(enc) <= len(data) + len(data) // 254 + 1
    assert cobs_decode(enc) == data


def test_known_vectors():
    # vectors from the COBS paper / Wikipedia examples
    assert cobs_encode(b"\x00") == b"\x01\x01"
    assert cobs_encode(b"\x00\x00") == b"\x01\x01\x01"
    assert cobs_encode(b"\x11\x22\x00\x33") == b"\x03\x11\x22\x02\x33"
    assert cobs_encode(b"\x11\x22\x33\x44") == b"\x05\x11\x22\x33\x44"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_decode_garbage_only_raises_frame_error(data):
    try:
        cobs_decode(data)
    except FrameError:
        pass


def test_stream_resynchronises_after_corruption():
    frames = [bytes([i, 0, i, 255, 0]) * 3 for i in range(1, 6)]
    stream = bytearray(b"".join(cobs_frame(f) for f in frames))
    # start mid-frame and corrupt the code byte of the third frame into a too-long jump
    third = len(cobs_frame(frames[0])) + len(cobs_frame(frames[1]))
    stream[third] = 0xFE
    dec = CobsStreamDecoder()
    out = []
    for i in range(0, len(stream), 4):  # arbitrary chunking
        out += dec.feed(bytes(stream[i:i + 4]))
    assert frames[3] in out and frames[4] in out
    assert frames[2] not in out
    assert dec.dropped >= 1


def test_stream_drops_oversized_frames():
    dec = CobsStreamDecoder(max_frame=16)
    out = dec.feed(b"\x05" * 100 + b"\x00" + cobs_frame(b"ok"))
    assert out == [b"ok"] and dec.dropped == 1
