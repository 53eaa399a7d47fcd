"""The demo: real Fashion-MNIST test images through the whole wire path at several BERs.

Until the codec's shipped bundle lands, the symbols are a stand-in (each image average-pooled to
7x7 and quantized to 8 levels): what is shown is the wire path itself — Gray packing, frames,
real bit flips on the packed frames, parsing, pilot-based BER estimates and unpacking.
"""
from __future__ import annotations

import numpy as np

from codec.data import load_dataset
from codec.frame import HEADER_BYTES, encode_inference, parse_frame, pilot_bit_errors
from codec.packing import bits_per_symbol, pack_symbols, unpack_symbols

LEVELS = 8


def _standin_symbols(images: np.ndarray) -> np.ndarray:
    pooled = images[..., 0].reshape(len(images), 7, 4, 7, 4).mean(axis=(2, 4))
    return np.minimum((pooled / 256.0 * LEVELS).astype(np.int64), LEVELS - 1).reshape(len(images), -1)


def _flip_bits(frame: bytes, ber: float, rng: np.random.Generator) -> bytes:
    bits = np.unpackbits(np.frombuffer(frame, dtype=np.uint8))
    bits ^= (rng.random(bits.size) < ber).astype(np.uint8)
    return np.packbits(bits).tobytes()


def run_demo(count: int = 1000, bers: list[float] | None = None, seed: int = 0) -> dict:
    bers = bers or [0.0, 1e-2, 5e-2, 1e-1]
    data = load_dataset("fmnist:test").take(count)
    symbols = _standin_symbols(data.images)
    n_symbols = symbols.shape[1]
    bits = n_symbols * bits_per_symbol(LEVELS)
    packed = pack_symbols(symbols, LEVELS)
    rng = np.random.default_rng(seed)
    rows = []
    for ber in bers:
        dropped = symbol_errors = pilot_err = pilot_bits = 0
        for i, payload in enumerate(packed):
            (frame,) = encode_inference(payload.tobytes(), bits, b"DEMO", 1, i, mtu=222, pilot_len=8)
            try:
                parsed = parse_frame(_flip_bits(frame, ber, rng))
            except Exception:  # header hit: dropped and counted, as the edge does
                dropped += 1
                continue
            pilot_err += pilot_bit_errors(parsed)
            pilot_bits += 8 * parsed.pilot_len
            received = unpack_symbols(np.frombuffer(parsed.data, np.uint8), LEVELS, n_symbols)
            symbol_errors += int((received != symbols[i]).sum())
        delivered = count - dropped
        rows.append({"ber": ber, "frames": count, "header_drops": dropped,
                     "symbol_error_rate": symbol_errors / max(1, delivered * n_symbols),
                     "pilot_ber_estimate": pilot_err / max(1, pilot_bits)})
    return {"data": data.name, "count": count, "payload_bytes": len(packed[0]),
            "frame_bytes": HEADER_BYTES + 8 + len(packed[0]), "image_bytes": 28 * 28,
            "codec": "stand-in (7x7 pooled image, 8 levels)", "results": rows}


def format_demo(result: dict) -> str:
    lines = [f"SemanticNN demo on {result['count']} real {result['data']} images "
             f"({result['codec']})",
             f"bytes per inference: payload {result['payload_bytes']} B, frame {result['frame_bytes']} B "
             f"(the image itself: {result['image_bytes']} B)",
             f"{'BER':>8} {'header drops':>13} {'symbol errors':>14} {'pilot BER est.':>15}"]
    for r in result["results"]:
        lines.append(f"{r['ber']:>8g} {r['header_drops']:>13d} {r['symbol_error_rate']:>14.4f} "
                     f"{r['pilot_ber_estimate']:>15.4f}")
    return "\n".join(lines)
