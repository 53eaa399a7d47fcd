"""`snn export` as a function: bundle -> encoder.onnx, encoder.int8.onnx, verify.json.

Calibration uses real training images. With ``method="auto"`` every calibration method in
`QUANT_METHODS` is tried and the one whose int8 symbols agree best with the torch device half on
a *held-out* slice of the training set is kept (the test set is only used for the report).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from export.onnx_export import (
    bundle_metadata,
    compact_names,
    export_edge,
    export_encoder,
    set_metadata,
)
from export.quantize import QUANT_METHODS, quantize_encoder
from export.verify import agreement, onnx_symbols, ort_session, torch_symbols, verify
from snn.errors import SnnError

ENCODER_FLOAT = "encoder.onnx"
ENCODER_INT8 = "encoder.int8.onnx"
EDGE_FLOAT = "edge.onnx"
VERIFY_JSON = "verify.json"


def default_specs(bundle) -> tuple[str, str]:
    """(calibration spec, test spec) for the data set the bundle was trained on."""
    data = ((getattr(bundle, "config", None) or {}).get("backbone") or {}).get("data") or "fmnist"
    data = str(data)
    if ":" in data:  # already a spec such as cifar10:PATH:train
        base = data.rsplit(":", 1)[0] if data.endswith((":train", ":test", ":val")) else data
        return f"{base}:train", f"{base}:test"
    return f"{data}:train", f"{data}:test"


def check_images(images: np.ndarray, bundle, what: str) -> np.ndarray:
    c, h, w = (int(v) for v in bundle.input_shape)
    if images.ndim != 4 or tuple(images.shape[1:]) != (h, w, c):
        raise SnnError(f"the {what} images have shape {tuple(images.shape[1:])} (H, W, C), the bundle "
                       f"expects {(h, w, c)}: use the data set the bundle was trained on")
    return np.ascontiguousarray(images, dtype=np.uint8)


def calibration_split(images: np.ndarray, calib: int, holdout: int, seed: int = 0):
    """(calibration images, held-out images) drawn without overlap from a training set."""
    if calib <= 0 or len(images) == 0:
        raise SnnError("the calibration set is empty: int8 static quantization needs real images "
                       "(use --calib N with N > 0 and a data set that holds images)")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(images))
    cal = order[:calib]
    held = order[calib:calib + holdout]
    return images[np.sort(cal)], images[np.sort(held)]


def export_bundle(bundle, out_dir: str | Path, train_images: np.ndarray, test_images: np.ndarray,
                  test_labels: np.ndarray, *, calib: int = 1000, holdout: int = 1000, method: str = "auto",
                  opset: int = 17, activations: str = "auto",
                  bers=(0.0, 1e-2), seeds: int = 1, latency_runs: int = 1000, edge: bool = True,
                  log=print) -> dict:
    """Export, quantize, verify; write the three files and return the verification report."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train_images = check_images(train_images, bundle, "calibration")
    test_images = check_images(test_images, bundle, "test")
    if len(test_images) == 0:
        raise SnnError("the test set is empty: verification needs images")
    cal, held = calibration_split(train_images, calib, holdout if method == "auto" else 0)
    t0 = time.time()
    float_path, int8_path, chosen = build_encoders(bundle, out, cal, held, method=method, opset=opset,
                                                activations=activations, log=log)
    if edge:
        edge_path = export_edge(bundle, out / EDGE_FLOAT, opset=opset)
        log(f"float edge     {edge_path} ({os.path.getsize(edge_path)} B)")
    log(f"verifying on {len(test_images)} test images ...")
    report = verify(bundle, float_path, int8_path, test_images, test_labels, bers=bers, seeds=seeds,
                    latency_runs=latency_runs, log=log)
    report["calibration"] = chosen
    report["opset_requested"] = opset  # 16-bit activations need opset 21 (onnxruntime raises it)
    report["export_seconds"] = round(time.time() - t0, 2)
    (out / VERIFY_JSON).write_text(json.dumps(report, indent=1, sort_keys=True))
    return report


