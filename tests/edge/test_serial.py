"""The serial listener through a real pty pair (pyserial on the edge side, COBS framing)."""
import os
import select
import time

import pytest
from conftest import start_standin
from standin import FP_A
from wire_client import data_frame, open_reply

from codec.wire.cobs import CobsStreamDecoder, cobs_frame
from codec.wire.frame import Reply

pytest.importorskip("serial")


def _read_frames(fd, decoder, want, timeout=10.0):
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < want and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            out.extend(open_reply(f) for f in decoder.feed(os.read(fd, 65536)))
    return out


def test_serial_pty_frames_replies_and_garbage(tmp_path):
    from channel.pty import open_pty_pair

    pair = open_pty_pair()
    server = start_standin(tmp_path, "--serial", f"serial://{pair.path}?baud=115200")
    try:
        assert server.addresses["serial"]
        decoder = CobsStreamDecoder()
        frames = [data_frame(6, FP_A, device=33) for _ in range(5)]
        stream = b"".join(cobs_frame(f) for f in frames[:2])
        stream += b"\x13\x37 line noise \x00"          # garbage between delimiters
        stream += cobs_frame(frames[2])[:10]           # a frame cut short by noise...
        stream += b"\x00" + b"".join(cobs_frame(f) for f in frames[3:])  # ...then back in step
        os.write(pair.master_fd, stream)
        got = _read_frames(pair.master_fd, decoder, 5, timeout=3.0)
        # the damaged frame and the garbage get no answer (nothing goes back to what fails
        # authentication); the four good frames are answered, each once
        assert len(got) == 4 and all(isinstance(f, Reply) and f.label == 6 for f in got)
        sent = sorted(int.from_bytes(f[2:4], "big") for f in frames)   # counter low bits, bytes 2-3
        assert sorted(f.counter for f in got) == sent[:2] + sent[3:]
    finally:
        server.stop()
        pair.close()
    assert server.proc.returncode == 0
