"""Tensor-arena memory plan from tensor liveness (TFLite Micro's greedy-by-size planner).

Every buffer the firmware needs lives in one arena: the input image, each materialised
activation, each kernel's scratch (CMSIS-NN's im2col buffer, live only while its kernel runs)
and the output frame. A buffer is live from the step that writes it to the last step that reads
it. Views (a DequantizeLinear is just a zero-point offset, a Reshape is just a new shape) share
their source's buffer and extend its life; a kernel whose only consumer is a QuantizeLinear writes
the quantized output directly (fused requantisation), so its int32 result is never stored.

Buffers are placed largest first, each at the lowest offset that does not overlap any already
placed buffer whose lifetime intersects its own (Lattner/TFLM ``GreedyMemoryPlanner``); the peak
is the highest end offset. This is what `peak_sram_bytes` reports.
"""
from __future__ import annotations

from dataclasses import dataclass, field

ALIGN = 4


@dataclass
class Buffer:
    name: str
    size: int
    first: int        # step index that writes it
    last: int         # last step index that reads it
    offset: int = -1
    kind: str = "activation"


@dataclass
class MemoryPlan:
    buffers: list[Buffer] = field(default_factory=list)
    peak_bytes: int = 0

    def as_dict(self) -> dict:
        return {"peak_bytes": self.peak_bytes,
                "buffers": [{"name": b.name, "kind": b.kind, "bytes": b.size, "offset": b.offset,
                             "live": [b.first, b.last]} for b in self.buffers]}


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def plan_buffers(buffers: list[Buffer]) -> MemoryPlan:
    """Greedy-by-size placement of buffers with [first, last] lifetimes; returns offsets and peak."""
    placed: list[Buffer] = []
    for buf in sorted(buffers, key=lambda b: (-b.size, b.first)):
        if buf.size == 0:
            buf.offset = 0
            continue
        overlapping = sorted((p for p in placed if not (p.last < buf.first or buf.last < p.first)),
                             key=lambda p: p.offset)
        offset = 0
        for p in overlapping:
            if offset + buf.size <= p.offset:
                break
            offset = max(offset, _align(p.offset + p.size))
        buf.offset = offset
        placed.append(buf)
    peak = max((b.offset + b.size for b in buffers if b.size), default=0)
    return MemoryPlan(sorted(buffers, key=lambda b: (b.first, b.offset)), peak)


def scratch_bytes(step) -> int:
    """CMSIS-NN scratch of a kernel: arm_convolve_s8 keeps two im2col columns as int16."""
    if step.kernel in ("conv", "conv_1x1") and "weights" in step.params:
        w = step.params["weights"]
        if step.kernel == "conv_1x1":
            return 0  # arm_convolve_1x1_s8_fast needs no im2col buffer
        return 2 * int(w.shape[1] * w.shape[2] * w.shape[3]) * 2
    if step.kernel == "depthwise_conv" and "weights" in step.params:
        w = step.params["weights"]
        return 4 * int(w.shape[2] * w.shape[3]) * 2  # arm_depthwise_conv_s8_opt: 4 channels of a window
    return 0


ELEMENTWISE = {"requantize", "sqrt", "div", "prelu", "relu", "abs", "neg", "add_const", "mul_const", "mul", "add",
               "clip", "argmin", "argmax", "scale"}
CONV = {"conv", "conv_1x1", "depthwise_conv"}


def fusions(program) -> dict[str, str]:
    """Step outputs that are never stored: output -> the step output that absorbs their kernel.

    A conv whose only consumer is a requantisation writes int8 directly (arm_convolve_s8); an
    elementwise kernel whose only consumer is elementwise runs in the same per-element loop
    (GDN's sqrt/div/PReLU, the distance/compare of the nearest-centre search), unless that consumer
    broadcasts it to more elements than it has (the normalised features against L centres): the
    loop would recompute it once per copy, so it is stored instead.
    """
    steps = program.steps
    by_out = {s.output: s for s in steps}
    root: dict[str, str] = {}
    for s in steps:
        if s.alias:
            root[s.output] = root.get(s.inputs[0], s.inputs[0])
    readers: dict[str, list] = {}
    for s in steps:
        if s.alias:
            continue
        for inp in s.inputs:
            readers.setdefault(root.get(inp, inp), []).append(s)
    fused = {}
    for s in steps:
        if s.alias or s.output == program.output_name:
            continue
        rs = readers.get(s.output, [])
        if len(rs) != 1 or by_out.get(s.output) is None:
            continue
        c = rs[0]
        if c.elements > s.elements:
            continue   # a consumer that broadcasts would recompute this kernel for every copy: store it
        if (s.kernel in CONV and c.kernel == "requantize") or (s.kernel in ELEMENTWISE and c.kernel in ELEMENTWISE):
            fused[s.output] = c.output
    return fused


def plan_program(program, input_bytes: int, output_frame_bytes: int) -> MemoryPlan:
    """The arena plan of a lowered `Program` plus the input image and the output frame buffer."""
    steps = program.steps
    fused = fusions(program)
    root: dict[str, str] = {}
    writer: dict[str, int] = {program.input_name: -1}
    last_use: dict[str, int] = {program.input_name: -1}
    sizes: dict[str, int] = {program.input_name: input_bytes}
    kinds: dict[str, str] = {program.input_name: "input"}

    def base(name: str) -> str:
        while name in root:
            name = root[name]
        return name

    for step in steps:
        if step.alias:
            root[step.output] = step.inputs[0]
        elif step.output in fused:
            root[step.output] = fused[step.output]
    for i, step in enumerate(steps):
        for inp in step.inputs:
            b = base(inp)
            last_use[b] = max(last_use.get(b, i), i)
        if step.alias:
            continue
        b = base(step.output)
        writer[b] = min(writer.get(b, i), i)
        if step.output not in fused:
            sizes[b] = step.out.nbytes
            kinds.setdefault(b, "activation")
        s = scratch_bytes(step)
        if s:
            sizes[f"{step.output}#scratch"] = s
            writer[f"{step.output}#scratch"] = i
            last_use[f"{step.output}#scratch"] = i
            kinds[f"{step.output}#scratch"] = "scratch"
    out = base(program.output_name)
    end = len(steps)
    last_use[out] = end  # the symbols are packed into the frame at the end
    buffers = []
    for name, size in sizes.items():
        first = writer.get(name, -1)
        buffers.append(Buffer(name, _align(size), first, max(last_use.get(name, first), first),
                              kind="output" if name == out else kinds.get(name, "activation")))
    buffers.append(Buffer("frame", _align(output_frame_bytes), end, end + 1, kind="frame"))
    return plan_buffers(buffers)
