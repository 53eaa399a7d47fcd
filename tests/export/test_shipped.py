"""The int8 encoder committed beside the shipped bundle belongs to it."""
from codec.bundle import load_bundle
from export.shipped import SHIPPED_INT8, default_int8_encoder, onnx_fingerprint


def test_shipped_int8_encoder_matches_the_shipped_bundle():
    assert SHIPPED_INT8.is_file(), "re-export with: snn export -o DIR; copy DIR/encoder.int8.onnx there"
    assert onnx_fingerprint(SHIPPED_INT8) == load_bundle().fingerprint_hex
    assert default_int8_encoder() == SHIPPED_INT8


def test_shipped_int8_encoder_meets_the_export_bars_measured_here():
    """Measured, not read back: the file fits 64 KB, the committed report describes this very file,
    and on 2,000 real test images the int8 symbols lose at most 0.5 points against torch's at BER 0
    and 1e-2 (real bit flips on packed frames)."""
    import json

    import numpy as np
    import pytest

    from channel.bit_errors import make_error_model
    from codec.bundle import DEFAULT_BUNDLE
    from codec.datasets import fmnist_dir, load_dataset
    from codec.evaluate import corrupt_symbols, device_symbols, edge_predict
    from device.encoder import OnnxEncoder

    assert SHIPPED_INT8.stat().st_size <= 64 * 1024
    bundle = load_bundle()
    assert json.loads(DEFAULT_BUNDLE.with_suffix(".verify.json").read_text())["fingerprint"] == bundle.fingerprint_hex
    if not (fmnist_dir() / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip("Fashion-MNIST is not installed")
    data = load_dataset("fmnist:test").take(2000)
    int8 = OnnxEncoder(SHIPPED_INT8).encode(data.images).astype(np.uint8)
    ref = device_symbols(bundle, data.images)
    for ber in (0.0, 1e-2):
        errors = make_error_model("iid", ber=ber) if ber else None
        acc = {name: float((edge_predict(bundle, corrupt_symbols(bundle, s, errors, seed=17), ber) == data.labels).mean())
               for name, s in (("int8", int8), ("torch", ref))}
        assert acc["int8"] >= acc["torch"] - 0.005, (ber, acc)
        assert acc["int8"] >= 0.85, (ber, acc)


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
