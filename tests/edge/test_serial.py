"""The serial listener through a real pty pair (pyserial on the edge side, COBS framing)."""
import os
import select
import time

import pytest
from conftest import start_standin
from standin import FP_A, payload_for

from codec.wire.cobs import CobsStreamDecoder, cobs_frame
from codec.wire.frame import ErrorCode, Kind, encode_inference, parse_frame

pytest.importorskip("serial")


def _read_frames(fd, decoder, want, timeout=10.0):
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < want and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            out.extend(parse_frame(f) for f in decoder.feed(os.read(fd, 65536)))
    return out


def test_serial_pty_frames_replies_and_garbage(tmp_path):
    from channel.pty import open_pty_pair

    pair = open_pty_pair()
    server = start_standin(tmp_path, "--serial", f"serial://{pair.path}?baud=115200")
    try:
        assert server.addresses["serial"]
        decoder = CobsStreamDecoder()
        payload, bits = payload_for(6)
        frames = [encode_inference(payload, bits, FP_A, 33, seq)[0] for seq in range(5)]
        stream = b"".join(cobs_frame(f) for f in frames[:2])
        stream += b"\x13\x37 line noise \x00"          # garbage between delimiters
        stream += cobs_frame(frames[2])[:10]           # a frame cut short by noise...
        stream += b"\x00" + b"".join(cobs_frame(f) for f in frames[3:])  # ...then back in step
        os.write(pair.master_fd, stream)
        got = _read_frames(pair.master_fd, decoder, 5)
        replies = [f for f in got if f.kind == Kind.REPLY]
        assert sorted(f.seq for f in replies) == [0, 1, 3, 4]
        assert all(f.reply().label == 6 and f.device_id == 33 for f in replies)
        errors = [f for f in got if f.kind == Kind.ERROR]
        assert all(f.error()[0] == ErrorCode.BAD_FRAME for f in errors)
    finally:
        server.stop()
        pair.close()
    assert server.proc.returncode == 0
