"""The MobileNetV2 bundle in codec/zoo (issue 26): its int8 encoder belongs to it, fits every board,
agrees with torch on real images, and the accuracy benchmark finds it as `semanticnn-mobilenetv2`."""
import json
from pathlib import Path

import numpy as np
import pytest

import codec
from codec.bundle import load_bundle

ZOO = Path(codec.__file__).parent / "zoo"
BUNDLE = ZOO / "fmnist_mobilenetv2.snn"
INT8 = BUNDLE.with_suffix(".int8.onnx")
REMAKE = "remake with the commands in codec/zoo/TRAINING.md (the MobileNetV2 bundle)"


def _fmnist_test(count: int):
    from codec.datasets import fmnist_dir, load_dataset

    if not (fmnist_dir() / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip("Fashion-MNIST is not installed")
    return load_dataset("fmnist:test").take(count)


def test_bundle_is_the_mcu_mobilenetv2_at_the_shipped_payload():
    bundle = load_bundle(BUNDLE)
    assert bundle.config["backbone"]["arch"] == "mobilenetv2_mcu", REMAKE
    assert (bundle.n_symbols, bundle.levels, bundle.payload_bytes) == (98, 8, 37)   # 98 x 3 bits, as the default
    assert load_bundle().payload_bytes == bundle.payload_bytes


def test_committed_int8_encoder_and_report_belong_to_the_bundle():
    from export.shipped import onnx_fingerprint

    bundle = load_bundle(BUNDLE)
    assert INT8.is_file() and onnx_fingerprint(INT8) == bundle.fingerprint_hex, REMAKE
    assert INT8.stat().st_size <= 64 * 1024
    report = json.loads(BUNDLE.with_suffix(".verify.json").read_text())
    assert report["fingerprint"] == bundle.fingerprint_hex
    assert report["checks"] and all(c["ok"] for c in report["checks"]), report["checks"]


def test_int8_encoder_fits_every_board_with_a_fraction_of_the_default_macs():
    from firmware_sim.boards import board_names
    from firmware_sim.lowering import lower
    from firmware_sim.report import mcu_report

    program = lower(str(INT8))
    default = mcu_report(str(ZOO / "fmnist_default.int8.onnx"), "stm32f411")
    for name in board_names():
        rep = mcu_report(str(INT8), name, program=program)
        assert rep["fits"], (name, rep["flash_bytes"], rep["peak_sram_bytes"])
        assert rep["macs"] * 4 < default["macs"], (rep["macs"], default["macs"])


def test_int8_encoder_agrees_with_torch_and_keeps_its_accuracy_on_real_images():
    """Measured here: 1,000 real test images through onnxruntime and through the torch device half."""
    from codec.evaluate import device_symbols, edge_predict
    from device.encoder import OnnxEncoder

    data = _fmnist_test(1000)
    bundle = load_bundle(BUNDLE)
    int8 = OnnxEncoder(INT8).encode(data.images).astype(np.uint8)
    ref = device_symbols(bundle, data.images)
    assert float(np.mean(int8 == ref)) >= 0.99
    acc = {name: float((edge_predict(bundle, s, 0.0) == data.labels).mean()) for name, s in (("int8", int8), ("torch", ref))}
    assert acc["int8"] >= acc["torch"] - 0.005 and acc["torch"] >= 0.85, acc


def test_accuracy_benchmark_finds_it_under_its_row_name():
    from bench.accuracy import find_ablations

    found = dict(find_ablations())
    assert found["semanticnn-mobilenetv2"] == BUNDLE
    assert BUNDLE not in [p for name, p in found.items() if name != "semanticnn-mobilenetv2"]
