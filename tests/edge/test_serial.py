"""The serial listener through a real pty pair (pyserial on the edge side, COBS framing)."""
import os
import select
import time

import pytest
from conftest import FleetDevice, start_standin

from codec.wire.cobs import CobsStreamDecoder, cobs_frame
from codec.wire.frame import Kind

pytest.importorskip("serial")


def _read_frames(fd, decoder, device, want, timeout=10.0):
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < want and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1 if len(out) < want else 0)
        if ready:
            out.extend(device.read(f) for f in decoder.feed(os.read(fd, 65536)))
    return out


def test_serial_pty_frames_replies_and_garbage(tmp_path, keys_file):
    from channel.pty import open_pty_pair

    pair = open_pty_pair()
    server = start_standin(tmp_path, "--serial", f"serial://{pair.path}?baud=115200", "--keys", keys_file)
    try:
        assert server.addresses["serial"]
        decoder = CobsStreamDecoder()
        dev = FleetDevice(33)
        first = dev.counter
        frames = [dev.frame(6) for _ in range(5)]
        stream = b"".join(cobs_frame(f) for f in frames[:2])
        stream += b"\x13\x37 line noise \x00"          # garbage between delimiters
        stream += cobs_frame(frames[2])[:10]           # a frame cut short by noise...
        stream += b"\x00" + b"".join(cobs_frame(f) for f in frames[3:])  # ...then back in step
        os.write(pair.master_fd, stream)
        got = _read_frames(pair.master_fd, decoder, dev, 4)
        assert sorted(a.counter - first for a in got) == [0, 1, 3, 4]   # the cut frame: silence
        assert all(a.kind == Kind.REPLY and a.label == 6 for a in got)
    finally:
        server.stop()
        pair.close()
    assert server.proc.returncode == 0
