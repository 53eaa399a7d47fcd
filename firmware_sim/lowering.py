"""Lower a QDQ int8 ONNX encoder to integer kernels and run them (the MCU's arithmetic).

Every runtime tensor is an integer array with a scale fixed at compile time:

- ``q``   int8/uint8 codes with (scale, zero point): what a QuantizeLinear produces; stored in the
          arena as one byte per element.
- ``fx``  a fixed-point integer ``v`` with real value ``v * scale`` (scale a scalar, or per output
          channel for conv accumulators) and a static bound ``|v| < 2^bits``: a DequantizeLinear
          (``q - zp``, which costs nothing: kernels take the zero point as an input offset), an
          int32 conv accumulator, or a value of the nonlinear tail (GDN, power normalisation).
- ``idx`` integer indices (ArgMin), the symbols.

Kernels (`firmware_sim.kernels`) are integer-only. Where the exporter left an op in float between
a DequantizeLinear and a QuantizeLinear (GDN's Sqrt and Div, PRelu, the power normalisation, the
nearest-centre ArgMin), the value is computed in fixed point *directly at the resolution its
consumer needs*: 2^-16 of the next QuantizeLinear's step (so a rounding decision differs from
float only within 2^-16 of a tie), or 2^-22 of the largest centre for the nearest-centre search
(float32 has 2^-24). Division is an integer long division, square roots are digit-by-digit
integer square roots, and per-channel slopes and scale changes are fixed-point multipliers.

Conv+QuantizeLinear is exactly CMSIS-NN's ``arm_convolve_s8``: int8 x int8 products, int32 bias
and accumulator, per-channel (M0, shift) requantisation, output zero point, saturation.
onnxruntime fuses the same pattern into QLinearConv but requantises with a float32 multiplier and
round-half-even (MLAS); the two disagree only when an accumulator lands within float32 precision
of a rounding tie, which is why symbol agreement is measured (`agreement`), not assumed.

Each step carries a typed kernel (`firmware_sim.ir`): its constants, computed once here, with its
NumPy evaluation and its C side by side. Graph ops are lowered by the functions registered for
them in `LOWERINGS` (``@lowers``, an `snn.registry.Registry`); an op outside `SUPPORTED_OPS` is
refused by name.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from firmware_sim import ir
from firmware_sim import kernels as K
from firmware_sim.qdq_reader import QdqModel, read_qdq
from snn.errors import SnnError
from snn.registry import Registry

GUARD_BITS = 16          # fixed-point resolution below a consumer's quantization step
ARG_BITS = 22            # resolution of the nearest-centre search, relative to the largest centre
TRANSPARENT = {"Reshape", "Unsqueeze", "Squeeze", "Flatten", "Identity", "Transpose", "Slice", "Pad",
               "Relu", "Clip", "PRelu", "LeakyRelu", "Abs", "Neg", "MaxPool"}
FOLDED_OPS = ("Shape", "Constant")     # never lowered: their values are folded at compile time
_INT_TYPES = {2: (0, 255), 3: (-128, 127), 4: (0, 65535), 5: (-32768, 32767)}   # onnx U8, I8, U16, I16
_NP_TO_ONNX = {np.dtype(np.uint8): 2, np.dtype(np.int8): 3, np.dtype(np.uint16): 4, np.dtype(np.int16): 5}


def _bits(bound) -> int:
    return max(1, int(np.max(np.abs(bound))).bit_length()) if np.size(bound) else 1


@dataclass
class TInfo:
    """Compile-time facts about one runtime tensor."""

    kind: str                       # "q", "fx", "idx"
    shape: tuple = ()
    scale: object = 1.0             # float or ndarray broadcastable to the tensor
    zp: int = 0
    qrange: tuple = (-128, 127)
    bits: int = 8                   # |v| < 2^bits (fx)

    @property
    def itemsize(self) -> int:
        if self.kind == "q":
            return 1 if self.qrange[1] - self.qrange[0] <= 255 else 2
        if self.kind == "idx":
            return 1
        return 4 if self.bits <= 31 else 8

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape[1:])) * self.itemsize


@dataclass
class Step:
    """One lowered kernel: what the firmware would call, with its parameters and costs."""

    name: str
    op: str                         # ONNX op type it implements
    kernel: str                     # the kernel family used by the cost model and C export
    inputs: list[str]
    output: str
    spec: ir.Kernel                 # the kernel's parameters, its NumPy evaluation and its C
    out: TInfo
    macs: int = 0
    elements: int = 0
    alias: bool = False             # no kernel: a view of its input (zero point offset, reshape)
    params: dict = field(default_factory=dict)   # integer arrays for the C export
    fused_into: str | None = None   # a QuantizeLinear that consumes this step's output alone

    def run(self, values: dict[str, np.ndarray]) -> np.ndarray:
        """This step's output from the values computed so far (integer arithmetic only)."""
        return self.spec.run(values)

    @property
    def flash_bytes(self) -> int:
        return int(sum(np.asarray(v).nbytes for v in self.params.values() if isinstance(v, np.ndarray)))


