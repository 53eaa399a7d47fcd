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
by the step's kernel (`firmware_sim.ir`, resolved by name) from the very fields its NumPy
evaluation reads, with the helpers of ``firmware/snn_fixed.h`` (the C twins of `kernels.py`).
A tensor the planner fuses into its consumer (`planner.fusions`: a conv into its requantisation,
elementwise chains such as GDN's sqrt/div or the nearest-centre distance) is never stored: its
``T_at`` is inlined into the consumer's loop. Stored tensors are written by ``T_run()`` into their
arena buffer at their planned offset and read back by their ``T_at``. Views (DequantizeLinear's
zero-point offset, Reshape, Unsqueeze, Cast) keep the flat index and cost nothing.

Steps this generator cannot express exactly are refused by name (`SnnError`), never approximated.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from snn.errors import SnnError
from firmware_sim import kernels as K
from firmware_sim.c_export import c_identifier
from firmware_sim.ir import resolve
from firmware_sim.ir.conv import Conv as ConvKernel, SimdPlan, blocked_run
from firmware_sim.ir.base import strides as _strides
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


def _shape(info_shape) -> tuple[int, ...]:
    """Non-batch dimensions of a traced (batch 1) shape."""
    return tuple(int(d) for d in info_shape[1:])


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
        self.guard: str | None = None    # a preprocessor condition around the arrays emitted now
        self.blocked: dict[str, list[tuple[Step, SimdPlan]]] = {}   # stored tensor -> its DSP-path convs
        self.blocked_convs: set[str] = set()

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
        decl = (f"static const {ctype} {name}[{max(1, len(flat))}] = {{\n    " + ",\n    ".join(rows) + "\n};\n")
        self.arrays.append(f"#if {self.guard}\n{decl}#endif\n" if self.guard else decl)
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
            if not pre and in_bits <= 31:   # |x| < 2^31: the one-multiply form
                s0 = int(np.ravel(sh)[0])
                if s0 >= 32:
                    return f"snn_rescale_hi((int32_t)({x}), {int(np.ravel(m0)[0])}, {s0 - 32})"
                return f"snn_rescale32((int32_t)({x}), {int(np.ravel(m0)[0])}, {s0})"
            return f"snn_rescale({x}, {pre}, {int(np.ravel(m0)[0])}LL, {int(np.ravel(sh)[0])})"
        idx = _bidx(out_full, real.shape, var)
        a_m0 = self.array(f"{tag}_m0", m0.astype(np.int64), "int32_t")
        hi = not pre and in_bits <= 31 and not np.any(sat) and int(sh.min()) >= 32
        a_sh = self.array(f"{tag}_sh", (sh - 32 if hi else sh).astype(np.int64), "uint8_t")
        if hi:       # |x| < 2^31 and every channel's gain below 2^-1: the high word, no clamp
            plain = f"snn_rescale_hi((int32_t)({x}), {a_m0}[k], {a_sh}[k])"
        elif not pre and in_bits <= 31:
            plain = f"snn_rescale32((int32_t)({x}), {a_m0}[k], {a_sh}[k])"
        else:
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
        if tensor in self.blocked_convs:
            # the DSP path computes this conv in blocks and leaves each element's accumulator in
            # NAME_acc before finishing the element; the plain path computes it here
            self.guard = "!SNN_SIMD"
            try:
                body = self.compute(step, name)
            finally:
                self.guard = None
            acc_t = "int64_t" if step.spec.acc_bits > 31 else "int32_t"
            self.funcs.append(f"#if SNN_SIMD\nstatic {acc_t} {name}_acc;\n#endif\n"
                              f"static inline int64_t {name}_at(int32_t i)\n{{\n    (void)i;\n#if SNN_SIMD\n"
                              f"    return {name}_acc;\n#else\n{body}#endif\n}}\n")
            return
        body = self.compute(step, name)
        self.funcs.append(f"static inline int64_t {name}_at(int32_t i)\n{{\n    (void)i;\n{body}}}\n")

    def plan_simd(self, order: list[str]) -> None:
        """Choose, for each stored tensor, the convs of its fused chain that the DSP path runs in
        blocks: those the chain reads element for element (every tensor from the conv to the stored
        one has the stored one's shape, so element i of the conv finishes element i of the output)
        and that have a DSP plan. The others stay element by element."""
        for t in order:
            chosen = []
            for s in self.p.steps:
                if not isinstance(s.spec, ConvKernel) or s.output == t or _fused_root(self, s.output) != t:
                    continue
                node, ok = s.output, True
                while node != t and ok:
                    ok = self.full(node) == self.full(t)
                    node = self.fused[node]
                plan = s.spec.simd_plan(_Emit(self, self.cname(s.output), self.full(s.output))) if ok else None
                if plan is not None:
                    chosen.append((s, plan))
            if chosen:
                self.blocked[t] = chosen
                self.blocked_convs.update(s.output for s, _ in chosen)

    def simd_run(self, t: str, out_ctype: str) -> str:
        """The DSP-path statements of T_run for a stored tensor with blocked convs."""
        convs = []
        self.guard = "SNN_SIMD"
        try:
            for j, (step, plan) in enumerate(self.blocked[t]):
                conv = self.cname(step.output)
                part = step.spec.simd_parts(_Emit(self, conv, self.full(step.output)), plan)
                self.funcs.append(f"#if SNN_SIMD\n{part.im2col_c}#endif\n")
                convs.append((part, f"{conv}_acc", f"{self.cname(t).upper()}_COL{j}_OFF"))
        finally:
            self.guard = None
        return blocked_run(convs, f"{self.cname(t)}_calc", out_ctype)

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
        src = step.inputs[0]
        if int(np.prod(self.shape(src))) != int(np.prod(self.shape(step.output))):
            raise SnnError(f"{step.op} {step.name!r}: a view that changes the element count")
        expr = step.spec.c_view(self.at(src, "i"))
        return f"static inline int64_t {name}_at(int32_t i)\n{{\n    return {expr};\n}}\n"

    # -- one computed element ----------------------------------------------------------------
    def compute(self, step: Step, name: str) -> str:
        """The body of `name_at(i)`: element i of the step's output, exactly as its kernel computes it."""
        spec = step.spec
        try:
            kernel = resolve(getattr(spec, "name", type(spec).__name__))
        except SnnError as exc:
            raise SnnError(f"{step.op} step {step.name!r} has no C twin: {exc}") from None
        if type(spec) is not kernel:
            raise SnnError(f"{step.op} step {step.name!r} has no C twin: {type(spec).__name__} is not the "
                           f"registered kernel {kernel.name!r}")
        return spec.emit_c(_Emit(self, name, self.full(step.output)))

    def direct(self, tensor: str):
        """(pointer expression, C type, zero point) when `tensor` is a stored buffer seen through
        zero-point offsets and flat views only; else None (the generic element path is used)."""
        zp = 0
        while tensor in self.by_out and self.by_out[tensor].alias:
            step = self.by_out[tensor]
            off = step.spec.direct_offset()
            if off is None:
                return None
            zp += off
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


@dataclass
class _Emit:
    """The `ir.CContext` of one step: the generator's helpers bound to that step's output."""

    gen: _Gen
    tag: str
    out: tuple[int, ...]

    def inp(self, tensor: str, var: str = "i") -> str:
        return self.gen.at(tensor, _bidx(self.out, self.gen.full(tensor), var))

    def at(self, tensor: str, idx: str) -> str:
        return self.gen.at(tensor, idx)

    def full(self, tensor: str) -> tuple[int, ...]:
        return self.gen.full(tensor)

    def shape(self, tensor: str) -> tuple[int, ...]:
        return self.gen.shape(tensor)

    def bits(self, tensor: str) -> int:
        infos = self.gen.p.infos
        return infos[tensor].bits if tensor in infos else 9

    def bidx(self, shape, var: str = "i") -> str:
        return _bidx(self.out, shape, var)

    def array(self, tag: str, arr, ctype: str | None = None) -> str:
        return self.gen.array(tag, arr, ctype)

    def rescale(self, tag: str, x: str, real, in_bits: int, var: str = "i") -> str:
        return self.gen.rescale(tag, x, real, in_bits, self.out, var)

    def direct(self, tensor: str):
        return self.gen.direct(tensor)


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
    gen.plan_simd(order)
    for t, convs in gen.blocked.items():   # the DSP path's im2col columns, live while T_run runs
        for j, (_, simd) in enumerate(convs):
            buffers.append(Buffer(f"{t}#im2col{j}", simd.scratch_bytes, time[t], time[t], kind="scratch"))
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
        plain = f"    for (int32_t i = 0; i < {n}; i++) {{\n        out[i] = ({ctype}){name}_calc(i);\n    }}\n"
        if t in gen.blocked:
            plain = f"#if SNN_SIMD\n{gen.simd_run(t, ctype)}#else\n{plain}#endif\n"
        runs.append(f"static __attribute__((noinline)) void {name}_run(void)\n{{\n"
                    f"    {stype} *out = ({stype} *)(snn_arena + {name.upper()}_OFF);\n{plain}}}\n")
        chain = [s for s in program.steps if not s.alias and (s.output == t or _fused_root(gen, s.output) == t)]
        layers.append({"index": k, "tensor": t, "c_name": name, "ops": [s.op for s in chain],
                       "kernels": [s.kernel for s in chain], "steps": [s.name for s in chain],
                       "macs": int(sum(s.macs for s in chain)), "elements": n, "bytes": n * _CTYPE_BYTES[ctype]})
    up = prefix.upper()
    defs = [f"#define {c.upper()}_OFF {offsets[t]}u" for t, c in gen.names.items() if t in offsets and t != program.input_name]
    defs.append(f"#define SNN_INPUT_OFF {offsets[program.input_name]}u")
    defs.append(f"#define SNN_SYMBOLS_OFF {offsets[out_base]}u")
    defs.append(f"#define SNN_FRAME_OFF {offsets['frame']}u")
    defs += [f"#define {gen.cname(t).upper()}_COL{j}_OFF {offsets[f'{t}#im2col{j}']}u"
             for t, convs in gen.blocked.items() for j in range(len(convs))]
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
              '#include "snn_model.h"\n#include "snn_fixed.h"\n#include "snn_simd.h"\n\n'
              "#ifndef SNN_SIMD  /* the DSP path (SMLAD) where the core has the DSP extension; the build says */\n"
              "#if defined(__ARM_FEATURE_DSP)\n#define SNN_SIMD 1\n#else\n#define SNN_SIMD 0\n#endif\n#endif\n\n"
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
    """The hand-written C the generated model needs (fixed-point helpers, the DSP intrinsics)."""
    return [FIRMWARE_DIR / "snn_fixed.h", FIRMWARE_DIR / "snn_simd.h"]
