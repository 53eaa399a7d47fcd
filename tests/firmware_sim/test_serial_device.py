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
    from dataclasses import dataclass

    from codec.wire.frame import encode_reply, parse_data
    from codec.wire.packing import unpack_symbols
    from firmware_sim.lowering import lower
    from firmware_sim.serial_device import McuDevice

    program = lower(fixture_encoder)
    pair = open_pty_pair()
    baud = 230400
    seen, stop = [], threading.Event()
    meta = program.metadata

    @dataclass
    class Peer:  # the insecure all-zero key (no key given to the device)
        key: bytes = bytes(16)
        fingerprint: bytes = bytes.fromhex(str(meta["fingerprint"]))
        payload_bytes: int = (int(meta["n_symbols"]) * (int(meta["levels"]) - 1).bit_length() + 7) // 8

    def edge():  # a minimal edge on the master side: open DATA frames, answer label = index % 10
        dec = CobsStreamDecoder()
        while not stop.is_set():
            r, _, _ = select.select([pair.master_fd], [], [], 0.05)
            if not r:
                continue
            for raw in dec.feed(os.read(pair.master_fd, 4096)):
                f = parse_data(raw, lambda dev: [Peer()], lambda dev, low: (seen[-1][0].counter if seen else 0)
                               & ~0xFFFF | low)
                seen.append((f, time.monotonic()))
                if f.frag_index == f.frag_count - 1:
                    os.write(pair.master_fd, cobs_frame(encode_reply(
                        key=bytes(16), device_id=f.device_id, fingerprint=Peer.fingerprint, counter=f.counter,
                        label=(len(seen) - 1) % 10 if f.frag_count == 1 else 0, confidence=0.9, ber=0.0)))

    t = threading.Thread(target=edge, daemon=True)
    t.start()
    dev = McuDevice(program, f"serial://{pair.path}?baud={baud}", timeout_s=2.0, retries=0)
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
    assert len(frames) == 3 and frames[0].long_counter and not frames[1].long_counter
    assert [f.counter - frames[0].counter for f in frames] == [0, 1, 2] and frames[0].truth == 0
    ours = program.run(images)
    got = unpack_symbols(np.frombuffer(frames[1].data, np.uint8), int(meta["levels"]), ours.shape[1])
    assert np.array_equal(got, ours[1])
    # pacing: the bytes cannot leave faster than the baud rate allows
    assert elapsed >= stats.bytes_sent * 10 / baud * 0.95
