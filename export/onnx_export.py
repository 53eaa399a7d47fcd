"""The device half of a bundle as one float ONNX graph whose output is the symbols to send.

Graph (opset 17, TorchScript exporter, weights inside the one .onnx file)::

    image uint8 (N, H, W, C)  --Cast, /255, NHWC->NCHW-->  bundle.device_half()
        (input normalisation, backbone head, SQ encoder, power normalisation,
         ArgMin over |z - c_k|)  --Cast-->  symbols uint8 (N, S)

so a device feeds raw camera pixels and only packs bits. Everything a device needs besides the
weights travels in the model's ``metadata_props`` (JSON strings, keys in `METADATA_KEYS`): the
sorted centres, the code of each symbol index (Gray), the input spec, bits per symbol and the
codec fingerprint. `read_metadata` reads them back with the ``onnx`` package; the device reads
them through onnxruntime (``device.encoder``) without it.

The edge half (symbol indices, erased mask, BER -> logits) exports to float ONNX as well, for an
onnxruntime edge.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from codec.wire.encoder_meta import FORMAT
from snn.errors import SnnError

OPSET = 17
MIN_OPSET = 17
INPUT_NAME = "image"
OUTPUT_NAME = "symbols"
METADATA_KEYS = ("snn.format", "snn.bundle", "snn.fingerprint", "snn.levels", "snn.bits_per_symbol",
                 "snn.gray", "snn.codes", "snn.centers", "snn.n_symbols", "snn.symbol_shape",
                 "snn.payload_bits", "snn.payload_bytes", "snn.input", "snn.classes", "snn.quantization")


def bundle_metadata(bundle, quantization: str = "float32") -> dict[str, str]:
    """The metadata a device needs, as ONNX ``metadata_props`` (string -> JSON string)."""
    from codec.wire.packing import symbol_codes

    c, h, w = (int(v) for v in bundle.input_shape)
    levels = int(bundle.levels)
    gray = bool(getattr(bundle, "gray", True))
    bits = int(bundle.bits_per_symbol)
    n_symbols = int(bundle.n_symbols)
    return {
        "snn.format": FORMAT,
        "snn.bundle": str(getattr(bundle, "name", "")),
        "snn.fingerprint": bytes(bundle.fingerprint).hex(),
        "snn.levels": json.dumps(levels),
        "snn.bits_per_symbol": json.dumps(bits),
        "snn.gray": json.dumps(gray),
        "snn.codes": json.dumps([int(v) for v in symbol_codes(levels, gray)]),
        "snn.centers": json.dumps([float(v) for v in np.asarray(bundle.centers, dtype=np.float32)]),
        "snn.n_symbols": json.dumps(n_symbols),
        "snn.symbol_shape": json.dumps([int(v) for v in bundle.symbol_shape]),
        "snn.payload_bits": json.dumps(n_symbols * bits),
        "snn.payload_bytes": json.dumps((n_symbols * bits + 7) // 8),
        "snn.input": json.dumps({
            "name": INPUT_NAME, "dtype": "uint8", "layout": "NHWC", "shape": [h, w, c],
            "scale": 1.0 / 255.0,
            "mean": [float(v) for v in np.ravel(bundle.input_mean)],
            "std": [float(v) for v in np.ravel(bundle.input_std)],
            "note": "raw pixels; /255, NHWC->NCHW and (x - mean) / std happen inside the graph"}),
        "snn.classes": json.dumps(list(map(str, bundle.classes))),
        "snn.quantization": quantization,
    }


def set_metadata(model, meta: dict[str, str]) -> None:
    """Replace the model's ``snn.*`` metadata_props with `meta`."""
    keep = [(p.key, p.value) for p in model.metadata_props if not p.key.startswith("snn.")]
    del model.metadata_props[:]
    for key, value in keep + sorted(meta.items()):
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value


def read_metadata(path: str | Path) -> dict:
    """The ``snn.*`` metadata of an exported encoder, JSON values decoded."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return decode_metadata({p.key: p.value for p in model.metadata_props})


def decode_metadata(props: dict[str, str]) -> dict:
    """``{'snn.levels': '8', ...}`` -> ``{'levels': 8, ...}`` (JSON decoded, prefix dropped)."""
    out = {}
    for key, value in props.items():
        if not key.startswith("snn."):
            continue
        name = key[4:]
        if name in ("format", "bundle", "fingerprint", "quantization"):
            out[name] = value
        else:
            out[name] = json.loads(value)
    return out


def _device_graph(bundle):
    import torch
    from torch import nn

    class DeviceGraph(nn.Module):
        """uint8 NHWC pixels -> uint8 symbol indices, around the bundle's device half."""

        def __init__(self, half: nn.Module):
            super().__init__()
            self.device = half

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            x = image.to(torch.float32).permute(0, 3, 1, 2) * (1.0 / 255.0)
            return self.device(x).to(torch.uint8)

    half = bundle.device_half()
    half.eval()
    return DeviceGraph(half).eval()


def check_opset(opset: int) -> int:
    if int(opset) < MIN_OPSET:
        raise SnnError(f"opset {opset} is too old: the encoder needs ONNX opset {MIN_OPSET} or newer")
    return int(opset)


def _torch_export(module, args: tuple, input_names, output_names, dynamic_axes, opset: int):
    """Export with the TorchScript exporter into memory and return the onnx ModelProto.

    torch 2.13 defaults to the dynamo exporter, which needs onnxscript and may write external
    data; the TorchScript path (dynamo=False) gives one self-contained file at a fixed opset.
    """
    import warnings

    import onnx
    import torch

    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, buf, opset_version=opset, dynamo=False,
                          input_names=list(input_names), output_names=list(output_names),
                          dynamic_axes=dynamic_axes, do_constant_folding=True)
    model = onnx.load_from_string(buf.getvalue())
    onnx.checker.check_model(model)
    return fold_constants(model)


