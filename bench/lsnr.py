"""`snn bench lsnr`: does the gateway's SNR (`lsnr`) help the edge's BER estimate?

The edge conditions its decoder on a BER estimate. Today that estimate is the bits the header
decoding corrected (96 per frame), pooled per device (`edge.ber.BerEstimator`, decay 0.9): at
BER 1e-3 a header sees a wrong bit once in ten frames, so the estimate is mostly the prior and
lags a link that changes. A gateway reports each packet's SNR; through the LoRa PHY model
(`channel.lora_phy.LoRaPhy.expected_ber`) that is a BER, available for every frame at once.

This runs the shipped bundle's real device half on Fashion-MNIST test images, codes each image's
one-fragment frame (12-byte header block + payload) as one LoRa packet through the chirp-level
PHY at the packet's true SNR, counts the header bits it flipped, and conditions the real edge
half on each estimator's BER, sample by sample:

- `header`: the edge's estimator as it runs today (default prior 1e-3, weight 16 bits);
- `header+lsnr`: the same estimator with the lsnr's BER as its prior (weight `--weight` bits);
- `lsnr`: the lsnr's BER alone;
- `oracle`: the BER the model expects at the true SNR (what no edge knows).

The reported lsnr is the true SNR plus Gaussian error (`--lsnr-error-db`, 1 dB by default: a
radio's SNR estimate is not exact) — nothing is tuned to the estimator. Traces of true SNR per
packet: steady at a few SNRs around the SF's limit, a slow random walk, and jumps between a good
and a bad spot every 25 packets. A frame whose header block has more than 4 wrong bits is lost
(counted, not scored).
"""
from __future__ import annotations

import time

import numpy as np

from snn.errors import SnnError

__all__ = ["run_lsnr", "format_lsnr", "ESTIMATORS", "snr_trace"]

ESTIMATORS = ("header", "header+lsnr", "lsnr", "oracle")
LIMITS = {7: -7.5, 8: -10.0, 9: -12.5, 10: -15.0, 11: -17.5, 12: -20.0}


