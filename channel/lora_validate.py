"""The LoRa PHY model against Semtech's published demodulator limits and a chirp-level simulation.

    table = validation_table([7, 8, 9, 10, 11, 12])   # what `snn channel lora-phy` prints

Per spreading factor: Semtech's demodulator SNR limit (SX1276 datasheet, table 13), the model's
symbol error rate there, its bit error rate after the Hamming decoder and the packet error rate
counted on real packets sent through the whole chain; the SNRs at which the model's symbol error
rate falls to 1e-2 and 1e-3; and, 2 dB below the limit (where errors are frequent enough to
count), the model's symbol error rate beside a Monte Carlo of the real FFT demodulator
(`channel.lora_phy.simulate_demodulator`). The offset rows show the +-1-bin errors a residual
frequency/timing offset adds at the limit.
"""
from __future__ import annotations

import math

import numpy as np

from channel.lora_phy import SEMTECH_SNR_LIMIT_DB, LoRaPhy, simulate_demodulator, symbol_outcomes

__all__ = ["validation_table", "format_table", "snr_for_ser"]

OFFSETS = (0.25, 0.5)


def snr_for_ser(sf: int, ser: float, offset_bins: float = 0.0) -> float:
    """SNR (dB) at which the model's symbol error rate equals `ser` (bisection, 0.01 dB)."""
    lo, hi = -45.0, 10.0
    while hi - lo > 0.005:
        mid = 0.5 * (lo + hi)
        if 1.0 - symbol_outcomes(sf, round(mid, 6), offset_bins)[3] > ser:
            lo = mid
        else:
            hi = mid
    return round(0.5 * (lo + hi), 2)


def validation_table(sfs=(7, 8, 9, 10, 11, 12), *, cr="4/5", n_bytes: int = 51, packets: int = 20000,
                     symbols: int = 20000, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    rows, offset_rows = [], []
    for sf in sfs:
        limit = SEMTECH_SNR_LIMIT_DB.get(int(sf))
        if limit is None:
            continue
        model = LoRaPhy(sf=sf, cr=cr, snr_db=limit)
        got = model.measure(n_bytes, packets, rng)
        row = {"sf": int(sf), "semtech_limit_db": limit, "ldro": model.low_data_rate,
               "ser_at_limit": model.symbol_error_rate, "ber_at_limit": model.expected_ber(n_bytes),
               "measured_ber_at_limit": got["ber"], "packet_error_rate_at_limit": got["packet_error_rate"],
               "packets": packets, "bytes": n_bytes,
               "snr_db_for_ser_1e-2": snr_for_ser(sf, 1e-2), "snr_db_for_ser_1e-3": snr_for_ser(sf, 1e-3)}
        if symbols:
            low = limit - 2.0
            err = simulate_demodulator(sf, low, symbols, rng)
            k = int(np.count_nonzero(err))
            half = 1.96 * math.sqrt(max(k, 1)) / symbols
            row.update({"check_snr_db": low, "model_ser": 1.0 - symbol_outcomes(sf, low)[3],
                        "simulated_ser": k / symbols, "simulated_ser_95": half, "simulated_symbols": symbols})
        rows.append(row)
        if sf in (min(sfs), max(sfs)):
            for eps in OFFSETS:
                m = LoRaPhy(sf=sf, cr=cr, snr_db=limit, offset_bins=eps)
                p = m.outcomes
                offset_rows.append({"sf": int(sf), "snr_db": limit, "offset_bins": eps,
                                    "ser": m.symbol_error_rate, "plus_one_bin": float(p[4]),
                                    "minus_one_bin": float(p[2]), "ber": m.expected_ber(n_bytes),
                                    "ldro": m.low_data_rate})
    return {"cr": f"4/{LoRaPhy(cr=cr).cr + 4}", "rows": rows, "offset_rows": offset_rows, "seed": seed,
            "reference": "Semtech SX1276/77/78/79 datasheet rev. 7, table 13 (LoRa demodulator SNR)"}


def format_table(t: dict) -> str:
    lines = [f"LoRa PHY model, CR {t['cr']}, implicit header, CRC off, AWGN, ideal sync "
             f"({t['reference']})",
             f"{'SF':>3} {'limit dB':>8} {'SER@limit':>10} {'BER@limit':>10} {'PER@limit':>10} "
             f"{'SER 1e-2 at':>11} {'SER 1e-3 at':>11} | {'at dB':>6} {'model SER':>9} {'FFT sim SER':>16}"]
    for r in t["rows"]:
        sim = (f"{r['check_snr_db']:>6g} {r['model_ser']:>9.4f} {r['simulated_ser']:>8.4f} ±{r['simulated_ser_95']:.4f}"
               if "simulated_ser" in r else "")
        lines.append(f"{r['sf']:>3} {r['semtech_limit_db']:>8g} {r['ser_at_limit']:>10.2e} {r['ber_at_limit']:>10.2e} "
                     f"{r['packet_error_rate_at_limit']:>10.2e} {r['snr_db_for_ser_1e-2']:>8.2f} dB "
                     f"{r['snr_db_for_ser_1e-3']:>8.2f} dB | {sim}")
    if t["rows"]:
        r = t["rows"][0]
        lines.append(f"PER: {r['packets']} random {r['bytes']}-byte packets through the whole chain at each limit")
    if t["offset_rows"]:
        lines.append("residual offset at the limit:  SF  offset  SER  (+1 bin, -1 bin)  BER after decoding")
        for o in t["offset_rows"]:
            lines.append(f"  SF{o['sf']:<2} {o['offset_bins']:>5g} bins  SER {o['ser']:.3g} "
                         f"(+1: {o['plus_one_bin']:.3g}, -1: {o['minus_one_bin']:.3g})  BER {o['ber']:.3g}"
                         f"{'  (LDRO absorbs +-1)' if o['ldro'] else ''}")
    return "\n".join(lines)
