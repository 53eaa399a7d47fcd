"""Bit-flipping throughput of the error models.

    rows = run_bench(size=1 << 20, ber=1e-3)   # one row per model: MB/s on 1 MiB buffers

Throughput counts the whole `corrupt` call (copy of the buffer, sampling, XOR, per-frame counts)
and is the median over `repeats` calls after one warm-up, in MB/s (10^6 bytes per second). The
"batched" column times the same bytes shaped as frames of `frame_bytes` (per-frame counts on).
SNR models (awgn, lora) are set to the SNR that gives the requested BER; lora-phy (the bit-true
LoRa PHY, SF7 CR 4/5, every 255 bytes one packet) to the SNR whose expected BER is the requested one.
"""
from __future__ import annotations

import statistics
import time

import numpy as np

from channel.bit_errors import make_error_model, snr_from_ber

__all__ = ["run_bench", "format_table", "BENCH_MODELS"]

BENCH_MODELS = ("iid", "ge", "awgn", "lora", "lora-phy")


def _model(name: str, ber: float, burst: float):
    if name == "awgn":
        return make_error_model("awgn", snr_db=snr_from_ber(ber, "bpsk"))
    if name == "lora":
        return make_error_model("lora", snr_db=snr_from_ber(ber, "lora", 7), sf=7)
    if name == "lora-phy":
        lo, hi = -30.0, 10.0  # expected BER falls with SNR: bisect to 0.01 dB
        while hi - lo > 0.01:
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if make_error_model("lora-phy", snr_db=mid, sf=7).ber > ber else (lo, mid)
        return make_error_model("lora-phy", snr_db=hi, sf=7)
    return make_error_model(name, ber, burst)


def _time(model, buf, rng, repeats: int) -> tuple[float, int]:
    model.corrupt(buf, rng)  # warm-up
    times, flipped = [], 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        _, f = model.corrupt(buf, rng)
        times.append(time.perf_counter() - t0)
        flipped += int(np.sum(f))
    return statistics.median(times), flipped


def run_bench(size: int = 1 << 20, ber: float = 1e-3, *, models=BENCH_MODELS, repeats: int = 30,
              burst: float = 8.0, frame_bytes: int = 1024, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    buf = rng.integers(0, 256, size=size, dtype=np.uint8)
    batch = buf[: (size // frame_bytes) * frame_bytes].reshape(-1, frame_bytes)
    rows = []
    for name in models:
        model = _model(name, ber, burst)
        t, flipped = _time(model, buf, rng, repeats)
        tb, _ = _time(model, batch, rng, max(3, repeats // 3))
        rows.append({
            "model": name, "description": model.describe(), "ber": model.ber,
            "measured_ber": flipped / (8.0 * size * repeats), "buffer_bytes": size,
            "ms_per_buffer": 1e3 * t, "mb_per_s": size / t / 1e6,
            "batched_frame_bytes": frame_bytes, "batched_mb_per_s": batch.nbytes / tb / 1e6,
        })
    return rows


def format_table(rows: list[dict]) -> str:
    head = ("model", "BER", "measured BER", "ms / buffer", "MB/s", "MB/s batched")
    body = [(r["model"], f"{r['ber']:.3g}", f"{r['measured_ber']:.3g}", f"{r['ms_per_buffer']:.3f}",
             f"{r['mb_per_s']:.0f}", f"{r['batched_mb_per_s']:.0f}") for r in rows]
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in [head, *body]]
    if rows:
        lines.insert(0, f"bit flipping on {rows[0]['buffer_bytes'] / 2**20:g} MiB buffers "
                        f"(batched: frames of {rows[0]['batched_frame_bytes']} B)")
    return "\n".join(lines)
