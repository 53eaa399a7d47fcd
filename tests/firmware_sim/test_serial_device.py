import os
import select
import threading
import time

import numpy as np
import pytest

pytest.importorskip("serial")


def test_emulated_mcu_speaks_cobs_frames_on_a_pty(fixture_encoder, fixture_images):
    from channel.pty import open_pty_pair
    from codec.wire.cobs import CobsStreamDecoder, cobs_frame
    from codec.wire.crypto import DeviceKeys
    from codec.wire.frame import encode_reply, read_header
    from codec.wire.packing import unpack_symbols
    from firmware_sim.lowering import lower
    from firmware_sim.serial_device import McuDevice

    program = lower(fixture_encoder)
    pair = open_pty_pair()
    baud = 230400
    seen, stop = [], threading.Event()

    keys = DeviceKeys(4, bytes(range(16)))

    def edge():  # a minimal edge on the master side: read DATA frames, answer label = counter % 10
        dec = CobsStreamDecoder()
        while not stop.is_set():
            r, _, _ = select.select([pair.master_fd], [], [], 0.05)
            if not r:
                continue
            for raw in dec.feed(os.read(pair.master_fd, 4096)):
                f = read_header(raw)
                seen.append((f, time.monotonic()))
                if f.frag_index == f.frag_count - 1:
                    os.write(pair.master_fd, cobs_frame(encode_reply(keys, f.counter_low, f.counter_low % 10,
                                                                     0.9, 0.0)))

    t = threading.Thread(target=edge, daemon=True)
    t.start()
    dev = McuDevice(program, f"serial://{pair.path}?baud={baud}", keys=keys, timeout_s=2.0, retries=0)
    try:
        images = fixture_images[:3]
        t0 = time.monotonic()
        stats = dev.run(images, np.array([0, 1, 5]))
        elapsed = time.monotonic() - t0
    finally:
        dev.close()
        stop.set()
        t.join(2)
        pair.close()
    assert stats.answered == 3 and stats.labels == [0, 1, 2]
    assert stats.correct == 2
    frames = [f for f, _ in seen]
    assert [f.counter_low for f in frames] == [0, 1, 2] and frames[0].truth == 0
    ours = program.run(images)
    meta = program.metadata
    plain = keys.crypt(0, 1, frames[1].body)       # AES-CTR, uplink, counter 1
    got = unpack_symbols(np.frombuffer(plain, np.uint8), int(meta["levels"]), ours.shape[1])
    assert np.array_equal(got, ours[1])
    # pacing: the bytes cannot leave faster than the baud rate allows
    assert elapsed >= stats.bytes_sent * 10 / baud * 0.95