def snr_trace(kind: str, n: int, limit: float, rng: np.random.Generator) -> np.ndarray:
    """True SNR per packet for a trace `kind`: steady:D (limit + D dB), walk, jumps."""
    if kind.startswith("steady:"):
        return np.full(n, limit + float(kind.split(":", 1)[1]))
    if kind == "walk":   # 0.3 dB steps, reflected within limit - 4 .. limit + 2 dB
        lo, hi = limit - 4.0, limit + 2.0
        x = np.empty(n)
        v = limit - 1.0
        for i in range(n):
            v += rng.normal(0.0, 0.3)
            v = lo + abs(v - lo) if v < lo else hi - abs(v - hi) if v > hi else v
            x[i] = v
        return x
    if kind == "jumps":   # a good spot (limit + 1 dB) and a bad one (limit - 3 dB), 25 packets each
        return np.where((np.arange(n) // 25) % 2 == 0, limit + 1.0, limit - 3.0)
    raise SnnError(f"unknown trace {kind!r}: steady:DB, walk or jumps")


def _models(sf: int, cr: str):
    from channel.lora_phy import LoRaPhy, parse_cr

    cache: dict = {}

    def model(snr: float):
        key = round(float(snr), 1)
        if key not in cache:
            cache[key] = LoRaPhy(sf=sf, cr=parse_cr(cr), snr_db=key)
        return cache[key]
    return model


def _through_phy(bundle, symbols: np.ndarray, snrs: np.ndarray, model, rng) -> tuple[np.ndarray, np.ndarray]:
    """(received symbols, header bits flipped) per image, each frame one packet at its SNR."""
    from codec.wire.frame import BLOCK_BYTES
    from codec.wire.packing import pack_symbols, unpack_symbols

    packed = np.concatenate([np.zeros((len(symbols), BLOCK_BYTES), np.uint8),
                             pack_symbols(symbols, bundle.levels, gray=bundle.gray)], axis=1)
    out = np.empty_like(packed)
    keys = np.round(snrs, 1)
    for key in np.unique(keys):
        rows = np.flatnonzero(keys == key)
        out[rows], _ = model(key).corrupt(packed[rows], rng)
    header_errors = np.unpackbits(out[:, :BLOCK_BYTES], axis=1).sum(axis=1)
    rx = unpack_symbols(out[:, BLOCK_BYTES:], bundle.levels, bundle.n_symbols, gray=bundle.gray)
    return rx, header_errors


def _estimates(errors: np.ndarray, lsnr: np.ndarray, true_ber: np.ndarray, model, frame_bytes: int,
               weight: float) -> dict[str, np.ndarray]:
    from edge.ber import BerEstimator, clamp_ber

    lsnr_ber = np.array([clamp_ber(model(s).expected_ber(frame_bytes)) for s in lsnr])
    plain = BerEstimator()
    est = {name: np.empty(len(errors)) for name in ESTIMATORS}
    e = b = 0.0
    for i, (err, prior) in enumerate(zip(errors, lsnr_ber)):
        est["header"][i] = plain.update(0, int(err), 96)
        e, b = plain.decay * e + err, plain.decay * b + 96   # the same pooled counts, the lsnr as prior
        est["header+lsnr"][i] = clamp_ber((e + weight * prior) / (b + weight))
    est["lsnr"] = lsnr_ber
    est["oracle"] = np.array([clamp_ber(t) for t in true_ber])
    return est


def _predict(edge, symbols: np.ndarray, bers: np.ndarray, batch: int = 1000) -> np.ndarray:
    import torch

    out = []
    with torch.inference_mode():
        for i in range(0, len(symbols), batch):
            sym = torch.from_numpy(symbols[i:i + batch].astype(np.int64))
            er = torch.zeros(sym.shape, dtype=torch.bool)
            out.append(edge(sym, er, torch.from_numpy(bers[i:i + batch].astype(np.float32))).argmax(1).numpy())
    return np.concatenate(out)


def run_lsnr(sf: int = 7, cr: str = "4/5", traces=("steady:-1", "steady:-2.5", "walk", "jumps"), count: int = 2000,
             lsnr_error_db: float = 1.0, weight: float = 64.0, seeds: int = 2, bundle_path: str | None = None,
             log=print) -> dict:
    from codec.bundle import load_bundle
    from codec.datasets import load_dataset, split_options
    from codec.evaluate import device_symbols
    from codec.wire.frame import BLOCK_BYTES

    if sf not in LIMITS:
        raise SnnError(f"--sf takes 7..12, got {sf}")
    t0 = time.time()
    bundle = load_bundle(bundle_path)
    data = load_dataset("fmnist:test", shape=bundle.input_shape, **split_options(bundle.config["backbone"])).take(count)
    symbols = device_symbols(bundle, data.images)
    edge = bundle.edge_half()
    frame_bytes = BLOCK_BYTES + bundle.payload_bytes
    model = _models(sf, cr)
    rows = []
    for trace in traces:
        acc = {name: [] for name in ESTIMATORS}
        err = {name: [] for name in ESTIMATORS}
        lost = 0
        for seed in range(seeds):
            rng = np.random.default_rng(1000 * seed + 7)
            snrs = snr_trace(trace, len(symbols), LIMITS[sf], rng)
            rx, header_errors = _through_phy(bundle, symbols, snrs, model, rng)
            lsnr = snrs + rng.normal(0.0, lsnr_error_db, len(snrs))
            true_ber = np.array([model(s).expected_ber(frame_bytes) for s in snrs])
            est = _estimates(header_errors, lsnr, true_ber, model, frame_bytes, weight)
            ok = header_errors <= 4
            lost += int((~ok).sum())
            for name in ESTIMATORS:
                pred = _predict(edge, rx[ok], est[name][ok])
                acc[name].append(float((pred == data.labels[ok]).mean()))
                err[name].append(float(np.median(np.abs(np.log10(est[name][ok] / est["oracle"][ok])))))
        row = {"trace": trace, "sf": sf, "snr_mean_db": float(np.mean(snrs)), "lost": lost,
               "frames": seeds * len(symbols),
               **{f"accuracy_{n}": float(np.mean(acc[n])) for n in ESTIMATORS},
               **{f"log10_error_{n}": float(np.mean(err[n])) for n in ESTIMATORS}}
        rows.append(row)
        log(format_row(row))
    return {"benchmark": "lsnr", "sf": sf, "cr": cr, "count": len(symbols), "seeds": seeds,
            "lsnr_error_db": lsnr_error_db, "weight": weight, "bundle": bundle.name, "rows": rows,
            "seconds": round(time.time() - t0, 1)}


def format_row(r: dict) -> str:
    accs = "  ".join(f"{n} {100 * r[f'accuracy_{n}']:.2f} %" for n in ESTIMATORS)
    errs = "  ".join(f"{n} {r[f'log10_error_{n}']:.2f}" for n in ESTIMATORS if n != "oracle")
    return (f"SF{r['sf']} {r['trace']:<12} (mean {r['snr_mean_db']:.1f} dB, lost {r['lost']}/{r['frames']}): "
            f"accuracy {accs}; median |log10(estimate / true BER)| {errs}")


def format_lsnr(result: dict) -> str:
    return "\n".join(format_row(r) for r in result["rows"])
