"""Generate C for the lowered int8 encoder: the firmware's arithmetic, equal to the simulator.

`generate(program)` turns a `lowering.Program` into two C99 files:

- ``snn_model.h``: input/output sizes, levels, fingerprint, the arena size and the one entry
  point ``void snn_model_run(void)`` (reads the image from ``snn_model_input()``, leaves the
  symbol indices at ``snn_model_symbols()``);
- ``snn_model.c``: the parameters as ``static const`` arrays (weights int8 OIHW, biases int32,
  per-channel requantisation ``M0``/shift pairs) and one loop per *stored* tensor, in the
  program's order, over a static tensor arena whose buffers the planner placed
  (`planner.plan_buffers`, TFLite Micro's greedy-by-size).

Why this shape. The simulator (`lowering.py`) defines every step as an integer function of
int64 arrays; the C must produce the same integers, not merely close ones. So each step becomes
a ``static inline int64_t T_at(int32_t i)`` that returns element ``i`` of tensor ``T``, written
with the helpers of ``firmware/snn_fixed.h`` (the C twins of `kernels.py`) and the very
constants the step's closure holds (read from its default arguments, so nothing is re-derived).
A tensor the planner fuses into its consumer (`planner.fusions`: a conv into its requantisation,
elementwise chains such as GDN's sqrt/div or the nearest-centre distance) is never stored: its
``T_at`` is inlined into the consumer's loop. Stored tensors are written by ``T_run()`` into their
arena buffer at their planned offset and read back by their ``T_at``. Views (DequantizeLinear's
zero-point offset, Reshape, Unsqueeze, Cast) keep the flat index and cost nothing.

Steps this generator cannot express exactly are refused by name (`SnnError`), never approximated.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from snn.errors import SnnError
from firmware_sim import kernels as K
from firmware_sim.c_export import c_identifier
from firmware_sim.lowering import Program, Step
from firmware_sim.planner import Buffer, MemoryPlan, fusions, plan_buffers

FIRMWARE_DIR = Path(__file__).with_name("firmware")
FRAME_BYTES = 256            # default frame buffer in the arena (the build asks for 1 + its MTU)
_Q_TYPES = {(0, 255): "uint8_t", (-128, 127): "int8_t", (0, 65535): "uint16_t", (-32768, 32767): "int16_t"}
_CTYPE_BYTES = {"uint8_t": 1, "int8_t": 1, "uint16_t": 2, "int16_t": 2, "int32_t": 4, "int64_t": 8}
_NP_C = {np.dtype(np.int8): "int8_t", np.dtype(np.int16): "int16_t", np.dtype(np.int32): "int32_t",
         np.dtype(np.uint8): "uint8_t", np.dtype(np.int64): "int64_t"}


@dataclass
class CModel:
    """The generated sources and the facts the build and the host engine need."""

    header: str
    source: str
    arena_bytes: int
    input_bytes: int
    n_symbols: int
    levels: int
    plan: MemoryPlan
    layers: list[dict] = field(default_factory=list)   # one per stored tensor: name, op, macs, kernel

    def write(self, out_dir: str | Path) -> list[Path]:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = [out / "snn_model.h", out / "snn_model.c"]
        paths[0].write_text(self.header)
        paths[1].write_text(self.source)
        return paths


def _closure(step: Step) -> dict:
    """The constants a step's function closes over (its keyword defaults), by name."""
    try:
        params = inspect.signature(step.fn).parameters
    except (TypeError, ValueError):
        return {}
    return {k: p.default for k, p in params.items() if p.default is not inspect.Parameter.empty}


def _shape(info_shape) -> tuple[int, ...]:
    """Non-batch dimensions of a traced (batch 1) shape."""
    return tuple(int(d) for d in info_shape[1:])


def _strides(shape: tuple[int, ...]) -> list[int]:
    st, acc = [], 1
    for d in reversed(shape):
        st.append(acc)
        acc *= d
    return list(reversed(st))


def _bidx(out_full: tuple, in_full: tuple, var: str = "i") -> str:
    """C expression of the flat index into a broadcast operand, given the output's flat index.

    Shapes include the batch axis (size 1) and align right, as in NumPy broadcasting.
    """
    out_full = tuple(int(d) for d in out_full)
    in_full = tuple(int(d) for d in in_full)
    if len(in_full) > len(out_full):
        if any(d != 1 for d in in_full[:len(in_full) - len(out_full)]):
            raise SnnError(f"cannot broadcast {in_full} to {out_full}")
        in_full = in_full[len(in_full) - len(out_full):]
    in_full = (1,) * (len(out_full) - len(in_full)) + in_full
    if int(np.prod(in_full)) == 1:
        return "0"
    if in_full == out_full:
        return var
    ost, ist = _strides(out_full), _strides(in_full)
    terms = []
    for d, (o, n) in enumerate(zip(out_full, in_full)):
        if n == 1:
            continue
        if n != o:
            raise SnnError(f"cannot broadcast {in_full} to {out_full}")
        term = f"(({var} / {ost[d]}) % {o})" if d > 0 else f"({var} / {ost[d]})"
        terms.append(term if ist[d] == 1 else f"{term} * {ist[d]}")
    return " + ".join(terms) or "0"


