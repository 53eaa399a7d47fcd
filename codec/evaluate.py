"""Accuracy per BER through the honest packed-bit path.

symbols = device_half(images) -> pack_symbols (Gray or binary, as the bundle says) -> the
channel's packed-byte error model (`channel.bit_errors.make_error_model`, i.i.d. or Gilbert-Elliott,
passed in by the caller: `codec` never imports `channel`)
-> unpack_symbols -> edge_half(symbols, erased=False, ber=nominal BER) -> top-1. Each (model, BER)
is run with several channel seeds; we report the mean and the population standard deviation.
The edge is told the nominal BER, standing in for the live link's per-frame estimate (the bits its
header decoding corrected).

An SNR-driven packet-level channel (the LoRa PHY, `channel.lora_phy`: ``snr_settings``, one row
per SF and SNR) codes each image's frame as one radio packet: the payload sits behind a
zero-filled header block of `codec.wire.frame.BLOCK_BYTES` as in a one-fragment frame (where the
packet's first interleaver block falls matters), and the edge is told the BER the model expects
for that packet (`expected_ber`).
"""
from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np
import torch

from codec.datasets import Dataset
from codec.training.common import to_tensor
from codec.wire.frame import BLOCK_BYTES
from codec.wire.packing import pack_symbols, unpack_symbols

# (model name, ber=..., burst=...) -> an error model whose .corrupt(packed uint8, rng) returns
# (corrupted, bits flipped): `channel.bit_errors.make_error_model`
MakeErrors = Callable[..., Any]


@torch.inference_mode()
def device_symbols(bundle, images: np.ndarray, batch_size: int = 500, ber: float | None = None) -> np.ndarray:
    """The device half's symbols of uint8 images, `batch_size` at a time (converted per batch: a
    large test set never sits in memory as float). `ber`: the link's, for a device half that is told
    it (`device_knows_ber`, the ADJSCC-style baseline); None for every SemanticNN bundle."""
    dev = bundle.device_half() if ber is None else bundle.device_half(ber=ber)
    out = [dev(to_tensor(images[i:i + batch_size])).numpy() for i in range(0, len(images), batch_size)]
    return np.concatenate(out).astype(np.uint8) if out else np.zeros((0, 0), np.uint8)


@torch.inference_mode()
def edge_predict(bundle, symbols: np.ndarray, ber: float, erased: np.ndarray | None = None,
                 batch_size: int = 1000, edge=None) -> np.ndarray:
    edge = edge or bundle.edge_half()
    sym = torch.from_numpy(symbols.astype(np.int64))
    er = torch.zeros(sym.shape, dtype=torch.bool) if erased is None else torch.from_numpy(erased)
    out = []
    for i in range(0, len(sym), batch_size):
        b = sym[i:i + batch_size]
        out.append(edge(b, er[i:i + batch_size], torch.full((len(b),), float(ber))).argmax(1))
    return torch.cat(out).numpy()


@torch.inference_mode()
def backbone_accuracy(bundle, data: Dataset, batch_size: int = 500) -> float:
    x = to_tensor(data.images)
    preds = torch.cat([bundle.backbone(bundle.normalise(x[i:i + batch_size])).argmax(1)
                       for i in range(0, len(x), batch_size)])
    return float((preds.numpy() == data.labels).mean())


def corrupt_symbols(bundle, symbols: np.ndarray, errors, seed: int, lead: int = 0) -> np.ndarray:
    """Pack, flip bits with the channel's error model `errors`, unpack: the live-link symbol path.

    `lead` zero bytes (a header block) go in front of each payload on the channel and are dropped
    after it: for packet-level models, where a byte's position in its packet matters."""
    if errors is None or errors.ber <= 0:
        return symbols
    packed = pack_symbols(symbols, bundle.levels, gray=bundle.gray)
    if lead:
        packed = np.concatenate([np.zeros((len(packed), lead), np.uint8), packed], axis=1)
    corrupted, _ = errors.corrupt(packed, np.random.default_rng(seed))
    return unpack_symbols(corrupted[:, lead:], bundle.levels, bundle.n_symbols, gray=bundle.gray)


