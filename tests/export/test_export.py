"""export/: the float and int8 encoders, their metadata, verify.json and the CLI's bad inputs."""
import json
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from codec.wire.packing import symbol_codes
from export.onnx_export import read_metadata
from export.quantize import ImageReader, tail_nodes


def _snn(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "snn", *args], capture_output=True, text=True, timeout=timeout)


def test_float_encoder_matches_torch_and_outputs_uint8(tiny_bundle, tiny_export, fmnist):
    out, _ = tiny_export
    model = onnx.load(str(out / "encoder.onnx"))
    assert model.opset_import[0].version >= 17
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    session = ort.InferenceSession(str(out / "encoder.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].type == "tensor(uint8)"
    assert session.get_outputs()[0].type == "tensor(uint8)"
    images = fmnist[1].images[:50]
    sym = session.run(None, {"image": images})[0]
    assert sym.shape == (50, tiny_bundle.n_symbols) and sym.dtype == np.uint8
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    ref = tiny_bundle.device_half()(x).numpy()
    assert (sym == ref).mean() == 1.0


def test_int8_encoder_carries_everything_a_device_needs(tiny_bundle, tiny_export):
    out, _ = tiny_export
    meta = read_metadata(out / "encoder.int8.onnx")
    assert meta["format"] == "semanticnn-encoder/1"
    assert meta["fingerprint"] == tiny_bundle.fingerprint.hex()
    assert meta["levels"] == tiny_bundle.levels and meta["bits_per_symbol"] == tiny_bundle.bits_per_symbol
    assert np.allclose(meta["centers"], tiny_bundle.centers)
    assert meta["codes"] == symbol_codes(tiny_bundle.levels).tolist()
    assert meta["n_symbols"] == tiny_bundle.n_symbols
    assert meta["input"]["shape"] == [28, 28, 1] and meta["input"]["dtype"] == "uint8"
    assert meta["quantization"].startswith("int8")
    model = onnx.load(str(out / "encoder.int8.onnx"))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "ArgMin"} <= ops
    # every Conv's weight is an int8 initializer dequantized with one scale per output channel
    inits = {t.name: t for t in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert convs
    for conv in convs:
        dq = producer[conv.input[1]]
        assert dq.op_type == "DequantizeLinear"
        weight, scale = inits[dq.input[0]], inits[dq.input[1]]
        assert weight.data_type == onnx.TensorProto.INT8
        assert list(scale.dims) == [weight.dims[0]]


def test_verify_report_has_contract_keys(tiny_export):
    out, report = tiny_export
    saved = json.loads((out / "verify.json").read_text())
    for key in ("int8_bytes", "symbol_agreement_int8_vs_torch", "accuracy"):
        assert key in saved
    assert set(saved["accuracy"]) >= {"torch", "float", "int8"}
    assert set(saved["accuracy"]["int8"]) == {"0", "0.01"}
    assert saved["symbol_agreement_float_vs_torch"] == 1.0
    assert 0.9 < saved["symbol_agreement_int8_vs_torch"] <= 1.0
    assert saved["latency"]["int8"]["median_ms"] > 0


def test_edge_half_exports_to_onnx(tiny_bundle, tiny_export):
    out, _ = tiny_export
    session = ort.InferenceSession(str(out / "edge.onnx"), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    sym = rng.integers(0, tiny_bundle.levels, (4, tiny_bundle.n_symbols))
    erased = np.zeros(sym.shape, bool)
    ber = np.full(4, 1e-2, np.float32)
    logits = session.run(None, {"symbols": sym, "erased": erased, "ber": ber})[0]
    ref = tiny_bundle.edge_half()(torch.from_numpy(sym), torch.from_numpy(erased), torch.from_numpy(ber))
    assert np.allclose(logits, ref.detach().numpy(), atol=1e-4)


def test_tail_after_last_conv_stays_float(tiny_export):
    out, _ = tiny_export
    model = onnx.load(str(out / "encoder.onnx"))
    names = set(tail_nodes(model))
    ops = {n.op_type for n in model.graph.node if n.name in names}
    assert {"ArgMin", "ReduceMean"} <= ops and "Conv" not in ops


def test_calibration_batches_are_equal_sized():
    reader = ImageReader(np.zeros((130, 28, 28, 1), np.uint8), batch=64)
    sizes = []
    while (b := reader.get_next()) is not None:
        sizes.append(len(b["image"]))
    assert len(set(sizes)) == 1 and sum(sizes) >= 130


def test_empty_calibration_is_refused(tiny_bundle, fmnist, tmp_path):
    from export.pipeline import export_bundle
    from snn.errors import SnnError

    test = fmnist[1]
    with pytest.raises(SnnError, match="calibration set is empty"):
        export_bundle(tiny_bundle, tmp_path, test.images[:0], test.images[:10], test.labels[:10], calib=10,
                      log=lambda *a: None)


@pytest.mark.parametrize("args, needle", [
    (["{tmp}/not_a_bundle.snn", "-o", "{tmp}/out"], "bundle"),
    (["-o", "{tmp}/out", "--opset", "13"], "opset"),
    (["-o", "{tmp}/out", "--calib", "0"], "calibration set is empty"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, args, needle):
    (tmp_path / "not_a_bundle.snn").write_bytes(b"hello, I am not a zip")
    proc = _snn("export", *[a.format(tmp=tmp_path) for a in args], timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0]


def test_cli_exports_the_shipped_bundle(tmp_path):
    from codec.bundle import DEFAULT_BUNDLE

    if not DEFAULT_BUNDLE.is_file():
        pytest.skip("no shipped bundle yet")
    out = tmp_path / "exp"
    proc = _snn("export", "-o", str(out), "--calib", "64", "--holdout", "64", "--count", "200",
                "--latency-runs", "5", "--method", "percentile", "--activations", "8", "--json",
                str(tmp_path / "v.json"))
    assert proc.returncode == 0, proc.stderr
    for name in ("encoder.onnx", "encoder.int8.onnx", "edge.onnx", "verify.json"):
        assert (out / name).is_file()
    report = json.loads((out / "verify.json").read_text())
    assert report == json.loads((tmp_path / "v.json").read_text())
    assert report["test_images"] == 200 and report["calibration"]["data"] == "fmnist:train"
    assert report["symbol_agreement_float_vs_torch"] == 1.0
    # forced 8-bit activations agree on 94-95 % of symbols for the shipped bundles (the automatic choice,
    # 16-bit, on 99.9 %: codec/zoo/TRAINING.md); 0.90 says the path works without pinning one bundle
    assert report["symbol_agreement_int8_vs_torch"] > 0.90
    meta = read_metadata(out / "encoder.int8.onnx")
    assert meta["quantization"] == "int8-qdq-per-channel/percentile"
    assert "symbols = torch" in proc.stdout


def test_int8_aware_weights_make_the_int8_encoder_pick_the_torch_symbols(fmnist, tmp_path):
    """Device-side convs on the int8 grid (`snn train codec --int8-aware`): onnxruntime's
    per-channel int8 weights then reproduce them, and int8 symbols equal torch's."""
    from fixture_bundle import TinyBundle

    from codec.training.int8_grid import snap_to_grid_
    from export.pipeline import export_bundle

    train, test = fmnist
    bundle = TinyBundle(seed=1)
    for stage in bundle.backbone.head_stages():
        snap_to_grid_(stage)
    assert snap_to_grid_(bundle.codec.encoder) == 3  # two convs and GDN's gamma conv
    report = export_bundle(bundle, tmp_path, train.images, test.images[:300], test.labels[:300], calib=128,
                           holdout=0, method="minmax", activations="16", latency_runs=5, edge=False,
                           log=lambda *a: None)
    assert report["symbol_agreement_int8_vs_torch"] >= 0.999, report["symbol_agreement_int8_vs_torch"]


def test_export_never_passes_a_codec_far_below_its_backbone():
    from export.verify import checks

    report = {"int8_bytes": 60000, "symbol_agreement_int8_vs_torch": 0.999, "backbone_accuracy": 0.971,
              "accuracy": {"torch": {"0": 0.534, "0.01": 0.530}, "int8": {"0": 0.534, "0.01": 0.530}}}
    result = {c["check"]: c for c in checks(report)}
    assert result["codec_vs_backbone"]["ok"] is False and "53.40%" in result["codec_vs_backbone"]["text"]
    assert all(c["ok"] for name, c in result.items() if name != "codec_vs_backbone")
    report["accuracy"]["torch"]["0"] = report["accuracy"]["int8"]["0"] = 0.955
    assert all(c["ok"] for c in checks(report))