def build_encoders(bundle, out_dir: str | Path, cal: np.ndarray, held: np.ndarray | None = None,
                   method: str = "auto", opset: int = 17, activations: str = "auto", log=print) -> tuple[Path, Path, dict]:
    """Write encoder.onnx and encoder.int8.onnx (no verification); returns both paths and the
    calibration record."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    held = cal[:0] if held is None else held
    float_path = export_encoder(bundle, out / ENCODER_FLOAT, opset=opset)
    log(f"float encoder  {float_path} ({os.path.getsize(float_path)} B, opset {opset})")
    int8_path = out / ENCODER_INT8
    chosen = _quantize(bundle, float_path, int8_path, cal, held, method, log, activations)
    log(f"int8 encoder   {int8_path} ({os.path.getsize(int8_path)} B, {chosen['scheme']} on "
        f"{len(cal)} training images)")
    return float_path, int8_path, chosen


def _quantize(bundle, float_path: Path, int8_path: Path, cal: np.ndarray, held: np.ndarray, method: str,
              log, activations: str = "auto") -> dict:
    """Quantize with each candidate scheme, keep the one that best matches torch on held-out images.

    Candidates: int8 activations with each calibration method; with ``activations="auto"``, when
    none of them reaches the agreement bar, int8 weights with int16 activations (A16W8, what
    CMSIS-NN's s16 kernels run) are tried as well. Weights are int8 per channel in every case.
    """
    import onnx

    from export.verify import BARS

    if method != "auto" and method not in QUANT_METHODS:
        raise SnnError(f"unknown calibration method '{method}'; choose auto or one of {', '.join(QUANT_METHODS)}")
    if activations not in ("auto", "8", "16"):
        raise SnnError(f"--activations must be auto, 8 or 16, got '{activations}'")
    methods = list(QUANT_METHODS) if method == "auto" else [method]
    bits_list = [16] if activations == "16" else [8]
    probe = held if len(held) else cal
    measure = len(methods) > 1 or activations == "auto"
    reference = torch_symbols(bundle, probe) if measure else None
    best, tried = None, {}
    tmp = int8_path.with_name(int8_path.name + ".try")

    def attempt(m: str, bits: int) -> None:
        nonlocal best
        quantize_encoder(float_path, tmp, cal, method=m, activation_bits=bits)
        score = 0.0
        if reference is not None:
            score = agreement(onnx_symbols(ort_session(tmp, threads=2), probe), reference)
            tried[f"a{bits}/{m}"] = round(score, 6)
            log(f"  int8 weights, {bits}-bit activations, {m:10s} calibration: symbol agreement {score:.4%} "
                f"on {len(probe)} held-out training images")
        # prefer 8-bit activations at equal agreement (smaller and faster on an MCU)
        if best is None or score > best[2] + (1e-4 if bits > best[1] else 0.0):
            best = (m, bits, score)
            os.replace(tmp, int8_path)

    for bits in bits_list:
        for m in methods:
            attempt(m, bits)
    if activations == "auto" and best[2] < BARS["symbol_agreement_min"]:
        log(f"  8-bit activations reach {best[2]:.4%} < {BARS['symbol_agreement_min']:.0%}: trying 16-bit activations")
        for m in methods:
            attempt(m, 16)
    if tmp.exists():
        tmp.unlink()
    m, bits, score = best
    scheme = f"int8-qdq-per-channel/{m}" if bits == 8 else f"int8w-int16a-qdq-per-channel/{m}"
    model = onnx.load(str(int8_path))
    compact_names(model)
    onnx.checker.check_model(model)
    set_metadata(model, bundle_metadata(bundle, scheme))
    model.producer_name = "semanticnn-runtime export"
    onnx.save_model(model, str(int8_path), save_as_external_data=False)
    return {"method": m, "activation_bits": bits, "weight_bits": 8, "scheme": scheme,
            "calibration_images": int(len(cal)), "holdout_images": int(len(held)), "tried": tried}
