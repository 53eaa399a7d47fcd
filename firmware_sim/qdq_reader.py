"""Read a quantized (QDQ) ONNX encoder: nodes in topological order, constants, metadata.

Only the ``onnx`` package is needed (no onnxruntime). Constant sub-graphs (centres computed from
parameters, reshaped GDN weights, quantize/dequantize of constants) are folded at compile time by
onnx's reference evaluator, one node at a time; this is the offline converter's job on an MCU
too, and no float ever reaches a kernel.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from codec.wire.encoder_meta import EncoderInfo, parse_metadata
from snn.errors import SnnError


@dataclass
class QdqModel:
    """The parts of an ONNX model the lowering needs."""

    path: str
    nodes: list                     # onnx NodeProto, topologically sorted
    initializers: dict[str, np.ndarray]
    inputs: list[tuple[str, int, list]]   # (name, onnx elem type, shape with None for symbolic)
    outputs: list[str]
    metadata: dict = field(default_factory=dict)
    opset: int = 17
    model: object = None
    encoder: EncoderInfo | None = None   # the validated snn.* metadata of an exported encoder

    def consumers(self) -> dict[str, list]:
        out: dict[str, list] = {}
        for node in self.nodes:
            for name in node.input:
                if name:
                    out.setdefault(name, []).append(node)
        return out


def _decode_meta(props) -> dict:
    meta = {}
    for p in props:
        key = p.key[4:] if p.key.startswith("snn.") else p.key
        if key in ("format", "bundle", "fingerprint", "quantization"):
            meta[key] = p.value
            continue
        try:
            meta[key] = json.loads(p.value)
        except (ValueError, TypeError):
            meta[key] = p.value
    return meta


def _toposort(nodes, available: set[str]) -> list:
    ready = set(available)
    pending = list(nodes)
    ordered = []
    while pending:
        progressed = False
        rest = []
        for node in pending:
            if all((not n) or n in ready for n in node.input):
                ordered.append(node)
                ready.update(node.output)
                progressed = True
            else:
                rest.append(node)
        pending = rest
        if not progressed:
            missing = sorted({n for node in pending for n in node.input if n and n not in ready})
            raise SnnError(f"the ONNX graph has a cycle or undefined tensors: {missing[:5]}")
    return ordered


def read_qdq(path: str | Path) -> QdqModel:
    """Load an ONNX file; raise SnnError with a clear line when it is not a usable model."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:  # pragma: no cover
        raise SnnError("reading ONNX models needs the 'onnx' package: pip install onnx") from None
    path = Path(path)
    if not path.exists():
        raise SnnError(f"{path}: no such encoder file; export one with `snn export -o DIR`")
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # noqa: BLE001 - any parse failure is the user's file
        raise SnnError(f"{path}: not an ONNX model ({exc})") from None
    graph = model.graph
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    init_names = set(inits)
    inputs = []
    for vi in graph.input:
        if vi.name in init_names:
            continue
        tt = vi.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
        inputs.append((vi.name, tt.elem_type, dims))
    if len(inputs) != 1:
        raise SnnError(f"{path}: the encoder must have exactly one input, found {len(inputs)}")
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=17)
    opset = max(opset, 21) if any(n.domain == "com.microsoft" for n in graph.node) else opset
    nodes = _toposort(graph.node, init_names | {i[0] for i in inputs} | {""})
    for node in nodes:
        if node.domain == "com.microsoft" and node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            node.domain = ""  # onnxruntime's contrib Q/DQ (used for 16-bit) = the standard ops
        if node.domain not in ("", "ai.onnx"):
            raise SnnError(f"{path}: operator {node.domain}::{node.op_type} (node {node.name or '?'}) is not "
                           "supported by the MCU simulator (custom domains cannot run on the firmware)")
    props = {p.key: p.value for p in model.metadata_props}
    # an exported encoder: its metadata validated as the device does (a bare QDQ model has none)
    encoder = parse_metadata(props, str(path)) if "snn.format" in props else None
    return QdqModel(str(path), nodes, inits, inputs, [o.name for o in graph.output],
                    _decode_meta(model.metadata_props), opset, model, encoder)