class _Gen:
    def __init__(self, program: Program, prefix: str = "snn"):
        self.p = program
        self.prefix = prefix
        self.by_out = {s.output: s for s in program.steps}
        self.fused = fusions(program)
        self.arrays: list[str] = []
        self.funcs: list[str] = []
        self.names: dict[str, str] = {}
        self.stored: list[str] = []      # tensors with a buffer, in execution order
        self._done: set[str] = set()     # tensors whose T_at is emitted

    # -- naming ----------------------------------------------------------------------------
    def cname(self, tensor: str) -> str:
        if tensor not in self.names:
            base = c_identifier(tensor)
            name, k = base, 1
            while name in self.names.values():
                k += 1
                name = f"{base}_{k}"
            self.names[tensor] = name
        return self.names[tensor]

    def array(self, tag: str, arr, ctype: str | None = None) -> str:
        arr = np.asarray(arr)
        if arr.dtype.kind == "b":
            arr = arr.astype(np.uint8)
        if ctype is None:
            if arr.dtype.kind in "iu" and arr.size and (arr.min() < -(1 << 31) or arr.max() >= (1 << 31)):
                ctype = "int64_t"
            else:
                ctype = _NP_C.get(arr.dtype, "int32_t")
        name = c_identifier(f"{self.prefix}_{tag}")
        flat = [str(int(v)) + ("LL" if ctype == "int64_t" else "") for v in arr.ravel()]
        rows = [", ".join(flat[k:k + 16]) for k in range(0, len(flat), 16)] or ["0"]
        self.arrays.append(f"static const {ctype} {name}[{max(1, len(flat))}] = {{\n    "
                           + ",\n    ".join(rows) + "\n};\n")
        return name

    def shape(self, tensor: str) -> tuple[int, ...]:
        if tensor == self.p.input_name:
            return _shape(self.p.infos[tensor].shape)
        return _shape(self.by_out[tensor].out.shape)

    def full(self, tensor: str) -> tuple[int, ...]:
        return (1,) + self.shape(tensor)

    # -- fixed-point pieces ------------------------------------------------------------------
    def rescale(self, tag: str, x: str, real, in_bits: int, out_full: tuple, var: str = "i") -> str:
        """C expression of kernels.rescale(x, real, in_bits) for element `var` of the output."""
        real = np.asarray(real, dtype=np.float64)
        pre = max(0, int(in_bits) - 31)
        if pre > 62:
            raise SnnError(f"{tag}: an input of {in_bits} bits is beyond the generator's 64-bit arithmetic")
        if pre:
            real = real * float(1 << pre)
        m0, shift = K.quantize_multipliers(real)
        total = 31 - shift
        sat = total < 1
        m0 = np.where(sat, 1 << 30, m0)
        sh = np.minimum(np.maximum(total, 1) - 1, 63)
        if real.size == 1:
            if bool(np.ravel(sat)[0]):
                return f"snn_rescale_sat({x}, {pre})"
            return f"snn_rescale({x}, {pre}, {int(np.ravel(m0)[0])}LL, {int(np.ravel(sh)[0])})"
        idx = _bidx(out_full, real.shape, var)
        a_m0 = self.array(f"{tag}_m0", m0.astype(np.int64), "int32_t")
        a_sh = self.array(f"{tag}_sh", sh.astype(np.int64), "uint8_t")
        plain = f"snn_rescale({x}, {pre}, {a_m0}[k], {a_sh}[k])"
        if np.any(sat):
            a_sat = self.array(f"{tag}_sat", sat.astype(np.uint8), "uint8_t")
            plain = f"({a_sat}[k] ? snn_rescale_sat({x}, {pre}) : {plain})"
        return f"({{ int32_t k = {idx}; {plain}; }})"

    # -- reading tensors ---------------------------------------------------------------------
    def at(self, tensor: str, idx: str) -> str:
        """C expression of element `idx` of `tensor` (reading its buffer or computing it)."""
        self.ensure(tensor)
        return f"{self.cname(tensor)}_at({idx})"

    def ensure(self, tensor: str) -> None:
        name = self.cname(tensor)
        if tensor in self._done:
            return
        self._done.add(tensor)
        if tensor == self.p.input_name:
            self.funcs.append(self._input_at(name))
            return
        step = self.by_out.get(tensor)
        if step is None:
            raise SnnError(f"tensor {tensor!r} has no producer in the lowered program")
        if step.alias:
            self.funcs.append(self._alias_at(step, name))
            return
        if self.is_stored(tensor):
            ctype = self.storage_type(step)
            ctype = "snn_i64a" if ctype == "int64_t" else ctype
            self.funcs.append(f"static inline int64_t {name}_at(int32_t i)\n{{\n"
                              f"    return (int64_t)((const {ctype} *)(snn_arena + {name.upper()}_OFF))[i];\n}}\n")
            return
        body = self.compute(step, name)
        self.funcs.append(f"static inline int64_t {name}_at(int32_t i)\n{{\n    (void)i;\n{body}}}\n")

    def is_stored(self, tensor: str) -> bool:
        step = self.by_out[tensor]
        return not step.alias and tensor not in self.fused

    def storage_type(self, step: Step) -> str:
        info = step.out
        if info.kind == "q":
            ctype = _Q_TYPES.get(tuple(info.qrange))
            if ctype is None:
                raise SnnError(f"{step.name}: quantized range {info.qrange} has no C storage type")
            return ctype
        if info.kind == "idx":
            return "uint8_t"
        return "int32_t" if info.bits <= 31 else "int64_t"

    def _input_at(self, name: str) -> str:
        shape = self.shape(self.p.input_name)
        if self.p.input_layout == "NHWC-u8":
            expr = "i"
        else:  # NCHW view of NHWC pixels
            c, h, w = shape
            expr = f"(i % {h * w}) * {c} + i / {h * w}" if c > 1 else "i"
        return (f"static inline int64_t {name}_at(int32_t i)\n{{\n"
                f"    return (int64_t)snn_arena[SNN_INPUT_OFF + {expr}];\n}}\n")

    def _alias_at(self, step: Step, name: str) -> str:
        args = _closure(step)
        src = step.inputs[0]
        if int(np.prod(self.shape(src))) != int(np.prod(self.shape(step.output))):
            raise SnnError(f"{step.op} {step.name!r}: a view that changes the element count")
        if "zp" in args and set(args) == {"x", "zp"}:
            expr = f"{self.at(src, 'i')} - {int(args['zp'])}"
        elif set(args) == {"x", "sg"}:
            expr = f"{int(args['sg'])} * {self.at(src, 'i')}"
        else:
            expr = self.at(src, "i")
        return f"static inline int64_t {name}_at(int32_t i)\n{{\n    return {expr};\n}}\n"

    # -- one computed element ----------------------------------------------------------------
    def compute(self, step: Step, name: str) -> str:
        """The body of `name_at(i)`: element i of the step's output, exactly as its fn computes it."""
        a = _closure(step)
        keys = frozenset(a)
        out = self.full(step.output)
        tag = name
        k = step.kernel

        def inp(t: str, var: str = "i") -> str:
            return self.at(t, _bidx(out, self.full(t), var))

        if step.op == "QuantizeLinear" and keys == {"x", "real", "bits", "zp", "lo", "hi"}:
            v = self.rescale(tag, inp(a["x"]), a["real"], a["bits"], out)
            return (f"    int64_t v = {v} + {int(a['zp'])};\n"
                    f"    return snn_clip(v, {int(a['lo'])}, {int(a['hi'])});\n")
        if keys == {"x", "r", "b"}:                                    # Rescale to one scale
            return f"    return {self.rescale(tag, inp(a['x']), a['r'], a['b'], out)};\n"
        if keys == {"x", "d"}:                                         # narrowing shift
            d = int(a["d"])
            return f"    return {'snn_rdbp(' + inp(a['x']) + f', {d})' if d else inp(a['x'])};\n"
        if k == "mul_const" and keys == {"x"}:
            return "    return 0;\n"
        if keys == {"x", "sg"}:
            return f"    return {int(a['sg'])} * {inp(a['x'])};\n"
        if keys == {"x", "r", "bx", "sg"}:
            return f"    return {int(a['sg'])} * {self.rescale(tag, inp(a['x']), a['r'], a['bx'], out)};\n"
        if keys == {"x", "cq"}:
            cq = np.asarray(a["cq"])
            arr = self.array(f"{tag}_c", cq.astype(np.int64))
            return f"    return {inp(a['x'])} * (int64_t){arr}[{_bidx(out, cq.shape)}];\n"
        if k == "add" and keys == {"a", "b", "ra", "rb", "ba", "bb", "sg"}:
            ra = self.rescale(tag + "_a", inp(a["a"]), a["ra"], a["ba"], out)
            rb = self.rescale(tag + "_b", inp(a["b"]), a["rb"], a["bb"], out)
            return f"    return {ra} + {int(a['sg'])} * {rb};\n"
        if keys == {"x", "r", "bx", "cq", "xs", "cs"}:
            cq = np.asarray(a["cq"])
            arr = self.array(f"{tag}_c", cq.astype(np.int64))
            r = self.rescale(tag, inp(a["x"]), a["r"], a["bx"], out)
            return (f"    return {int(a['xs'])} * {r} + {int(a['cs'])} * (int64_t){arr}[{_bidx(out, cq.shape)}];\n")
        if k == "mul" and keys == {"a", "b", "d"}:
            d = int(a["d"])
            prod = f"{inp(a['a'])} * {inp(a['b'])}"
            return f"    int64_t p = {prod};\n    return {'snn_rdbp(p, ' + str(d) + ')' if d else 'p'};\n"
        if k == "mul" and keys == {"a", "b", "r", "bits"}:
            prod = f"{inp(a['a'])} * {inp(a['b'])}"
            return f"    int64_t p = {prod};\n    return {self.rescale(tag, 'p', a['r'], a['bits'], out)};\n"
        if k == "div" and keys == {"a", "b", "k0", "e", "pre_a", "bb", "ba"}:
            return self._div(a, inp(a["a"]), inp(a["b"]))
        if k == "sqrt" and keys == {"a", "k"}:
            return f"    int64_t x = {inp(a['a'])};\n    return snn_isqrt(snn_shl(x > 0 ? x : 0, {2 * int(a['k'])}));\n"
        if k == "sqrt" and keys == {"a", "k0", "e", "ba"}:
            return self._sqrt(step, a, inp(a["a"]))
        if k == "reduce" and keys in ({"a", "ax", "kd"}, {"a", "ax", "kd", "r", "bits"}):
            return self._reduce(step, a, tag)
        if k == "relu" and keys == {"a"}:
            return f"    int64_t x = {inp(a['a'])};\n    return x > 0 ? x : 0;\n"
        if k == "abs" and keys == {"a"}:
            return f"    return snn_abs64({inp(a['a'])});\n"
        if k == "neg" and keys == {"a"}:
            return f"    return -{inp(a['a'])};\n"
        if k == "clip" and keys == {"a", "lo", "hi"}:
            lo = "INT64_MIN" if a["lo"] is None else f"{int(a['lo'])}LL"
            hi = "INT64_MAX" if a["hi"] is None else f"{int(a['hi'])}LL"
            return f"    return snn_clip({inp(a['a'])}, {lo}, {hi});\n"
        if k == "prelu" and keys == {"a", "pos_r", "neg_r", "sg", "ba"}:
            pos = self.rescale(tag + "_pos", "x", a["pos_r"], a["ba"], out)
            neg = self.rescale(tag + "_neg", "x", a["neg_r"], a["ba"], out)
            sg = np.asarray(a["sg"])
            if sg.size == 1:
                sgn = str(int(np.ravel(sg)[0]))
            else:
                sgn = f"{self.array(tag + '_sign', sg.astype(np.int64), 'int8_t')}[{_bidx(out, sg.shape)}]"
            return f"    int64_t x = {inp(a['a'])};\n    return x >= 0 ? {pos} : {sgn} * {neg};\n"
        if k in ("argmin", "argmax") and keys == {"a", "axis", "keep"}:
            return self._arg(step, a)
        if k in ("conv", "conv_1x1", "depthwise_conv") and keys == {"x", "w", "b", "s", "p", "d", "g"}:
            return self._conv(step, a, tag)
        raise SnnError(f"{step.op} step {step.name!r} (kernel {k}) has no C twin yet; the C generator covers "
                       "conv, requantisation, add/sub/mul/div by constants and tensors, sqrt, PReLU/ReLU, "
                       "clip, abs, reductions and arg-min/max")

    def _div(self, a: dict, num_x: str, den_x: str) -> str:
        k0, e, pre_a, bb, ba = (int(a[n]) for n in ("k0", "e", "pre_a", "bb", "ba"))
        lines = [f"    int64_t a = {num_x};", f"    int64_t den = {den_x};"]
        lines.append(f"    int64_t num = {'snn_rdbp(a, ' + str(pre_a) + ')' if pre_a else 'a'} * {k0}LL;")
        shift = e + pre_a
        if shift >= 0:
            room = max(0, 62 - (min(ba, 31) + 31) - 1)
            up = min(shift, room)
            rest = shift - up
            lines.append(f"    int64_t res = snn_round_div(snn_shl(num, {up}), den);")
            if rest:
                if rest > 62:
                    raise SnnError("div: a scale change beyond 2^62 is not supported in C")
                lim = 1 << (62 - rest)
                lines.append(f"    res = snn_shl(snn_clip(res, -{lim}LL, {lim}LL), {rest});")
        else:
            down = -shift
            room = max(0, 62 - bb)
            up = min(down, room)
            lines.append(f"    int64_t res = snn_round_div(num, snn_shl(den, {up}));")
            if down - up:
                if down - up > 62:
                    raise SnnError("div: a scale change beyond 2^-62 is not supported in C")
                lines.append(f"    res = snn_rdbp(res, {down - up});")
        lines.append("    return snn_clip(res, SNN_INT32_MIN + 1, SNN_INT32_MAX);")
        return "\n".join(lines) + "\n"

    def _sqrt(self, step: Step, a: dict, x_expr: str) -> str:
        k0, e, ba = int(a["k0"]), int(a["e"]), int(a["ba"])
        pre = max(0, ba - 31)
        if min(ba, 31) + 31 > 61:
            # the simulator's parity fix-up then depends on the largest value of the whole batch
            raise SnnError(f"Sqrt {step.name!r}: an input of {ba} bits makes the reference's rounding "
                           "batch-dependent; the C generator refuses it")
        ee = e + pre
        lines = [f"    int64_t x = {x_expr};", "    if (x < 0) x = 0;"]
        if pre:
            lines.append(f"    x = snn_rdbp(x, {pre});")
        lines.append(f"    int64_t n = x * {k0}LL;")
        if ee % 2:
            lines.append("    n = snn_shl(n, 1);")
            ee -= 1
        if ee >= 0:
            lines.append(f"    return snn_clip(snn_shl(snn_isqrt(n), {ee // 2}), 0, SNN_INT32_MAX);")
        else:
            lines.append(f"    return snn_clip(snn_isqrt(snn_shr(n, {-ee})), 0, SNN_INT32_MAX);")
        return "\n".join(lines) + "\n"

    def _reduce_index(self, src: str, axes: tuple[int, ...], out_full: tuple) -> tuple[str, list[tuple[int, int]], int]:
        """(base index expression, [(dim, stride)] of the reduced axes, count) for a reduction."""
        in_full = self.full(src)
        ist = _strides(in_full)
        kept = [d for d in range(len(in_full)) if d not in axes]
        kept_shape = tuple(in_full[d] for d in kept)
        kst = _strides(kept_shape)
        terms = []
        for j, d in enumerate(kept):
            if in_full[d] == 1:
                continue
            term = f"((i / {kst[j]}) % {in_full[d]})"
            terms.append(term if ist[d] == 1 else f"{term} * {ist[d]}")
        red = [(in_full[d], ist[d]) for d in axes]
        count = int(np.prod([n for n, _ in red])) if red else 1
        if int(np.prod(out_full)) != int(np.prod(kept_shape)):
            raise SnnError("reduction output does not match its kept axes")
        return " + ".join(terms) or "0", red, count

    def _reduce(self, step: Step, a: dict, tag: str) -> str:
        src = a["a"]
        axes = tuple(int(x) for x in a["ax"])
        base, red, count = self._reduce_index(src, axes, self.full(step.output))
        off_terms, rest = [], "r"
        for n, st in reversed(red):
            off_terms.append(f"(({rest}) % {n}) * {st}")
            rest = f"({rest}) / {n}"
        off = " + ".join(off_terms) or "0"
        lines = [f"    int32_t base = {base};", "    int64_t s = 0;",
                 f"    for (int32_t r = 0; r < {count}; r++) {{",
                 f"        s += {self.at(src, f'base + {off}')};", "    }"]
        if "r" in a:
            lines.append(f"    return {self.rescale(tag, 's', a['r'], a['bits'], self.full(step.output))};")
        else:
            lines.append("    return s;")
        return "\n".join(lines) + "\n"

    def _arg(self, step: Step, a: dict) -> str:
        src = a["a"]
        rank = len(self.full(src))
        axis = int(a["axis"]) % rank
        base, red, count = self._reduce_index(src, (axis,), self.full(step.output))
        n, st = red[0]
        cmp = "<" if step.kernel == "argmin" else ">"
        return "\n".join([
            f"    int32_t base = {base};",
            f"    int64_t best = {self.at(src, 'base')};", "    int32_t arg = 0;",
            f"    for (int32_t l = 1; l < {n}; l++) {{",
            f"        int64_t v = {self.at(src, f'base + l * {st}')};",
            f"        if (v {cmp} best) {{ best = v; arg = l; }}", "    }",
            "    return arg;"]) + "\n"

    def _conv(self, step: Step, a: dict, tag: str) -> str:
        w = np.asarray(a["w"])
        bias = a["b"]
        sh, sw = (int(v) for v in a["s"])
        pt, pl, _, _ = (int(v) for v in a["p"])
        dh, dw = (int(v) for v in a["d"])
        g = int(a["g"])
        src = a["x"]
        cin, h, wd = self.shape(src)
        m, cg, kh, kw = w.shape
        _, oh, ow = self.shape(step.output)
        mg = m // g
        src_bits = self.p.infos[src].bits if src in self.p.infos else 9
        wide = step.out.bits > 31 or src_bits > 31   # the bound says int32 cannot overflow otherwise
        acc_t = "int64_t" if wide else "int32_t"
        w_arr = self.array(f"{tag}_w", w, _NP_C[w.dtype])
        b_arr = self.array(f"{tag}_b", (np.zeros(m, np.int64) if bias is None else np.asarray(bias)).astype(np.int64))
        direct = self._direct(src) if dh == 1 and dw == 1 else None
        head = [f"    int32_t oc = i / {oh * ow};", f"    int32_t r = i - oc * {oh * ow};",
                f"    int32_t oy = r / {ow};", f"    int32_t ox = r - oy * {ow};",
                f"    const {_NP_C[w.dtype]} *wp = {w_arr} + oc * {cg * kh * kw};", f"    {acc_t} acc = 0;"]
        if direct is not None:
            # the input is a stored buffer (minus a zero point): clip the window once, then run
            # the taps without bounds checks (padding taps add 0, as im2col's zero padding does)
            ptr, ctype, zp = direct
            if not wide and kh * kw <= 49:
                # interior outputs: every tap valid, so sum x*w over the raw codes and take the zero
                # point off once per output (zp * sum of the output channel's weights). The sum may
                # pass 2^31 on the way; it is exact modulo 2^32 and the result fits int32 (its bound)
                wsum = self.array(f"{tag}_wsum", w.reshape(m, -1).astype(np.int64).sum(axis=1))
                taps = " + ".join(f"(uint32_t)xr[{ky * wd + kx}] * (uint32_t)(int32_t)wp[{ky * kw + kx}]"
                                  for ky in range(kh) for kx in range(kw))
                interior = [
                    f"    if (ky0 == 0 && ky1 == {kh} && kx0 == 0 && kx1 == {kw}) {{  /* interior: unrolled taps */",
                    f"        const {ctype} *xr = xb + iy0 * {wd} + ix0;", "        uint32_t sum = 0;",
                    f"        for (int32_t c = 0; c < {cg}; c++, xr += {h * wd}, wp += {kh * kw}) {{",
                    f"            sum += {taps};", "        }",
                    f"        acc = (int32_t)(sum - (uint32_t){zp} * (uint32_t){wsum}[oc]);",
                    f"        return (int64_t)acc + {b_arr}[oc];", "    }"]
            else:
                interior = []
            return "\n".join(head + [
                f"    const {ctype} *xb = ({ptr}) + (oc / {mg}) * {cg * h * wd};",
                f"    int32_t iy0 = oy * {sh} - {pt}, ix0 = ox * {sw} - {pl};",
                f"    int32_t ky0 = iy0 < 0 ? -iy0 : 0, ky1 = {h} - iy0 < {kh} ? {h} - iy0 : {kh};",
                f"    int32_t kx0 = ix0 < 0 ? -ix0 : 0, kx1 = {wd} - ix0 < {kw} ? {wd} - ix0 : {kw};",
            ] + interior + [
                f"    for (int32_t c = 0; c < {cg}; c++, xb += {h * wd}, wp += {kh * kw}) {{",
                "        for (int32_t ky = ky0; ky < ky1; ky++) {",
                f"            const {ctype} *xr = xb + (iy0 + ky) * {wd} + ix0;",
                f"            const {_NP_C[w.dtype]} *wr = wp + ky * {kw};",
                "            for (int32_t kx = kx0; kx < kx1; kx++) {",
                f"                acc += (({acc_t})xr[kx] - {zp}) * wr[kx];",
                "            }", "        }", "    }",
                f"    return (int64_t)acc + {b_arr}[oc];"]) + "\n"
        x = self.at(src, "xc + iy * %d + ix" % wd)
        return "\n".join([
            f"    int32_t oc = i / {oh * ow};", f"    int32_t r = i - oc * {oh * ow};",
            f"    int32_t oy = r / {ow};", f"    int32_t ox = r - oy * {ow};",
            f"    const {_NP_C[w.dtype]} *wp = {w_arr} + oc * {cg * kh * kw};",
            f"    {acc_t} acc = 0;",
            f"    for (int32_t c = 0; c < {cg}; c++) {{",
            f"        int32_t xc = ((oc / {mg}) * {cg} + c) * {h * wd};",
            f"        for (int32_t ky = 0; ky < {kh}; ky++, wp += {kw}) {{",
            f"            int32_t iy = oy * {sh} - {pt} + ky * {dh};",
            f"            if (iy < 0 || iy >= {h}) continue;",
            f"            for (int32_t kx = 0; kx < {kw}; kx++) {{",
            f"                int32_t ix = ox * {sw} - {pl} + kx * {dw};",
            f"                if (ix < 0 || ix >= {wd}) continue;",
            f"                acc += ({acc_t})({x}) * wp[kx];",
            "            }", "        }", "    }",
            f"    return (int64_t)acc + {b_arr}[oc];"]) + "\n"


    def _direct(self, tensor: str):
        """(pointer expression, C type, zero point) when `tensor` is a stored buffer seen through
        zero-point offsets and flat views only; else None (the generic element path is used)."""
        zp = 0
        while tensor in self.by_out and self.by_out[tensor].alias:
            step = self.by_out[tensor]
            keys = set(_closure(step))
            if keys == {"x", "zp"}:
                zp += int(_closure(step)["zp"])
            elif "sg" in keys:
                return None
            tensor = step.inputs[0]
        if tensor == self.p.input_name:
            if self.p.input_layout != "NHWC-u8" and self.shape(tensor)[0] != 1:
                return None
            return "(const uint8_t *)(snn_arena + SNN_INPUT_OFF)", "uint8_t", zp
        if tensor not in self.by_out or not self.is_stored(tensor):
            return None
        ctype = self.storage_type(self.by_out[tensor])
        if ctype == "int64_t":
            return None
        return f"(const {ctype} *)(snn_arena + {self.cname(tensor).upper()}_OFF)", ctype, zp


