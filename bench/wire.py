"""Wire-format throughput: Gray packing, unpacking, and v2 frame build/parse, over a batch.

Why: the edge opens every frame on the event loop (BCH check, CMAC, AES-CTR) and a Raspberry Pi
packs and encrypts every inference, so both must cost microseconds. Parsing is measured on clean
frames (the BCH check is a CRC-like remainder) and on frames with 2 header bits flipped (the full
Berlekamp-Massey + Chien decode). Run with `snn bench wire [--frames N] [--json PATH]`.
"""
from __future__ import annotations

import time

import numpy as np

from types import SimpleNamespace

from codec.wire import frame as wire_frame
from codec.wire.frame import encode_inference, parse_data
from codec.wire.packing import bits_per_symbol, pack_symbols, unpack_symbols


def _best_of(repeats: int, fn) -> float:
    """Median wall time of `repeats` calls (the machine is shared; medians resist noise)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _parse_as_the_edge_does(data: bytes, peers, sizes) -> None:
    """What edge.core.EdgeCore.offer spends on a datagram before it is dropped: at a control-frame
    length (15, 45, 75 B, docs/PROTOCOL.md §4.7) a clean first block goes to the resync desk's
    parser, anything else to parse_data, and a control length that fails as DATA to the desk's too."""
    from codec.wire.control import block_is_codeword, is_control_length, parse_control_up
    from snn.errors import FrameError

    control = is_control_length(len(data))
    try:
        if control and block_is_codeword(data):
            parse_control_up(data, peers, lambda d: ())
            return
        parse_data(data, peers, lambda d, low: low, sizes)
    except FrameError:
        if control:
            try:
                parse_control_up(data, peers, lambda d: ())
            except FrameError:
                pass


def garbage_cost_us(max_len: int = 128, tries: int = 200, payload_bytes: int = 37, devices: int = 100,
                    seed: int = 0, reference: bool = False) -> dict[int, float]:
    """Median microseconds the edge's parsers spend on a random datagram of each length 1..max_len
    (what a flood costs the edge before it drops the datagram), with `devices` provisioned ids
    (a garbage id is almost never one of them). `reference`: the pure-Python block decoder
    instead of the C fast path (codec/wire/_native.c)."""

    rng = np.random.default_rng(seed)
    peer = SimpleNamespace(key=bytes(range(16)), fingerprint=b"\x01\x02\x03\x04", payload_bytes=payload_bytes)
    provisioned = set(range(1, devices + 1))

    def peers(dev):
        return [peer] if dev in provisioned else []

    sizes = frozenset([payload_bytes])
    saved = wire_frame._decode_block
    if reference:
        wire_frame._decode_block = wire_frame._decode_block_py
    try:
        out = {}
        for n in range(1, max_len + 1):
            times = []
            for _ in range(tries):
                data = rng.bytes(n)
                start = time.perf_counter()
                _parse_as_the_edge_does(data, peers, sizes)
                times.append(time.perf_counter() - start)
            out[n] = float(np.median(times)) * 1e6
        return out
    finally:
        wire_frame._decode_block = saved


def run_wire_bench(frames: int = 10_000, symbols: int = 392, levels: int = 8, repeats: int = 5,
                   seed: int = 0) -> dict:
    """Measure packing/unpacking (symbols/s) and frame build/parse (frames/s)."""
    rng = np.random.default_rng(seed)
    sym = rng.integers(0, levels, size=(frames, symbols))
    packed = pack_symbols(sym, levels)
    pack_s = _best_of(repeats, lambda: pack_symbols(sym, levels))
    unpack_s = _best_of(repeats, lambda: unpack_symbols(packed, levels, symbols))
    rows = [p.tobytes() for p in packed]
    fp, key = b"\x01\x02\x03\x04", bytes(range(16))
    peer = SimpleNamespace(key=key, fingerprint=fp, payload_bytes=len(rows[0]))
    sizes = frozenset([len(rows[0])])
    wire = [encode_inference(r, key=key, device_id=1, fingerprint=fp, counter=i, mtu=1400)[0]
            for i, r in enumerate(rows)]
    damaged = [bytes([w[0] ^ 0x40, w[1], w[2], w[3] ^ 0x02]) + w[4:] for w in wire[: max(1, frames // 10)]]
    build_s = _best_of(repeats, lambda: [encode_inference(r, key=key, device_id=1, fingerprint=fp, counter=7,
                                                          mtu=1400) for r in rows])
    parse_s = _best_of(repeats, lambda: [parse_data(w, lambda d: [peer], lambda d, low: low, sizes)
                                         for w in wire])
    repair_s = _best_of(repeats, lambda: [parse_data(w, lambda d: [peer], lambda d, low: low, sizes)
                                          for w in damaged])
    # a long (32-bit) counter: not the common reading of its length, so other readings compete
    long_wire = [encode_inference(r, key=key, device_id=1, fingerprint=fp, counter=70_000 + i, mtu=1400,
                                  long_counter=True)[0] for i, r in enumerate(rows[: max(1, frames // 10)])]
    long_s = _best_of(repeats, lambda: [parse_data(w, lambda d: [peer], lambda d, low: low, sizes)
                                        for w in long_wire])
    native = wire_frame._native is not None
    garbage = garbage_cost_us(tries=max(20, min(200, frames // 50)), payload_bytes=len(rows[0]))
    reference = garbage_cost_us(tries=20, payload_bytes=len(rows[0]), reference=True) if native else garbage
    worst = max(garbage, key=garbage.get)
    worst_ref = max(reference, key=reference.get)
    return {
        "native": native,
        "garbage_us_median_worst": round(garbage[worst], 2), "garbage_worst_length": worst,
        "garbage_us_median_by_length": {n: round(v, 2) for n, v in garbage.items()},
        "garbage_reference_us_median_worst": round(reference[worst_ref], 2),
        "garbage_reference_worst_length": worst_ref,
        "frames": frames, "symbols_per_frame": symbols, "levels": levels,
        "payload_bytes": len(rows[0]), "frame_bytes": len(wire[0]),
        "pack_symbols_per_s": frames * symbols / pack_s,
        "unpack_symbols_per_s": frames * symbols / unpack_s,
        "build_frames_per_s": frames / build_s,
        "parse_frames_per_s": frames / parse_s,
        "parse_damaged_frames_per_s": len(damaged) / repair_s,
        "parse_long_counter_frames_per_s": len(long_wire) / long_s,
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
        f"  parse, 2 header bits bad{result['parse_damaged_frames_per_s'] / 1e3:10.1f} k frames/s",
        f"  parse, long counter     {result['parse_long_counter_frames_per_s'] / 1e3:10.1f} k frames/s",
        f"  garbage datagram, worst median over lengths 1-128: {result['garbage_us_median_worst']:.1f} us "
        f"at {result['garbage_worst_length']} B ({'C fast path' if result['native'] else 'pure Python'}); "
        f"pure-Python reference {result['garbage_reference_us_median_worst']:.1f} us at "
        f"{result['garbage_reference_worst_length']} B",
    ])