def evaluate(bundle, data: Dataset, bers: list[float], models: list[str], make_errors: MakeErrors,
             seeds: int = 3, burst: float | None = None, with_backbone: bool = True, log=None,
             snr_settings: list[dict] | None = None) -> dict:
    """The figures of `snn eval` as a dict (accuracy as fractions 0..1); `make_errors` builds the
    channel's bit-error model for each (model, BER). `snr_settings`: rows of an SNR-driven model
    instead, each a dict of `make_errors` keywords with ``model`` and ``snr_db`` (e.g. ``{"model":
    "lora-phy", "snr_db": -7.5, "sf": 7, "cr": "4/5"}``)."""
    t0 = time.time()
    symbols = device_symbols(bundle, data.images)
    edge = bundle.edge_half()
    results = [_snr_row(bundle, data, symbols, edge, dict(setting), make_errors, seeds, log)
               for setting in snr_settings or ()]
    for model in models:
        for ber in bers:
            accs = []
            kw = {"burst": burst} if (burst is not None and model == "ge") else {}
            errors = make_errors(model, ber=ber, **kw) if ber > 0 else None
            for s in range(seeds if ber > 0 else 1):
                rx = corrupt_symbols(bundle, symbols, errors, seed=1000 * s + 17)
                accs.append(float((edge_predict(bundle, rx, ber, edge=edge) == data.labels).mean()))
            row = {"ber": float(ber), "model": model, "accuracy": float(np.mean(accs)),
                   "accuracy_std": float(np.std(accs)), "seeds": len(accs)}
            results.append(row)
            if log:
                log(f"  {model:4s} BER {ber:<8g} accuracy {row['accuracy']:.4f} ± {row['accuracy_std']:.4f}")
    out = {"bundle": bundle.name, "fingerprint": bundle.fingerprint_hex, "data": data.name, "count": len(data),
           "payload_bytes": bundle.payload_bytes, "n_symbols": bundle.n_symbols,
           "bits_per_symbol": bundle.bits_per_symbol, "gray": bundle.gray,
           "backbone_accuracy": backbone_accuracy(bundle, data) if with_backbone else None,
           "results": results, "seconds": round(time.time() - t0, 2)}
    return out


def _snr_row(bundle, data: Dataset, symbols: np.ndarray, edge, setting: dict, make_errors: MakeErrors,
             seeds: int, log) -> dict:
    """One SNR-driven channel setting: accuracy, the BER the model expects and the BER measured."""
    model = setting.pop("model")
    errors = make_errors(model, **setting)
    payload = -(-bundle.n_symbols * bundle.bits_per_symbol // 8)
    frame = BLOCK_BYTES + payload
    nominal = float(errors.expected_ber(frame)) if hasattr(errors, "expected_ber") else float(errors.ber)
    accs, flips = [], 0
    for s in range(seeds):
        rx = corrupt_symbols(bundle, symbols, errors, seed=1000 * s + 17, lead=BLOCK_BYTES)
        flips += int((rx != symbols).sum())
        accs.append(float((edge_predict(bundle, rx, nominal, edge=edge) == data.labels).mean()))
    row = {**setting, "model": model, "ber": nominal, "wrong_symbols": flips / (seeds * symbols.size),
           "accuracy": float(np.mean(accs)), "accuracy_std": float(np.std(accs)), "seeds": len(accs),
           "frame_bytes": frame, "channel": errors.describe()}
    if log:
        log(f"  {errors.describe()}: accuracy {row['accuracy']:.4f} ± {row['accuracy_std']:.4f}")
    return row


def edge_speed(bundle, batch_size: int = 64, threads: int = 2, seconds: float = 3.0) -> dict:
    """MACs, params and batched throughput of the edge half (decoder + tail) alone."""
    from codec.model.backbones import count_macs

    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        edge = bundle.edge_half()
        rng = np.random.default_rng(0)
        sym = torch.from_numpy(rng.integers(0, bundle.levels, (batch_size, bundle.n_symbols)).astype(np.int64))
        er = torch.zeros(sym.shape, dtype=torch.bool)
        ber = torch.full((batch_size,), 1e-2)
        macs = count_macs(edge, (sym[:1], er[:1], ber[:1]))
        params = sum(p.numel() for p in bundle.codec.decoder.parameters())
        params += sum(p.numel() for n, p in bundle.backbone.named_parameters() if _in_tail(bundle.backbone, n))
        with torch.inference_mode():
            for _ in range(10):
                edge(sym, er, ber)
            n, t = 0, time.perf_counter()
            while time.perf_counter() - t < seconds:
                edge(sym, er, ber)
                n += batch_size
            rate = n / (time.perf_counter() - t)
    finally:
        torch.set_num_threads(old)
    return {"edge_macs_per_image": macs, "edge_mflops_per_image": round(2 * macs / 1e6, 3),
            "edge_params": params, "edge_images_per_s": round(rate, 1), "batch_size": batch_size, "threads": threads}


def _in_tail(backbone, param_name: str) -> bool:
    if param_name.startswith("classifier."):
        return True
    parts = param_name.split(".")
    if parts[0] == "stages":
        return backbone.is_edge_stage(parts[1])
    return False