def _stored_leaves(gen: _Gen, tensor: str, seen=None) -> set[str]:
    """Stored tensors (and the input) that computing `tensor` reads."""
    seen = set() if seen is None else seen
    out = set()
    step = gen.by_out.get(tensor)
    if step is None:
        return {tensor}
    for inp in step.inputs:
        if inp in seen:
            continue
        seen.add(inp)
        if inp == gen.p.input_name or gen.is_stored(inp):
            out.add(inp)
        else:
            out |= _stored_leaves(gen, inp, seen)
    return out


def _base(gen: _Gen, tensor: str) -> str:
    while tensor in gen.by_out and gen.by_out[tensor].alias:
        tensor = gen.by_out[tensor].inputs[0]
    return tensor


def generate(program: Program, prefix: str = "snn", frame_bytes: int = FRAME_BYTES) -> CModel:
    """C sources of `program`; raises SnnError naming any step without an exact C twin."""
    gen = _Gen(program, prefix)
    meta = program.metadata
    out_base = _base(gen, program.output_name)
    if out_base not in gen.by_out or gen.by_out[out_base].out.kind != "idx":
        raise SnnError("the encoder's output is not symbol indices (ArgMin over the centres)")
    order = [s.output for s in program.steps if not s.alias and gen.is_stored(s.output)]
    if out_base not in order:
        raise SnnError("the symbols are not a stored tensor")
    # the schedule: one loop per stored tensor, in program order; lifetimes from what each loop reads
    time = {t: k for k, t in enumerate(order)}
    time[program.input_name] = -1
    last: dict[str, int] = {}
    for t in order:
        for leaf in _stored_leaves(gen, t):
            last[leaf] = max(last.get(leaf, -1), time[t])
    last[out_base] = len(order)
    input_bytes = int(np.prod(_shape(program.infos[program.input_name].shape)))
    buffers = [Buffer(program.input_name, (input_bytes + 3) // 4 * 4, -1, max(last.get(program.input_name, -1), -1),
                      kind="input")]
    for t in order:
        step = gen.by_out[t]
        size = int(np.prod(_shape(step.out.shape))) * _CTYPE_BYTES[gen.storage_type(step)]
        buffers.append(Buffer(t, (size + 3) // 4 * 4, time[t], max(last.get(t, time[t]), time[t]),
                              kind="output" if t == out_base else "activation"))
    buffers.append(Buffer("frame", (frame_bytes + 3) // 4 * 4, len(order), len(order) + 1, kind="frame"))
    plan = plan_buffers(buffers)
    offsets = {b.name: b.offset for b in plan.buffers}
    runs, layers = [], []
    for k, t in enumerate(order):
        step = gen.by_out[t]
        name = gen.cname(t)
        body = gen.compute(step, name)
        ctype = gen.storage_type(step)
        n = int(np.prod(_shape(step.out.shape)))
        gen.funcs.append(f"static inline int64_t {name}_calc(int32_t i)\n{{\n    (void)i;\n{body}}}\n")
        gen.ensure(t)
        stype = "snn_i64a" if ctype == "int64_t" else ctype
        runs.append(f"static __attribute__((noinline)) void {name}_run(void)\n{{\n    {stype} *out = ({stype} *)(snn_arena + {name.upper()}_OFF);\n"
                    f"    for (int32_t i = 0; i < {n}; i++) {{\n        out[i] = ({ctype}){name}_calc(i);\n    }}\n}}\n")
        chain = [s for s in program.steps if not s.alias and (s.output == t or _fused_root(gen, s.output) == t)]
        layers.append({"index": k, "tensor": t, "c_name": name, "ops": [s.op for s in chain],
                       "kernels": [s.kernel for s in chain], "steps": [s.name for s in chain],
                       "macs": int(sum(s.macs for s in chain)), "elements": n, "bytes": n * _CTYPE_BYTES[ctype]})
    up = prefix.upper()
    defs = [f"#define {c.upper()}_OFF {offsets[t]}u" for t, c in gen.names.items() if t in offsets and t != program.input_name]
    defs.append(f"#define SNN_INPUT_OFF {offsets[program.input_name]}u")
    defs.append(f"#define SNN_SYMBOLS_OFF {offsets[out_base]}u")
    defs.append(f"#define SNN_FRAME_OFF {offsets['frame']}u")
    calls = "\n".join(f"    SNN_LAYER_MARK({k});\n    {gen.cname(t)}_run();" for k, t in enumerate(order))
    fp = str(meta.get("fingerprint", "00000000"))
    n_sym = int(np.prod(_shape(gen.by_out[out_base].out.shape)))
    levels = int(meta.get("levels", 0) or 0)
    header = f"""/* Generated by firmware_sim/codegen.py from {Path(str(program.model.path)).name}: do not edit.
 * The int8 encoder as integer C; equal to the firmware_sim simulator on every symbol. */
#ifndef {up}_MODEL_H
#define {up}_MODEL_H

#include <stdint.h>

#define SNN_MODEL_INPUT_BYTES {input_bytes}u
#define SNN_MODEL_N_SYMBOLS {n_sym}u
#define SNN_MODEL_LEVELS {levels}u
#define SNN_MODEL_BITS_PER_SYMBOL {max(1, (max(levels, 2) - 1).bit_length())}u
#define SNN_MODEL_GRAY {1 if meta.get('gray', True) else 0}
#define SNN_MODEL_FINGERPRINT 0x{int(fp, 16) & 0xFFFFFFFF:08X}u
#define SNN_MODEL_ARENA_BYTES {plan.peak_bytes}u
#define SNN_MODEL_FRAME_BYTES {frame_bytes}u
#define SNN_MODEL_N_LAYERS {len(order)}u

extern uint8_t snn_arena[];

/* Encode the image at snn_model_input() (uint8 pixels, H x W x C) into symbol indices at
 * snn_model_symbols(). The arena's frame buffer (snn_model_frame()) is free for the caller. */
void snn_model_run(void);

static inline uint8_t *snn_model_input(void) {{ return snn_arena + {offsets[program.input_name]}u; }}
static inline uint8_t *snn_model_symbols(void) {{ return snn_arena + {offsets[out_base]}u; }}
static inline uint8_t *snn_model_frame(void) {{ return snn_arena + {offsets['frame']}u; }}

#endif /* {up}_MODEL_H */
"""
    source = (f"/* Generated by firmware_sim/codegen.py from {Path(str(program.model.path)).name}: do not edit.\n"
              " * One loop per stored tensor over a planned arena; fused steps are inlined. */\n"
              '#include "snn_model.h"\n#include "snn_fixed.h"\n\n'
              "#ifdef SNN_LAYER_HOOK  /* the firmware times each layer (main.c: snn_layer_mark) */\n"
              "void snn_layer_mark(unsigned k);\n#define SNN_LAYER_MARK(k) snn_layer_mark(k)\n"
              "#else\n#define SNN_LAYER_MARK(k) ((void)0)\n#endif\n\n"
              + "\n".join(defs) + "\n\n"
              f"uint8_t snn_arena[{plan.peak_bytes}u] __attribute__((aligned(8)));\n\n"
              + "".join(gen.arrays) + "\n" + "\n".join(gen.funcs) + "\n" + "\n".join(runs)
              + f"\nvoid snn_model_run(void)\n{{\n{calls}\n    SNN_LAYER_MARK({len(order)});\n}}\n")
    return CModel(header, source, plan.peak_bytes, input_bytes, n_sym, levels, plan, layers)


def _fused_root(gen: _Gen, tensor: str) -> str:
    seen = 0
    while tensor in gen.fused and seen < 1000:
        tensor = gen.fused[tensor]
        seen += 1
    return tensor


def support_files() -> list[Path]:
    """The hand-written C the generated model needs (fixed-point helpers)."""
    return [FIRMWARE_DIR / "snn_fixed.h"]
