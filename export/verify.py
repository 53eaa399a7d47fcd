"""Verification of an exported encoder against the torch device half it came from.

On a test set (the full one by default):

- symbol agreement: the fraction of symbols equal between torch, float ONNX and int8 ONNX;
- end-to-end accuracy with each encoder's symbols at each BER, through the honest packed-bit
  path of `codec.evaluate` (pack, flip real bits with the channel's i.i.d. model, unpack, the
  torch edge half). The same channel seed is used for every encoder, so the comparison is paired:
  the same bits flip, only the encoders differ;
- size of both files, and encoder latency in onnxruntime with one thread, one image at a time
  (median of `latency_runs`).

`BARS` are the acceptance bars of the export; `check_bars` says which ones fail.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

BARS = {"int8_bytes_max": 64 * 1024, "symbol_agreement_min": 0.99, "accuracy_gap_max": 0.003,
        "backbone_gap_max": 0.03}


def ort_session(path: str | Path, threads: int = 1):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_symbols(session, images: np.ndarray, batch: int = 500) -> np.ndarray:
    """Symbols (N, S) uint8 of uint8 NHWC images through an encoder session."""
    name = session.get_inputs()[0].name
    out = [session.run(None, {name: np.ascontiguousarray(images[i:i + batch])})[0]
           for i in range(0, len(images), batch)]
    return np.concatenate(out).astype(np.uint8)


def torch_symbols(bundle, images: np.ndarray, batch: int = 500) -> np.ndarray:
    from codec.evaluate import device_symbols

    return device_symbols(bundle, images, batch_size=batch)


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float((a == b).mean())


def latency_ms(path: str | Path, image: np.ndarray, runs: int = 1000, warmup: int = 20) -> dict:
    """Median / p90 latency (ms) of one image through onnxruntime with one thread."""
    session = ort_session(path, threads=1)
    name = session.get_inputs()[0].name
    x = np.ascontiguousarray(image[None])
    for _ in range(warmup):
        session.run(None, {name: x})
    times = np.empty(runs)
    for i in range(runs):
        t = time.perf_counter()
        session.run(None, {name: x})
        times[i] = time.perf_counter() - t
    return {"median_ms": round(float(np.median(times) * 1e3), 4),
            "p90_ms": round(float(np.percentile(times, 90) * 1e3), 4), "runs": runs, "threads": 1}


def end_to_end_accuracy(bundle, symbols: dict[str, np.ndarray], labels: np.ndarray, bers: list[float],
                        seeds: int = 1, log=None) -> dict:
    """{encoder: {"<ber>": accuracy}} through pack -> bit flips -> unpack -> edge half."""
    from channel.bit_errors import make_error_model
    from codec.evaluate import corrupt_symbols, edge_predict

    edge = bundle.edge_half()
    out: dict[str, dict[str, float]] = {name: {} for name in symbols}
    for ber in bers:
        key = ber_key(ber)
        for name, sym in symbols.items():
            accs = []
            for s in range(seeds if ber > 0 else 1):
                rx = corrupt_symbols(bundle, sym, make_error_model("iid", ber=ber), seed=1000 * s + 17)
                accs.append(float((edge_predict(bundle, rx, ber, edge=edge) == labels).mean()))
            out[name][key] = round(float(np.mean(accs)), 5)
            if log:
                log(f"  accuracy {name:5s} BER {key:6s} {out[name][key]:.4f}")
    return out


def ber_key(ber: float) -> str:
    """JSON key of a BER: 0 -> "0", 0.01 -> "0.01"."""
    return "0" if ber == 0 else repr(float(ber))


def verify(bundle, float_path: Path, int8_path: Path, images: np.ndarray, labels: np.ndarray,
           bers: list[float] = (0.0, 1e-2), seeds: int = 1, latency_runs: int = 1000, log=None) -> dict:
    """The verification report (a JSON-able dict); keys as in the command-line contract."""
    t0 = time.time()
    sym = {"torch": torch_symbols(bundle, images),
           "float": onnx_symbols(ort_session(float_path, threads=2), images),
           "int8": onnx_symbols(ort_session(int8_path, threads=2), images)}
    report = {
        "bundle": getattr(bundle, "name", ""),
        "fingerprint": bytes(bundle.fingerprint).hex(),
        "test_images": int(len(images)),
        "n_symbols": int(bundle.n_symbols),
        "payload_bytes": int(bundle.payload_bytes),
        "float_bytes": os.path.getsize(float_path),
        "float_opset": _opset(float_path),
        "int8_opset": _opset(int8_path),
        "int8_bytes": os.path.getsize(int8_path),
        "symbol_agreement_int8_vs_torch": round(agreement(sym["int8"], sym["torch"]), 6),
        "symbol_agreement_float_vs_torch": round(agreement(sym["float"], sym["torch"]), 6),
        "symbol_agreement_int8_vs_float": round(agreement(sym["int8"], sym["float"]), 6),
        "images_all_symbols_equal_int8_vs_torch": round(float((sym["int8"] == sym["torch"]).all(1).mean()), 6),
    }
    if log:
        log(f"  symbol agreement int8 vs torch {report['symbol_agreement_int8_vs_torch']:.4%}, "
            f"float vs torch {report['symbol_agreement_float_vs_torch']:.4%}")
    report["accuracy"] = end_to_end_accuracy(bundle, sym, labels, list(bers), seeds, log)
    report["backbone_accuracy"] = _backbone_accuracy(bundle, images, labels)
    report["accuracy_seeds"] = seeds
    if latency_runs:
        report["latency"] = {"float": latency_ms(float_path, images[0], latency_runs),
                             "int8": latency_ms(int8_path, images[0], latency_runs)}
    report["bars"] = dict(BARS)
    report["checks"] = checks(report)
    report["failed_bars"] = [c["text"] for c in report["checks"] if not c["ok"]]
    report["passed"] = not report["failed_bars"]
    report["seconds"] = round(time.time() - t0, 2)
    return report


def _opset(path) -> int:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return int(next(op.version for op in model.opset_import if op.domain in ("", "ai.onnx")))


def _backbone_accuracy(bundle, images: np.ndarray, labels: np.ndarray) -> float:
    from codec.datasets import Dataset
    from codec.evaluate import backbone_accuracy

    return round(backbone_accuracy(bundle, Dataset("verify", images, labels, list(bundle.classes))), 6)


def checks(report: dict) -> list[dict]:
    """Every check the export makes: what, the measured value, the bar, and whether it holds."""
    out = []

    def add(name: str, ok: bool, text: str) -> None:
        out.append({"check": name, "ok": bool(ok), "text": text})

    b = BARS
    add("int8_bytes", report["int8_bytes"] <= b["int8_bytes_max"],
        f"int8 encoder file {report['int8_bytes']} B <= {b['int8_bytes_max']} B")
    agree = report["symbol_agreement_int8_vs_torch"]
    add("symbol_agreement", agree >= b["symbol_agreement_min"],
        f"int8 symbols equal torch's on {agree:.4%} of symbols (bar {b['symbol_agreement_min']:.0%})")
    acc = report["accuracy"]
    for key, ref in acc["torch"].items():
        gap = ref - acc["int8"][key]
        add(f"int8_accuracy_{key}", gap <= b["accuracy_gap_max"],
            f"int8 accuracy at BER {key} {acc['int8'][key]:.2%} vs torch {ref:.2%} (at most "
            f"{100 * b['accuracy_gap_max']:.1f} points below)")
    clean, bb = acc["torch"].get("0"), report.get("backbone_accuracy")
    if clean is not None and bb is not None:
        add("codec_vs_backbone", bb - clean <= b["backbone_gap_max"],
            f"codec at BER 0 {clean:.2%} vs its float backbone {bb:.2%} (at most "
            f"{100 * b['backbone_gap_max']:.0f} points below; retrain with a longer --stage2-steps if not)")
    return out


def check_bars(report: dict) -> list[str]:
    """The acceptance bars this report misses (empty when it passes)."""
    return [c["text"] for c in checks(report) if not c["ok"]]