def fold_constants(model):
    """Fold everything computable ahead of time (GDN's beta/gamma, the centres from their
    softplus parametrisation, shape arithmetic) with onnxruntime's basic, hardware-independent
    graph optimisations, so the file holds plain constants and standard ONNX ops only."""
    import os
    import tempfile

    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "in.onnx"), os.path.join(tmp, "out.onnx")
        onnx.save_model(model, src)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = dst
        ort.InferenceSession(src, options, providers=["CPUExecutionProvider"])
        folded = onnx.load(dst)
    used = {node.domain or "" for node in folded.graph.node}
    keep = [op for op in folded.opset_import if (op.domain or "") in used or op.domain in ("", "ai.onnx")]
    del folded.opset_import[:]
    folded.opset_import.extend(keep)
    onnx.checker.check_model(folded)
    return folded


def export_encoder(bundle, path: str | Path, opset: int = OPSET) -> Path:
    """Write the float ONNX encoder (uint8 image -> uint8 symbols) with its metadata."""
    import onnx
    import torch

    check_opset(opset)
    c, h, w = (int(v) for v in bundle.input_shape)
    graph = _device_graph(bundle)
    example = torch.zeros(1, h, w, c, dtype=torch.uint8)
    model = _torch_export(graph, (example,), [INPUT_NAME], [OUTPUT_NAME],
                          {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}, opset)
    out = model.graph.output[0]
    if out.type.tensor_type.elem_type != onnx.TensorProto.UINT8:
        raise RuntimeError("the exported encoder does not output uint8 symbols")
    model.doc_string = (f"SemanticNN device encoder for bundle {getattr(bundle, 'name', '')}: "
                        f"uint8 image (N,{h},{w},{c}) -> uint8 symbol indices (N,{bundle.n_symbols})")
    model.producer_name = "semanticnn-runtime export"
    set_metadata(model, bundle_metadata(bundle, "float32"))
    path = Path(path)
    onnx.save_model(model, str(path), save_as_external_data=False)
    return path


def export_edge(bundle, path: str | Path, opset: int = OPSET) -> Path:
    """Write the float ONNX edge half: (symbols int64, erased bool, ber float32) -> logits."""
    import onnx
    import torch

    check_opset(opset)
    half = bundle.edge_half().eval()
    s = int(bundle.n_symbols)
    args = (torch.zeros(2, s, dtype=torch.int64), torch.zeros(2, s, dtype=torch.bool),
            torch.full((2,), 1e-2, dtype=torch.float32))
    names = ["symbols", "erased", "ber"]
    model = _torch_export(half, args, names, ["logits"],
                          {n: {0: "batch"} for n in names + ["logits"]}, opset)
    meta = bundle_metadata(bundle, "float32")
    meta["snn.format"] = "semanticnn-edge/1"
    set_metadata(model, meta)
    path = Path(path)
    onnx.save_model(model, str(path), save_as_external_data=False)
    return path


def edge_onnx_bytes(bundle, opset: int = OPSET) -> bytes:
    """The ONNX edge half of `bundle` as the bytes a bundle stores as ``edge.onnx``."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        return export_edge(bundle, Path(tmp) / "edge.onnx", opset).read_bytes()


def add_edge_to_bundle(path: str | Path, out: str | Path | None = None, opset: int = OPSET) -> dict:
    """Re-write bundle `path` (to `out`, default in place) carrying its ONNX edge half; the
    weights are untouched, so the codec fingerprint stays what it was (checked)."""
    from codec.bundle import load_bundle

    bundle = load_bundle(path)
    data = edge_onnx_bytes(bundle, opset)
    target = Path(out or path)
    bundle.save(target, edge_onnx=data)
    again = load_bundle(target)
    if again.fingerprint != bundle.fingerprint or again.edge_onnx != data:
        raise RuntimeError(f"re-writing {path} changed its fingerprint or lost edge.onnx")
    return {"bundle": str(target), "fingerprint": again.fingerprint_hex, "edge_onnx_bytes": len(data),
            "edge_onnx_sha256": again.manifest["edge_onnx"]["sha256"]}


def compact_names(model) -> None:
    """Shorten every internal tensor and node name (t1a, n2b, ...) and drop value_info and node
    doc strings. Exporter and quantizer names such as
    ``/device/layer2/layer2.0/conv1/Conv_output_0_QuantizeLinear_Output`` cost more bytes than a
    small int8 model's weights; the graph's input and output names stay as they are."""
    graph = model.graph
    used = {name for node in graph.node for name in node.input} | {v.name for v in graph.output}
    unused = [init for init in graph.initializer if init.name not in used]
    for init in unused:
        graph.initializer.remove(init)
    keep = {v.name for v in graph.input} | {v.name for v in graph.output}
    mapping: dict[str, str] = {}

    def short(name: str) -> str:
        if not name or name in keep:
            return name
        if name not in mapping:
            mapping[name] = "t" + _base36(len(mapping))
        return mapping[name]

    for init in graph.initializer:
        init.name = short(init.name)
        init.doc_string = ""
    for i, node in enumerate(graph.node):
        for j, name in enumerate(node.input):
            node.input[j] = short(name)
        for j, name in enumerate(node.output):
            node.output[j] = short(name)
        node.name = "n" + _base36(i)
        node.doc_string = ""
    del graph.value_info[:]


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out
