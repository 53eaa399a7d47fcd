"""The int8 encoder of the shipped default bundle, for users who have not run `snn export`.

It is committed beside the bundle (`codec/zoo/fmnist_default.int8.onnx`) so a device needs no
torch and the demo no export; when that file is missing or belongs to another bundle, the
encoder is exported once into `~/.cache/semanticnn/<fingerprint>/`.
"""
from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from codec.bundle import DEFAULT_BUNDLE

SHIPPED_INT8 = DEFAULT_BUNDLE.with_suffix(".int8.onnx")
CACHE = Path(os.environ.get("SNN_CACHE", Path.home() / ".cache" / "semanticnn"))


def onnx_fingerprint(path: Path) -> str | None:
    """The codec fingerprint (hex) in an exported encoder's metadata, None when absent."""
    import onnx
    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    return props.get("snn.fingerprint")


def default_int8_encoder(log=print) -> Path:
    """The int8 encoder matching the shipped default bundle (exporting it once if need be)."""
    from codec.bundle import load_bundle
    bundle = load_bundle()
    if SHIPPED_INT8.is_file() and onnx_fingerprint(SHIPPED_INT8) == bundle.fingerprint_hex:
        return SHIPPED_INT8
    out = CACHE / bundle.fingerprint_hex
    encoder = out / "encoder.int8.onnx"
    if not encoder.is_file():
        from codec.datasets import load_dataset
        from export.pipeline import build_encoders, calibration_split
        log(f"exporting the default encoder to {out} (once) ...")
        cal, _ = calibration_split(load_dataset("fmnist:train").images, 512, 0)
        with _quiet():  # onnxruntime's calibrator prints progress of its own
            build_encoders(bundle, out, cal, log=lambda *a: None)
    return encoder


@contextlib.contextmanager
def _quiet():
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null), contextlib.redirect_stderr(null):
        logging.disable(logging.WARNING)
        try:
            yield
        finally:
            logging.disable(logging.NOTSET)