class Program:
    """The lowered encoder: integer steps in execution order."""

    def __init__(self, model: QdqModel, steps: list[Step], infos: dict[str, TInfo], input_name: str,
                 input_layout: str, output_name: str):
        self.model = model
        self.steps = steps
        self.infos = infos
        self.input_name = input_name
        self.input_layout = input_layout   # "NHWC-u8" (raw pixels) or "NCHW-unit" (pixels/255)
        self.output_name = output_name
        self.metadata = model.metadata

    def run(self, images: np.ndarray, batch: int = 256) -> np.ndarray:
        """uint8 images (N, H, W, C) -> symbol indices (N, S) uint8, integer arithmetic only."""
        images = np.asarray(images)
        if images.dtype != np.uint8:
            raise SnnError("the MCU encoder takes uint8 pixels")
        outs = []
        for start in range(0, len(images), batch):
            outs.append(self._run(images[start:start + batch]))
        return np.concatenate(outs) if outs else np.zeros((0, 0), np.uint8)

    def _run(self, images: np.ndarray) -> np.ndarray:
        x = images.astype(np.int64)
        if self.input_layout == "NCHW-unit":
            x = x.transpose(0, 3, 1, 2)
        values = {self.input_name: x}
        for step in self.steps:
            values[step.output] = step.run(values)
        out = values[self.output_name]
        return out.reshape(len(images), -1).astype(np.uint8)

    @property
    def macs(self) -> int:
        return int(sum(s.macs for s in self.steps))

    def layers(self) -> list[Step]:
        """Steps that are real kernels (aliases dropped)."""
        return [s for s in self.steps if not s.alias]


def _mq(real) -> dict:
    """Fixed-point (M0, shift) arrays of a real multiplier, for the C export."""
    m0, sh = K.quantize_multipliers(np.ravel(np.asarray(real, dtype=np.float64)))
    return {"multiplier": m0.astype(np.int32), "shift": sh.astype(np.int32)}


LOWERINGS: Registry[Callable] = Registry("ONNX op")   # op type -> the _Lowering method that lowers it
_OP_NAMES: list[str] = []                               # the op types as ONNX spells them


def lowers(*ops: str):
    """Register the decorated `_Lowering` method as the lowering of `ops`."""
    def deco(fn):
        for op in ops:
            LOWERINGS.add(op, fn)
            _OP_NAMES.append(op)
        return fn
    return deco


def _attr(node, name, default=None):
    for a in node.attribute:
        if a.name == name:
            import onnx
            return onnx.helper.get_attribute_value(a)
    return default


