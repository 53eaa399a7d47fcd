"""`snn bench ber`: the edge's BER estimate from the header block's corrected bits vs pilots.

Why: v1 spent 4 pilot bytes (32 known bits) per frame so that the edge could measure the bit
error rate it conditions the decoder on. A v2 frame's 12-byte header block is itself 96 bits
that the BCH decoder repairs: the bits it corrected (counted over every copy against the
corrected block) measure the same BER at no byte cost. This bench puts both side by side on
the same frames (`bench.delivery.header_only` with `extra=4` pilot bytes, real flips from
`channel.bit_errors`), per frame and smoothed per device the way the edge does it
(`edge.ber.BerEstimator`'s decay 0.9: E <- 0.9 E + errors, B <- 0.9 B + bits, ber = E / B),
and reports the relative RMS error of each estimate against the true BER.

The header estimate is biased low where blocks are lost (a block with more than 4 errors is
dropped, so the frames that count saw fewer flips); the table shows how much.
"""
from __future__ import annotations

import numpy as np

from bench import delivery
from codec.wire.frame import header_copies_for

BERS = (1e-3, 1e-2, 3e-2, 5e-2, 1e-1)
PILOT_BYTES = 4
DECAY = 0.9


def _smoothed(errors: np.ndarray, bits: np.ndarray, decay: float = DECAY) -> np.ndarray:
    """The edge's per-device estimate after each frame (the device sends the frames in order)."""
    e = b = 0.0
    out = np.empty(len(errors))
    for i, (x, n) in enumerate(zip(errors, bits)):
        e, b = decay * e + x, decay * b + n
        out[i] = e / b if b else 0.0
    return out


def _rel_rms(est: np.ndarray, truth: float) -> float:
    return float(np.sqrt(np.mean((est / truth - 1.0) ** 2)))


def run_ber_bench(frames: int = 3000, payload: int = 37, mtu: int = 222, seed: int = 0, bers=BERS) -> dict:
    from channel.bit_errors import IIDModel

    rows = []
    messages = [bytes(payload)] * frames
    for ber in bers:
        copies = header_copies_for(ber)
        tr = delivery.header_only(IIDModel(ber), np.random.default_rng(seed), messages, mtu,
                                  extra=PILOT_BYTES, copies=copies)
        ok = tr.delivered
        head_e, head_b = tr.header_flips[ok].astype(float), tr.header_bits[ok].astype(float)
        pil_e, pil_b = tr.pilot_flips[ok].astype(float), tr.pilot_bits[ok].astype(float)
        rows.append({
            "ber": ber, "copies": copies, "frames": int(ok.sum()),
            "header_bits_per_frame": float(head_b.mean()), "pilot_bits_per_frame": float(pil_b.mean()),
            "header_mean": float(head_e.sum() / head_b.sum()), "pilots_mean": float(pil_e.sum() / pil_b.sum()),
            "header_frame_rel_rms": _rel_rms(head_e / head_b, ber),
            "pilots_frame_rel_rms": _rel_rms(pil_e / pil_b, ber),
            "header_smoothed_rel_rms": _rel_rms(_smoothed(head_e, head_b)[50:], ber),
            "pilots_smoothed_rel_rms": _rel_rms(_smoothed(pil_e, pil_b)[50:], ber),
            "both_smoothed_rel_rms": _rel_rms(_smoothed(head_e + pil_e, head_b + pil_b)[50:], ber),
        })
    return {"benchmark": "ber", "frames": frames, "payload_bytes": payload, "pilot_bytes": PILOT_BYTES,
            "decay": DECAY, "rows": rows}


def format_ber(result: dict) -> str:
    lines = [f"BER estimate: header block's corrected bits (0 extra bytes) vs {result['pilot_bytes']} pilot "
             f"bytes, {result['frames']} frames per BER; relative RMS error (lower is better)",
             f"{'BER':>7} {'copies':>6} {'hdr bits':>8} {'hdr mean':>9} {'pilot mean':>10} "
             f"{'hdr/frame':>9} {'pil/frame':>9} {'hdr smooth':>10} {'pil smooth':>10} {'both':>6}"]
    for r in result["rows"]:
        lines.append(f"{r['ber']:>7.0e} {r['copies']:>6} {r['header_bits_per_frame']:>8.0f} "
                     f"{r['header_mean']:>9.2e} {r['pilots_mean']:>10.2e} {r['header_frame_rel_rms']:>9.2f} "
                     f"{r['pilots_frame_rel_rms']:>9.2f} {r['header_smoothed_rel_rms']:>10.2f} "
                     f"{r['pilots_smoothed_rel_rms']:>10.2f} {r['both_smoothed_rel_rms']:>6.2f}")
    return "\n".join(lines)
