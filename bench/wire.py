"""Wire-format throughput: Gray packing, unpacking and frame parsing, vectorised over a batch.

Why: the edge parses every frame on the event loop and a Raspberry Pi packs every inference, so
both must cost microseconds. Run with `snn bench wire [--frames N] [--json PATH]`.
"""
from __future__ import annotations

import time

import numpy as np

from codec.wire.crypto import DeviceKeys
from codec.wire.frame import body_lengths, check_length, encode_inference, read_header, verify
from codec.wire.packing import bits_per_symbol, pack_symbols, unpack_symbols


def _best_of(repeats: int, fn) -> float:
    """Median wall time of `repeats` calls (the machine is shared; medians resist noise)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def run_wire_bench(frames: int = 10_000, symbols: int = 392, levels: int = 8, repeats: int = 5,
                   seed: int = 0) -> dict:
    """Measure packing/unpacking (symbols/s) and frame build/parse (frames/s).

    v2: build = encrypt (AES-CTR) + MIC (AES-CMAC) + BCH parity; parse = length check, BCH
    syndrome, MIC, exact length and decryption — what the edge does per frame."""
    rng = np.random.default_rng(seed)
    sym = rng.integers(0, levels, size=(frames, symbols))
    bits = symbols * bits_per_symbol(levels)
    packed = pack_symbols(sym, levels)
    pack_s = _best_of(repeats, lambda: pack_symbols(sym, levels))
    unpack_s = _best_of(repeats, lambda: unpack_symbols(packed, levels, symbols))
    rows = [p.tobytes() for p in packed]
    keys = DeviceKeys(1, bytes(range(16)))
    nbytes = len(rows[0])
    lengths = body_lengths(nbytes)
    wire = [encode_inference(keys, i, r, mtu=1400)[0] for i, r in enumerate(rows)]

    def parse_all():
        for i, w in enumerate(wire):
            head = read_header(w, lengths)
            if not verify(head, keys, i):
                raise AssertionError("MIC")
            keys.crypt(0, i, head.body, check_length(head, nbytes).start)

    build_s = _best_of(repeats, lambda: [encode_inference(keys, i, r, mtu=1400) for i, r in enumerate(rows)])
    parse_s = _best_of(repeats, parse_all)
    del bits
    return {
        "frames": frames, "symbols_per_frame": symbols, "levels": levels,
        "payload_bytes": len(rows[0]), "frame_bytes": len(wire[0]),
        "pack_symbols_per_s": frames * symbols / pack_s,
        "unpack_symbols_per_s": frames * symbols / unpack_s,
        "build_frames_per_s": frames / build_s,
        "parse_frames_per_s": frames / parse_s,
    }


def format_wire(result: dict) -> str:
    return "\n".join([
        f"wire format: {result['frames']} frames of {result['symbols_per_frame']} symbols x "
        f"{bits_per_symbol(result['levels'])} bits = {result['payload_bytes']} B payload, "
        f"{result['frame_bytes']} B frame (median of repeats)",
        f"  pack (Gray, MSB first)  {result['pack_symbols_per_s'] / 1e6:10.1f} M symbols/s",
        f"  unpack                  {result['unpack_symbols_per_s'] / 1e6:10.1f} M symbols/s",
        f"  build frames            {result['build_frames_per_s'] / 1e3:10.1f} k frames/s",
        f"  parse frames            {result['parse_frames_per_s'] / 1e3:10.1f} k frames/s",
    ])