class _Lowering:
    def __init__(self, model: QdqModel):
        self.m = model
        self.consts: dict[str, np.ndarray] = dict(model.initializers)
        self.qconsts: dict[str, tuple] = {}     # DQ of an integer initializer: (ints, scale, zp, axis)
        self.infos: dict[str, TInfo] = {}
        self.trace: dict[str, np.ndarray] = {}  # batch-1 values, for shapes
        self.steps: list[Step] = []
        self.producer = {o: n for n in model.nodes for o in n.output}
        self.consumers = model.consumers()
        self._folding: set[str] = set()

    # -- constants -------------------------------------------------------------------------
    def const(self, name: str):
        """The value of `name` if it does not depend on the image (folded on demand), else None."""
        if not name:
            return None
        if name in self.consts:
            return self.consts[name]
        if name in self.infos or name in self._folding:
            return None
        node = self.producer.get(name)
        if node is None:
            return None
        if node.op_type == "Shape":
            src = node.input[0]
            if src in self.trace:
                shape = np.array(self.trace[src].shape, dtype=np.int64)
                start, end = _attr(node, "start", 0), _attr(node, "end", None)
                self.consts[name] = shape[start:end]
                return self.consts[name]
            return None
        self._folding.add(name)
        try:
            vals = [self.const(i) if i else None for i in node.input]
        finally:
            self._folding.discard(name)
        if any(v is None for v, i in zip(vals, node.input) if i):
            return None
        self._fold(node, vals)
        return self.consts.get(name)

    def _fold(self, node, vals):
        import onnx
        from onnx.reference import ReferenceEvaluator

        if node.op_type == "DequantizeLinear" and vals[0].dtype.kind in "iu":
            axis = _attr(node, "axis", 1)
            zp = vals[2] if len(vals) > 2 and vals[2] is not None else np.zeros((), vals[0].dtype)
            self.qconsts[node.output[0]] = (vals[0], np.asarray(vals[1], np.float64), np.asarray(zp), axis)
        inputs = [onnx.helper.make_tensor_value_info(f"i{k}", onnx.helper.np_dtype_to_tensor_dtype(v.dtype),
                                                     v.shape) for k, v in enumerate(vals) if v is not None]
        names, feed, k = [], {}, 0
        for v in vals:
            if v is None:
                names.append("")
            else:
                names.append(f"i{k}")
                feed[f"i{k}"] = v
                k += 1
        outs = [onnx.helper.make_tensor_value_info(f"o{j}", onnx.TensorProto.UNDEFINED, None)
                for j in range(len(node.output))]
        clone = onnx.helper.make_node(node.op_type, names, [f"o{j}" for j in range(len(node.output))],
                                      domain=node.domain)
        clone.attribute.extend(node.attribute)
        graph = onnx.helper.make_graph([clone], "fold", inputs, outs)
        res = None
        for opset in (self.m.opset, 21):  # the reference evaluator knows (De)QuantizeLinear from 19 on
            model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)])
            try:
                res = ReferenceEvaluator(model).run(None, feed)
                break
            except Exception as exc:  # noqa: BLE001
                error = exc
        if res is None:
            raise SnnError(f"cannot fold constant {node.op_type} node {node.name!r}: {error}") from None
        for out, val in zip(node.output, res):
            self.consts[out] = np.asarray(val)

    # -- demanded resolution -----------------------------------------------------------------
    def demand(self, name: str, depth: int = 0):
        """The scale a float-domain tensor should be computed at, from its consumers."""
        if depth > 16:
            return None
        for node in self.consumers.get(name, []):
            op = node.op_type
            if op == "QuantizeLinear":
                s = self.const(node.input[1])
                if s is not None and np.size(s) == 1:
                    zp = self.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
                    wide = zp is not None and np.asarray(zp).dtype.itemsize > 1
                    guard = min(GUARD_BITS, 30 - (16 if wide else 8))  # keep the whole range in int32
                    return float(s) / (1 << guard)
            elif op in TRANSPARENT and node.input[0] == name:
                d = self.demand(node.output[0], depth + 1)
                if d is not None:
                    return d
            elif op in ("Add", "Sub"):
                other = node.input[1] if node.input[0] == name else node.input[0]
                c = self.const(other)
                d = self.demand(node.output[0], depth + 1)
                if d is not None:
                    return d
                if c is not None and self._ends_in_arg(node.output[0]):
                    return float(np.max(np.abs(c))) / (1 << ARG_BITS)
            elif op in ("ArgMin", "ArgMax"):
                return None
        return None

    def _ends_in_arg(self, name: str, depth: int = 0) -> bool:
        for node in self.consumers.get(name, []):
            if node.op_type in ("ArgMin", "ArgMax"):
                return True
            if node.op_type in TRANSPARENT and depth < 8 and self._ends_in_arg(node.output[0], depth + 1):
                return True
        return False

    # -- emitting ----------------------------------------------------------------------------
    def emit(self, node, kernel: str, spec: ir.Kernel, out: TInfo, macs: int = 0, alias=False, params=None):
        """Append the step computing `node`'s output with `spec` (traced at batch 1 for its shape)."""
        name = node.output[0]
        inputs = spec.inputs
        val = spec.run({i: self.trace[i] for i in inputs})
        out.shape = tuple(val.shape)
        self.trace[name] = val
        self.infos[name] = out
        elements = int(np.prod(val.shape[1:]))
        self.steps.append(Step(node.name or name, node.op_type, kernel, inputs, name, spec, out, macs,
                               elements, alias, params or {}))

    def emit_internal(self, name: str, kernel: str, spec: ir.Kernel, out: TInfo, params=None) -> None:
        """A step of the lowering's own (a rescale to one scale, a narrowing shift), named `name`."""
        from types import SimpleNamespace
        self.emit(SimpleNamespace(output=[name], name=name, op_type="Rescale"), kernel, spec, out, params=params)

    def lower(self, input_name: str, elem_type: int, dims) -> Program:
        # the image: raw uint8 pixels (NHWC) or a float tensor meaning pixels / 255
        if elem_type == 2:  # UINT8
            layout = "NHWC-u8"
            info = TInfo("fx", tuple([1] + [d or 1 for d in dims[1:]]), 1.0, bits=9)
        else:
            layout = "NCHW-unit"
            info = TInfo("fx", tuple([1] + [d or 1 for d in dims[1:]]), 1.0 / 255.0, bits=9)
        self.infos[input_name] = info
        self.trace[input_name] = np.zeros(info.shape, dtype=np.int64)
        for node in self.m.nodes:
            if all(o in self.consts for o in node.output):
                continue
            if node.op_type in ("Constant", "Shape") or all(self.const(i) is not None for i in node.input if i):
                if self.const(node.output[0]) is not None:
                    continue
            self.lower_node(node)
        out = self.m.outputs[0]
        if out not in self.infos:
            raise SnnError("the encoder's output does not depend on its input")
        self._mark_fusions()
        return Program(self.m, self.steps, self.infos, input_name, layout, out)

    def _mark_fusions(self):
        by_out = {s.output: s for s in self.steps}
        for s in self.steps:
            if s.op == "QuantizeLinear":
                src = by_out.get(s.inputs[0])
                if src is not None and not src.alias and len(self.consumers.get(src.output, [])) == 1:
                    src.fused_into = s.output

    def fx(self, name: str) -> TInfo:
        info = self.infos.get(name)
        if info is None:
            raise SnnError(f"tensor {name!r} is neither a constant nor computed before use")
        return info

    # -- ops ---------------------------------------------------------------------------------
    def lower_node(self, node):
        op = node.op_type
        handler = LOWERINGS.get(op) if op in LOWERINGS else None
        if handler is None:
            raise SnnError(f"unsupported operator '{op}' (node {node.name or node.output[0]!r}): the MCU "
                           f"simulator lowers only {', '.join(SUPPORTED_OPS)}")
        handler(self, node)

    @lowers("QuantizeLinear")
    def op_QuantizeLinear(self, node):
        x = node.input[0]
        xi = self.fx(x)
        s_out = self.const(node.input[1])
        zp_arr = self.const(node.input[2]) if len(node.input) > 2 and node.input[2] else np.zeros((), np.uint8)
        if s_out is None or np.size(s_out) != 1:
            raise SnnError(f"QuantizeLinear {node.name!r}: only per-tensor activation scales are supported")
        qmin, qmax = _INT_TYPES.get(_NP_TO_ONNX.get(zp_arr.dtype, 0), (None, None))
        if qmin is None:
            raise SnnError(f"QuantizeLinear {node.name!r}: output type {zp_arr.dtype} is not int8/uint8/int16/uint16")
        zp = int(zp_arr)
        if xi.kind != "fx":
            raise SnnError(f"QuantizeLinear {node.name!r}: input is not a real-valued tensor")
        real = np.asarray(xi.scale, dtype=np.float64) / float(s_out)
        spec = ir.requant.Requantize(x, real, xi.bits, zp, qmin, qmax)
        self.emit(node, "requantize", spec, TInfo("q", scale=float(s_out), zp=zp, qrange=(qmin, qmax)),
                  params=_mq(real))

    @lowers("DequantizeLinear")
    def op_DequantizeLinear(self, node):
        x = node.input[0]
        xi = self.fx(x)
        if xi.kind != "q":
            raise SnnError(f"DequantizeLinear {node.name!r}: input is not quantized")
        s = self.const(node.input[1])
        zp = self.const(node.input[2]) if len(node.input) > 2 and node.input[2] else np.zeros(())
        if np.size(s) != 1:
            # a Q/DQ pair with different parameters: requantise explicitly
            pass
        zp_i = int(np.ravel(zp)[0])
        s = np.ravel(s)[0]
        bits = max(abs(xi.qrange[0] - zp_i), abs(xi.qrange[1] - zp_i)).bit_length()
        self.emit(node, "offset", ir.requant.Offset(x, zp_i), TInfo("fx", scale=float(s), bits=bits), alias=True)

    def _weights(self, name: str, node):
        """Integer weights (int8, per output channel scale) of a conv."""
        if name in self.qconsts or self.const(name) is not None and name in self.qconsts:
            ints, scale, zp, axis = self.qconsts[name]
            if np.any(zp != 0):  # an asymmetric (activation-style) weight: w - zp fits int16
                zp_b = np.asarray(zp, np.int64).reshape((-1,) + (1,) * (ints.ndim - 1)) if np.size(zp) > 1 \
                    else np.int64(np.ravel(zp)[0])
                ints = (ints.astype(np.int64) - zp_b).astype(np.int16)
            scale = np.broadcast_to(np.ravel(scale), (ints.shape[0],)) if np.size(scale) > 1 or axis == 0 \
                else np.full(ints.shape[0], float(scale))
            small = ints.min(initial=0) >= -128 and ints.max(initial=0) <= 127
            return ints.astype(np.int8 if small else np.int16), scale.astype(np.float64)
        w = self.const(name)
        if w is None:
            raise SnnError(f"Conv {node.name!r}: weights must be constant")
        # float weights: quantize them per output channel, symmetric int8 (as the converter would)
        amax = np.abs(w.reshape(w.shape[0], -1)).max(axis=1)
        scale = np.where(amax > 0, amax / 127.0, 1.0)
        ints = np.clip(np.round(w / scale.reshape(-1, 1, 1, 1)), -127, 127).astype(np.int8)
        return ints, scale.astype(np.float64)

    @lowers("Conv")
    def op_Conv(self, node):
        x = node.input[0]
        xi = self.fx(x)
        if xi.kind != "fx" or np.size(xi.scale) != 1:
            raise SnnError(f"Conv {node.name!r}: input must be a per-tensor quantized activation")
        w, sw = self._weights(node.input[1], node)
        acc_scale = float(xi.scale) * sw
        bias = None
        if len(node.input) > 2 and node.input[2]:
            bname = node.input[2]
            bval = self.const(bname)
            if bval is None:
                raise SnnError(f"Conv {node.name!r}: bias must be constant")
            if bname in self.qconsts and np.allclose(np.ravel(self.qconsts[bname][1]) *
                                                     np.ones_like(acc_scale), acc_scale, rtol=1e-6):
                bias = self.qconsts[bname][0].astype(np.int64)
            else:
                bias = np.round(np.asarray(bval, np.float64) / acc_scale).astype(np.int64)
        kh, kw = w.shape[2], w.shape[3]
        pads = list(_attr(node, "pads", [0, 0, 0, 0]))
        auto = _attr(node, "auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        strides = tuple(_attr(node, "strides", [1, 1]))
        dil = tuple(_attr(node, "dilations", [1, 1]))
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            h, wd = xi.shape[2], xi.shape[3]
            ph = max(0, (-(-h // strides[0]) - 1) * strides[0] + dil[0] * (kh - 1) + 1 - h)
            pw = max(0, (-(-wd // strides[1]) - 1) * strides[1] + dil[1] * (kw - 1) + 1 - wd)
            pads = [ph // 2, pw // 2, ph - ph // 2, pw - pw // 2] if auto == "SAME_UPPER" else \
                [ph - ph // 2, pw - pw // 2, ph // 2, pw // 2]
        pads4 = (pads[0], pads[1], pads[2], pads[3])
        group = int(_attr(node, "group", 1))
        bound = (np.abs(w.astype(np.int64)).reshape(w.shape[0], -1).sum(1) * ((1 << xi.bits) - 1))
        if bias is not None:
            bound = bound + np.abs(bias)
        cout = w.shape[0]
        depthwise = group > 1 and group == xi.shape[1]
        kernel = "depthwise_conv" if depthwise else ("conv_1x1" if kh == kw == 1 else "conv")
        info = TInfo("fx", scale=acc_scale.reshape(1, cout, 1, 1), bits=_bits(bound))
        params = {"weights": w, "bias": (bias if bias is not None else np.zeros(cout, np.int64)).astype(np.int32)}
        spec = ir.conv.Conv(x, w, bias, strides, pads4, dil, group, info.bits)
        self.emit(node, kernel, spec, info, params=params)
        step = self.steps[-1]
        step.macs = int(np.prod(step.out.shape[1:])) * (w.shape[1] * kh * kw)
        step.params["input_offset"] = np.array([0], np.int32)
        step.params["attrs"] = {"strides": list(strides), "pads": list(pads4), "dilations": list(dil),
                                "group": group}

    def scalar_input(self, name: str) -> tuple[str, TInfo]:
        """`name` itself, or a rescaled copy with one scale when it has per-channel scales (a conv
        accumulator handed to the float tail): v_c * s_c / t, t chosen so nothing overflows int32."""
        info = self.fx(name)
        if info.kind != "fx" or np.size(info.scale) == 1:
            return name, info
        new = name + "__common"
        if new in self.infos:
            return new, self.infos[new]
        sc = np.asarray(info.scale, np.float64)
        t = max(float(sc.min()), float(sc.max()) * 2.0 ** (info.bits + 1 - 31))
        r, bits = sc / t, info.bits
        out_bits = min(31, bits + int(np.ceil(np.log2(max(1.0, float(r.max()))))) + 1)
        self.emit_internal(new, "requantize", ir.requant.Rescale(name, r, bits), TInfo("fx", scale=t, bits=out_bits),
                           params=_mq(r))
        return new, self.infos[new]

    def _scalar_scale(self, info: TInfo, node) -> float:
        if np.size(info.scale) != 1:
            raise SnnError(f"{node.op_type} {node.name!r}: per-channel scaled input must be requantised first")
        return float(info.scale)

    def _binary(self, node, sign: int):
        a, b = node.input[0], node.input[1]
        ca, cb = self.const(a), self.const(b)
        target = self.demand(node.output[0])
        if ca is not None and cb is None:  # c + x  or  c - x
            x, c, xsign, csign = b, ca, sign, 1
        elif cb is not None:
            x, c, xsign, csign = a, cb, 1, sign
        else:
            ai, bi = self.fx(a), self.fx(b)
            sa, sb = np.asarray(ai.scale, np.float64), np.asarray(bi.scale, np.float64)
            if target is None:
                target = float(np.min(np.minimum(sa, sb))) / (1 << 8)
                if np.size(sa) == 1 and np.size(sb) == 1 and float(sa) == float(sb):
                    target = float(sa)
            ra, rb = sa / target, sb / target
            pa, pb = _mq(ra), _mq(rb)
            spec = ir.arith.Add(a, b, ra, rb, ai.bits, bi.bits, sign)
            self.emit(node, "add", spec, TInfo("fx", scale=target, bits=33),
                      params={"a_multiplier": pa["multiplier"], "a_shift": pa["shift"],
                              "b_multiplier": pb["multiplier"], "b_shift": pb["shift"]})
            return
        xi = self.fx(x)
        sx = np.asarray(xi.scale, np.float64)
        if target is None and self._ends_in_arg(node.output[0]):
            target = float(np.max(np.abs(c))) / (1 << ARG_BITS)
        if target is None:
            target = float(np.min(sx)) / (1 << GUARD_BITS) if xi.bits < 14 else \
                float(np.min(sx)) * 2.0 ** max(0, xi.bits - 30)
        cq = np.clip(np.round(np.asarray(c, np.float64) / target), -(1 << 31) + 1, (1 << 31) - 1).astype(np.int64)
        r = sx / target
        self.emit(node, "add_const", ir.arith.AddConst(x, r, xi.bits, cq, xsign, csign), TInfo("fx", scale=target, bits=33),
                  params={"constant": cq.astype(np.int32), **_mq(r)})

    @lowers("Add")
    def op_Add(self, node):
        self._binary(node, 1)

    @lowers("Sub")
    def op_Sub(self, node):
        self._binary(node, -1)

    @lowers("Mul")
    def op_Mul(self, node):
        a, b = node.input[0], node.input[1]
        ca, cb = self.const(a), self.const(b)
        target = self.demand(node.output[0])
        if ca is not None or cb is not None:
            x, c = (b, ca) if ca is not None else (a, cb)
            xi = self.fx(x)
            c = np.asarray(c, np.float64)
            if c.size == 1:
                cv = float(c.reshape(()))
                sign = -1 if cv < 0 else 1
                natural = np.asarray(xi.scale, np.float64) * abs(cv)
                if cv == 0:
                    self.emit(node, "mul_const", ir.arith.Zero(x), TInfo("fx", scale=1.0, bits=1))
                    return
                if target is None:  # a scalar gain only changes the scale: no kernel
                    self.emit(node, "scale", ir.arith.Sign(x, sign), TInfo("fx", scale=natural, bits=xi.bits),
                              alias=sign > 0)
                    return
                r = natural / target
                self.emit(node, "mul_const", ir.arith.ScaleBy(x, r, xi.bits, sign), TInfo("fx", scale=target, bits=31),
                          params=_mq(r))
                return
            amax = float(np.abs(c).max()) or 1.0
            sc = amax / (1 << 15)
            cq = np.round(c / sc).astype(np.int64)
            natural = float(self._scalar_scale(xi, node)) * sc
            info = TInfo("fx", scale=natural, bits=xi.bits + 16)
            self.emit(node, "mul_const", ir.arith.MulConst(x, cq), info, params={"constant": cq.astype(np.int32)})
            return
        a, ai = self.scalar_input(a)
        b, bi = self.scalar_input(b)
        sa, sb = self._scalar_scale(ai, node), self._scalar_scale(bi, node)
        bits = ai.bits + bi.bits
        if target is None:
            down = max(0, bits - 40)  # keep products narrow enough for the sums that follow
            self.emit(node, "mul", ir.arith.Mul(a, b, down), TInfo("fx", scale=sa * sb * 2.0 ** down, bits=bits - down))
        else:
            r = sa * sb / target
            self.emit(node, "mul", ir.arith.MulRescale(a, b, r, bits), TInfo("fx", scale=target, bits=31), params=_mq(r))

    @lowers("Div")
    def op_Div(self, node):
        a, b = node.input[0], node.input[1]
        cb = self.const(b)
        if cb is not None:
            import onnx
            inv = onnx.helper.make_node("Mul", [a, b + "__reciprocal"], list(node.output), name=node.name)
            self.consts[b + "__reciprocal"] = (1.0 / np.asarray(cb, np.float64))
            self.op_Mul(inv)
            self.steps[-1].op = "Div"
            return
        a, ai = self.scalar_input(a)
        b, bi = self.scalar_input(b)
        sa, sb = self._scalar_scale(ai, node), self._scalar_scale(bi, node)
        target = self.demand(node.output[0])
        if target is None:
            target = sa / sb / (1 << GUARD_BITS)
        # r = round(va * K / vb) with K = sa / (sb * target) = k0 * 2^e, k0 31-bit
        spec = ir.division.Div.build(a, b, sa / (sb * target), ai.bits, bi.bits)
        self.emit(node, "div", spec, TInfo("fx", scale=target, bits=31),
                  params={"multiplier": np.array([spec.k0], np.int32), "exponent": np.array([spec.e], np.int32)})

    @lowers("Sqrt")
    def op_Sqrt(self, node):
        a, ai = self.scalar_input(node.input[0])
        sa = self._scalar_scale(ai, node)
        target = self.demand(node.output[0])
        ba = ai.bits
        if target is None:
            k = max(0, (62 - ba) // 2)
            self.emit(node, "sqrt", ir.division.SqrtFree(a, 2 * k),
                      TInfo("fx", scale=float(np.sqrt(sa)) / (1 << k), bits=(ba + 2 * k) // 2 + 1),
                      params={"pre_shift": np.array([2 * k], np.int32)})
            return
        spec = ir.division.Sqrt.build(a, sa / target ** 2, ba)
        self.emit(node, "sqrt", spec, TInfo("fx", scale=target, bits=31),
                  params={"multiplier": np.array([spec.k0], np.int32), "exponent": np.array([spec.e], np.int32)})

    def _reduce(self, node, mean: bool):
        a, ai = self.scalar_input(node.input[0])
        sa = self._scalar_scale(ai, node)
        axes = _attr(node, "axes", None)
        if axes is None and len(node.input) > 1 and node.input[1]:
            axes = [int(v) for v in np.ravel(self.const(node.input[1]))]
        keep = bool(_attr(node, "keepdims", 1))
        rank = len(ai.shape)
        axes = tuple(sorted(int(x) % rank for x in (axes if axes is not None else range(rank))))
        if 0 in axes:
            raise SnnError(f"{node.op_type} {node.name!r}: reducing over the batch axis is not supported")
        count = int(np.prod([ai.shape[x] for x in axes]))
        pre = max(0, ai.bits + count.bit_length() - 62)
        if pre:
            src = a
            a = src + "__narrow"
            self.emit_internal(a, "requantize", ir.requant.Narrow(src, pre),
                               TInfo("fx", scale=float(ai.scale) * 2.0 ** pre, bits=ai.bits - pre))
            ai = self.infos[a]
        natural = sa / count if mean else sa
        bits = ai.bits + count.bit_length()
        target = self.demand(node.output[0])
        if target is None:
            self.emit(node, "reduce", ir.reduce.Reduce(a, axes, keep), TInfo("fx", scale=natural, bits=bits))
        else:
            r = natural / target
            self.emit(node, "reduce", ir.reduce.Reduce(a, axes, keep, r, bits), TInfo("fx", scale=target, bits=31),
                      params=_mq(r))

    @lowers("ReduceMean")
    def op_ReduceMean(self, node):
        self._reduce(node, True)

    @lowers("ReduceSum")
    def op_ReduceSum(self, node):
        self._reduce(node, False)

    def _activation(self, node, neg_slope):
        """Relu / PRelu / LeakyRelu at the demanded scale: v>=0 keeps, v<0 times a per-channel slope."""
        a = node.input[0]
        ai = self.fx(a)
        sa = np.asarray(ai.scale, np.float64)
        target = self.demand(node.output[0])
        if neg_slope is None:  # Relu: exact on any scale
            self.emit(node, "relu", ir.activation.Relu(a), TInfo("fx", scale=ai.scale, bits=ai.bits))
            return
        if target is None:
            target = float(np.min(sa)) / (1 << 8)
        slope = np.asarray(neg_slope, np.float64)
        if slope.ndim >= 1 and slope.size > 1:
            slope = slope.reshape((1,) + slope.shape[-3:] if slope.ndim >= 3 else (1, -1, 1, 1))
        pos_r = sa / target
        neg_r = np.abs(sa * slope) / target
        neg_sign = np.where(slope < 0, -1, 1)
        m0, sh = K.quantize_multipliers(np.ravel(neg_r) * np.ones(1))
        pp = _mq(np.ravel(pos_r))
        self.emit(node, "prelu", ir.activation.PRelu(a, pos_r, neg_r, neg_sign, ai.bits), TInfo("fx", scale=target, bits=31),
                  params={"pos_multiplier": pp["multiplier"], "pos_shift": pp["shift"],
                          "neg_multiplier": m0.astype(np.int32), "neg_shift": sh.astype(np.int32),
                          "neg_sign": np.ravel(neg_sign).astype(np.int8)})

    @lowers("Relu")
    def op_Relu(self, node):
        self._activation(node, None)

    @lowers("PRelu")
    def op_PRelu(self, node):
        slope = self.const(node.input[1])
        if slope is None:
            raise SnnError(f"PRelu {node.name!r}: the slope must be constant")
        self._activation(node, slope)

    @lowers("LeakyRelu")
    def op_LeakyRelu(self, node):
        self._activation(node, float(_attr(node, "alpha", 0.01)))

    @lowers("Clip")
    def op_Clip(self, node):
        a = node.input[0]
        ai = self.fx(a)
        s = self._scalar_scale(ai, node)
        lo = self.const(node.input[1]) if len(node.input) > 1 and node.input[1] else None
        hi = self.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        lo_q = None if lo is None else int(np.ceil(float(lo) / s - 1e-9))
        hi_q = None if hi is None else int(np.floor(float(hi) / s + 1e-9))
        self.emit(node, "clip", ir.activation.Clip(a, lo_q, hi_q), TInfo("fx", scale=s, bits=ai.bits))

    @lowers("Abs")
    def op_Abs(self, node):
        a = node.input[0]
        ai = self.fx(a)
        self.emit(node, "abs", ir.activation.Abs(a), TInfo("fx", scale=ai.scale, bits=ai.bits))

    @lowers("Neg")
    def op_Neg(self, node):
        a = node.input[0]
        ai = self.fx(a)
        self.emit(node, "neg", ir.activation.Neg(a), TInfo("fx", scale=ai.scale, bits=ai.bits))

    @lowers("ArgMin", "ArgMax")
    def op_Arg(self, node):
        a = node.input[0]
        ai = self.fx(a)
        axis = int(_attr(node, "axis", 0))
        keep = bool(_attr(node, "keepdims", 1))
        if _attr(node, "select_last_index", 0):
            raise SnnError(f"{node.op_type} {node.name!r}: select_last_index=1 is not supported")
        if axis % len(ai.shape) == 0:
            raise SnnError(f"{node.op_type} {node.name!r}: arg over the batch axis is not supported")
        if np.size(ai.scale) != 1:
            raise SnnError(f"{node.op_type} {node.name!r}: input must have one scale")
        largest = node.op_type == "ArgMax"
        self.emit(node, "argmax" if largest else "argmin", ir.reduce.Arg(a, axis, keep, largest), TInfo("idx", bits=8),
                  params={"levels": np.array([ai.shape[axis]], np.int32)})

    def _pool_attrs(self, node):
        k = tuple(_attr(node, "kernel_shape"))
        s = tuple(_attr(node, "strides", [1] * len(k)))
        p = tuple(_attr(node, "pads", [0] * 2 * len(k)))
        if _attr(node, "ceil_mode", 0) or any(d != 1 for d in _attr(node, "dilations", [1, 1])):
            raise SnnError(f"{node.op_type} {node.name!r}: ceil_mode/dilations are not supported")
        return k, s, p

    @lowers("MaxPool")
    def op_MaxPool(self, node):
        a = node.input[0]
        ai = self.fx(a)
        k, s, p = self._pool_attrs(node)
        self.emit(node, "maxpool", ir.reduce.Pool(a, k, s, p, True), TInfo("fx", scale=ai.scale, bits=ai.bits))

    @lowers("AveragePool")
    def op_AveragePool(self, node):
        a = node.input[0]
        ai = self.fx(a)
        k, s, p = self._pool_attrs(node)
        if any(p) and not _attr(node, "count_include_pad", 0):
            raise SnnError(f"AveragePool {node.name!r}: padding without count_include_pad is not supported")
        count = k[0] * k[1]
        sa = self._scalar_scale(ai, node)
        self.emit(node, "avgpool", ir.reduce.Pool(a, k, s, p, False),
                  TInfo("fx", scale=sa / count, bits=ai.bits + count.bit_length()))

    @lowers("GlobalAveragePool")
    def op_GlobalAveragePool(self, node):
        a = node.input[0]
        ai = self.fx(a)
        count = int(np.prod(ai.shape[2:]))
        self.emit(node, "avgpool", ir.reduce.Reduce(a, (2, 3), True),
                  TInfo("fx", scale=self._scalar_scale(ai, node) / count, bits=ai.bits + count.bit_length()))

    @lowers("Cast")
    def op_Cast(self, node):
        a = node.input[0]
        ai = self.fx(a)
        to = int(_attr(node, "to"))
        if to in (1, 10, 11):  # to float: the integer value keeps its scale
            if ai.kind == "idx":
                info = TInfo("fx", scale=1.0, bits=9)
            else:
                info = TInfo(ai.kind, scale=ai.scale, zp=ai.zp, qrange=ai.qrange, bits=ai.bits)
            self.emit(node, "cast", ir.layout.Identity(a), info, alias=True)
            return
        if ai.kind != "idx":
            raise SnnError(f"Cast {node.name!r}: casting a real value to an integer type is not supported")
        self.emit(node, "cast", ir.layout.Identity(a), TInfo("idx", bits=8), alias=True)

    # layout ops: they move integers around and keep scales (batch axis 0 is kept)
    def _layout(self, node, spec: ir.Kernel, alias=True):
        """Emit a layout `spec` reading node.input[0]; a per-channel scaled input is brought to one
        scale first (the spec then reads that copy)."""
        a = node.input[0]
        ai = self.fx(a)
        if np.size(ai.scale) != 1:
            a2, ai = self.scalar_input(a)
            spec = replace(spec, x=a2)
        if np.size(ai.scale) != 1 and node.op_type not in ("Identity",):
            raise SnnError(f"{node.op_type} {node.name!r}: per-channel scaled input must be requantised first")
        info = TInfo(ai.kind, scale=ai.scale, zp=ai.zp, qrange=ai.qrange, bits=ai.bits)
        self.emit(node, "copy" if not alias else "view", spec, info, alias=alias)

    @lowers("Identity")
    def op_Identity(self, node):
        self._layout(node, ir.layout.Identity(node.input[0]))

    @lowers("Reshape")
    def op_Reshape(self, node):
        shape = [int(x) for x in self.const(node.input[1])]
        a = node.input[0]
        in_shape = self.trace[a].shape
        allowzero = _attr(node, "allowzero", 0)
        tail = [in_shape[i] if (d == 0 and not allowzero) else d for i, d in enumerate(shape)][1:]
        if shape[0] not in (1, -1, 0):
            raise SnnError(f"Reshape {node.name!r}: reshapes across the batch axis are not supported")
        self._layout(node, ir.layout.Reshape(a, tuple(tail)))

    @lowers("Flatten")
    def op_Flatten(self, node):
        axis = int(_attr(node, "axis", 1))
        if axis != 1:
            raise SnnError(f"Flatten {node.name!r}: only axis=1 is supported")
        self._layout(node, ir.layout.Reshape(node.input[0], (-1,)))

    @lowers("Unsqueeze")
    def op_Unsqueeze(self, node):
        axes = _attr(node, "axes", None)
        if axes is None:
            axes = [int(x) for x in np.ravel(self.const(node.input[1]))]
        rank = len(self.trace[node.input[0]].shape) + len(axes)
        axes = sorted(int(x) % rank for x in axes)
        if 0 in axes:
            raise SnnError(f"Unsqueeze {node.name!r}: a new batch axis is not supported")
        self._layout(node, ir.layout.ExpandDims(node.input[0], tuple(axes)))

    @lowers("Squeeze")
    def op_Squeeze(self, node):
        axes = _attr(node, "axes", None)
        if axes is None and len(node.input) > 1 and node.input[1]:
            axes = [int(x) for x in np.ravel(self.const(node.input[1]))]
        shape = self.trace[node.input[0]].shape
        if axes is None:
            axes = [i for i, d in enumerate(shape) if d == 1 and i > 0]
        axes = tuple(sorted(int(x) % len(shape) for x in axes))
        if 0 in axes:
            raise SnnError(f"Squeeze {node.name!r}: squeezing the batch axis is not supported")
        self._layout(node, ir.layout.Squeeze(node.input[0], axes))

    @lowers("Transpose")
    def op_Transpose(self, node):
        perm = tuple(_attr(node, "perm"))
        if perm[0] != 0:
            raise SnnError(f"Transpose {node.name!r}: moving the batch axis is not supported")
        shape = self.trace[node.input[0]].shape
        moved = [shape[p] for p in perm if shape[p] != 1]
        kept = [d for d in shape if d != 1]
        self._layout(node, ir.layout.Transpose(node.input[0], perm),
                     alias=moved == kept)  # a transpose that only moves size-1 axes is a view

    @lowers("Slice")
    def op_Slice(self, node):
        starts = np.ravel(self.const(node.input[1])).astype(np.int64)
        ends = np.ravel(self.const(node.input[2])).astype(np.int64)
        axes = np.ravel(self.const(node.input[3])).astype(np.int64) if len(node.input) > 3 and node.input[3] \
            else np.arange(len(starts))
        steps = np.ravel(self.const(node.input[4])).astype(np.int64) if len(node.input) > 4 and node.input[4] \
            else np.ones(len(starts), np.int64)
        rank = len(self.trace[node.input[0]].shape)
        sl = [slice(None)] * rank
        for s, e, ax, st in zip(starts, ends, axes, steps):
            ax = int(ax) % rank
            if ax == 0:
                raise SnnError(f"Slice {node.name!r}: slicing the batch axis is not supported")
            sl[ax] = slice(int(s), int(min(e, 1 << 62)) if e > -(1 << 62) else None, int(st))
        self._layout(node, ir.layout.Slice(node.input[0], tuple(sl)), alias=False)

    @lowers("Concat")
    def op_Concat(self, node):
        axis = int(_attr(node, "axis"))
        ins = [i for i in node.input if i]
        infos = [self.fx(i) for i in ins]
        if len({(str(i.kind), float(np.max(i.scale)), i.zp) for i in infos}) != 1:
            raise SnnError(f"Concat {node.name!r}: inputs with different quantization are not supported")
        if axis % len(infos[0].shape) == 0:
            raise SnnError(f"Concat {node.name!r}: concatenating along the batch axis is not supported")
        i0 = infos[0]
        self.emit(node, "copy", ir.layout.Concat(tuple(ins), axis),
                  TInfo(i0.kind, scale=i0.scale, zp=i0.zp, qrange=i0.qrange, bits=max(i.bits for i in infos)))

    @lowers("Pad")
    def op_Pad(self, node):
        pads = [int(x) for x in np.ravel(self.const(node.input[1]))]
        mode = _attr(node, "mode", b"constant")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        cval = self.const(node.input[2]) if len(node.input) > 2 and node.input[2] else 0
        if mode != "constant" or float(np.ravel(cval)[0] if np.size(cval) else 0) != 0.0:
            raise SnnError(f"Pad {node.name!r}: only zero constant padding is supported")
        rank = len(pads) // 2
        if pads[0] or pads[rank]:
            raise SnnError(f"Pad {node.name!r}: padding the batch axis is not supported")
        width = tuple((pads[i], pads[i + rank]) for i in range(rank))
        self._layout(node, ir.layout.Pad(node.input[0], width), alias=False)


SUPPORTED_OPS = sorted(set(_OP_NAMES) | set(FOLDED_OPS))


def lower(model: QdqModel | str) -> Program:
    """Compile an int8 QDQ ONNX encoder into an integer `Program` (refuses unsupported ops by name)."""
    if not isinstance(model, QdqModel):
        model = read_qdq(model)
    name, elem, dims = model.inputs[0]
    if elem not in (1, 2):
        raise SnnError(f"{model.path}: the encoder input must be uint8 pixels or float32, not ONNX type {elem}")
    return _Lowering(model).lower(name, elem, dims)


def onnxruntime_symbols(path: str, images: np.ndarray, batch: int = 512) -> np.ndarray:
    """The reference: onnxruntime's int8 session on the same images (uint8 NHWC)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    outs = []
    for start in range(0, len(images), batch):
        x = images[start:start + batch]
        if inp.type == "tensor(float)":
            x = x.transpose(0, 3, 1, 2).astype(np.float32) / 255.0
        if inp.shape and isinstance(inp.shape[0], int) and inp.shape[0] == 1:
            outs.extend(sess.run(None, {inp.name: x[i:i + 1]})[0].reshape(1, -1) for i in range(len(x)))
        else:
            outs.append(sess.run(None, {inp.name: x})[0].reshape(len(x), -1))
    return np.concatenate(outs).astype(np.uint8)


def agreement(path: str, images: np.ndarray, batch: int = 256) -> dict:
    """Symbol agreement of the integer path with onnxruntime's int8 session."""
    program = lower(path)
    ours = program.run(images, batch=batch)
    ref = onnxruntime_symbols(path, images)
    same = ours == ref
    return {"images": int(len(images)), "symbols": int(same.size), "agree": int(same.sum()),
            "agreement": float(same.mean()) if same.size else 1.0,
            "images_bit_exact": float(same.all(axis=1).mean()) if same.size else 1.0,
            "max_index_distance": int(np.abs(ours.astype(int) - ref.astype(int)).max()) if same.size else 0}
