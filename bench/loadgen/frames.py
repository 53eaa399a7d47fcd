"""Frames a load generator sends: valid keyed DATA frames with fresh counters, and garbage.

The server is keyed (protocol v2): `provision` writes a keys file for devices 1..N and returns
their keys, and every frame takes a fresh counter (a resent datagram would be a replay).
"""
from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np

from codec.wire.frame import BLOCK_BYTES, encode_inference
from codec.wire.keys import new_keys, write_keys
from codec.wire.packing import pack_symbols

GARBAGE_DEVICE = 0xFFFF


class FrameMaker:
    """Valid, authenticated DATA frames with random symbols for one codec, and garbage.

    Every frame takes the next counter of one sequence shared by all devices (so a counter's
    low 16 bits, which a reply echoes, identify the frame among the last 65,536 made:
    `replies.ReplyMatcher`); device = 1 + counter % n_devices, so each device's counters only
    grow."""

    def __init__(self, codec: dict, keys: dict[int, bytes], seed: int = 0, n_devices: int = 64,
                 start: int = 1) -> None:
        self.fp = bytes.fromhex(codec["fingerprint"])
        self.levels = int(codec["levels"])
        self.n_symbols = int(codec["n_symbols"])
        self.keys = keys
        self.n_devices = n_devices
        self.counter = start
        self.rng = np.random.default_rng(seed)
        self._payloads = [pack_symbols(self.rng.integers(0, self.levels, self.n_symbols), self.levels)
                          .tobytes() for _ in range(64)]
        self._bad_source = self.frame()

    def frame(self) -> bytes:
        """The next frame (a fresh counter)."""
        counter = self.counter
        self.counter += 1
        device = 1 + counter % self.n_devices
        return encode_inference(self._payloads[counter % len(self._payloads)], key=self.keys[device],
                                device_id=device, fingerprint=self.fp, counter=counter)[0]

    def device_of(self, counter: int) -> int:
        return 1 + counter % self.n_devices

    def garbage(self, rnd: random.Random) -> bytes:
        """Random bytes, a truncated frame, or a frame with its header smashed beyond repair."""
        pick = rnd.random()
        if pick < 0.4:
            return os.urandom(rnd.randint(0, 120))
        if pick < 0.7:
            return self._bad_source[: rnd.randint(0, len(self._bad_source) - 1)]
        data = bytearray(self._bad_source)
        data[:BLOCK_BYTES] = os.urandom(BLOCK_BYTES)
        return bytes(data)


def provision(path: Path, n_devices: int) -> dict[int, bytes]:
    """A keys file for devices 1..n_devices (any served codec); their keys by id."""
    from codec.wire.edge_state import EdgeState, edge_state_path, write_edge_state
    keys = new_keys(list(range(1, n_devices + 1)))
    write_keys(path, keys, force=True)
    write_edge_state(edge_state_path(path), EdgeState())    # as `snn keys new`: every key is new
    return {k.device_id: k.key for k in keys}
