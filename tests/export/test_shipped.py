"""The int8 encoder committed beside the shipped bundle belongs to it."""
from codec.bundle import load_bundle
from export.shipped import SHIPPED_INT8, default_int8_encoder, onnx_fingerprint


def test_shipped_int8_encoder_matches_the_shipped_bundle():
    assert SHIPPED_INT8.is_file(), "re-export with: snn export -o DIR; copy DIR/encoder.int8.onnx there"
    assert onnx_fingerprint(SHIPPED_INT8) == load_bundle().fingerprint_hex
    assert default_int8_encoder() == SHIPPED_INT8


def test_shipped_int8_encoder_meets_the_export_bars():
    """The committed verification report (full test set) passed, and it describes this very file."""
    import json

    from codec.bundle import DEFAULT_BUNDLE

    report = json.loads(DEFAULT_BUNDLE.with_suffix(".verify.json").read_text())
    assert report["fingerprint"] == load_bundle().fingerprint_hex
    assert report["int8_bytes"] == SHIPPED_INT8.stat().st_size <= 64 * 1024
    assert report["test_images"] == 10000 and report["passed"], report["failed_bars"]
    assert report["symbol_agreement_int8_vs_torch"] >= 0.99
    for ber in ("0", "0.01"):
        assert abs(report["accuracy"]["int8"][ber] - report["accuracy"]["torch"][ber]) <= 0.003


def test_shipped_int8_encoder_agrees_with_torch_on_real_images():
    """Measured here, not read from the report: 1000 real test images through onnxruntime."""
    import numpy as np
    import pytest

    from codec.datasets import fmnist_dir, load_dataset
    from codec.evaluate import device_symbols
    from device.encoder import OnnxEncoder

    if not (fmnist_dir() / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip("Fashion-MNIST is not installed")
    images = load_dataset("fmnist:test").images[:1000]
    int8 = OnnxEncoder(SHIPPED_INT8).encode(images)
    torch_symbols = device_symbols(load_bundle(), images)
    assert int8.shape == torch_symbols.shape
    assert float(np.mean(int8 == torch_symbols)) >= 0.99
