"""Reduction family: sums over axes (ReduceSum/Mean, global average pooling), arg-min/max (the
nearest-centre search), windowed pooling.

In C a reduction is a loop over the reduced axes for each kept index; `reduce_index` turns the
output's flat index into the base offset of its window and lists the reduced axes' strides.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from firmware_sim import kernels as K
from firmware_sim.ir.base import CContext, Kernel, register, strides
from snn.errors import SnnError


def reduce_index(c: CContext, src: str, axes: tuple[int, ...]) -> tuple[str, list[tuple[int, int]], int]:
    """(base index expression, [(dim, stride)] of the reduced axes, count) for a reduction."""
    in_full = c.full(src)
    ist = strides(in_full)
    kept = [d for d in range(len(in_full)) if d not in axes]
    kept_shape = tuple(in_full[d] for d in kept)
    kst = strides(kept_shape)
    terms = []
    for j, d in enumerate(kept):
        if in_full[d] == 1:
            continue
        term = f"((i / {kst[j]}) % {in_full[d]})"
        terms.append(term if ist[d] == 1 else f"{term} * {ist[d]}")
    red = [(in_full[d], ist[d]) for d in axes]
    count = int(np.prod([n for n, _ in red])) if red else 1
    if int(np.prod(c.out)) != int(np.prod(kept_shape)):
        raise SnnError("reduction output does not match its kept axes")
    return " + ".join(terms) or "0", red, count


@register
@dataclass(frozen=True, eq=False)
class Reduce(Kernel):
    """sum over `axes` (a mean's 1/count is in the scale), rescaled by r when a scale is demanded."""

    name = "reduce"
    x: str
    axes: tuple[int, ...]
    keep: bool
    r: float | None = None
    bits: int = 0

    def run(self, v):
        s = v[self.x].sum(axis=self.axes, keepdims=self.keep)
        return s if self.r is None else K.rescale(s, self.r, self.bits)

    def emit_c(self, c: CContext) -> str:
        base, red, count = reduce_index(c, self.x, tuple(int(x) for x in self.axes))
        off_terms, rest = [], "r"
        for n, st in reversed(red):
            off_terms.append(f"(({rest}) % {n}) * {st}")
            rest = f"({rest}) / {n}"
        off = " + ".join(off_terms) or "0"
        lines = [f"    int32_t base = {base};", "    int64_t s = 0;",
                 f"    for (int32_t r = 0; r < {count}; r++) {{",
                 f"        s += {c.at(self.x, f'base + {off}')};", "    }"]
        if self.r is not None:
            lines.append(f"    return {c.rescale(c.tag, 's', self.r, self.bits)};")
        else:
            lines.append("    return s;")
        return "\n".join(lines) + "\n"


@register
@dataclass(frozen=True, eq=False)
class Arg(Kernel):
    """Index of the smallest (ArgMin) or largest (ArgMax) value along `axis`, first on ties."""

    name = "arg"
    x: str
    axis: int
    keep: bool
    largest: bool

    def run(self, v):
        r = (np.argmax if self.largest else np.argmin)(v[self.x], axis=self.axis)
        return np.expand_dims(r, self.axis) if self.keep else r

    def emit_c(self, c: CContext) -> str:
        axis = int(self.axis) % len(c.full(self.x))
        base, red, _ = reduce_index(c, self.x, (axis,))
        n, st = red[0]
        cmp = ">" if self.largest else "<"
        return "\n".join([
            f"    int32_t base = {base};",
            f"    int64_t best = {c.at(self.x, 'base')};", "    int32_t arg = 0;",
            f"    for (int32_t l = 1; l < {n}; l++) {{",
            f"        int64_t v = {c.at(self.x, f'base + l * {st}')};",
            f"        if (v {cmp} best) {{ best = v; arg = l; }}", "    }",
            "    return arg;"]) + "\n"


@register
@dataclass(frozen=True, eq=False)
class Pool(Kernel):
    """Max or sum over k x k windows (MaxPool; AveragePool with 1/count in the scale). No C twin yet."""

    name = "pool"
    x: str
    window: tuple[int, int]
    strides: tuple[int, ...]
    pads: tuple[int, ...]
    largest: bool

    def run(self, v):
        x = v[self.x]
        n, ch = x.shape[:2]
        k = self.window
        cols, oh, ow = K.im2col(x.reshape(n * ch, 1, *x.shape[2:]), k[0], k[1], self.strides, self.pads, (1, 1),
                                pad_value=-(1 << 62) if self.largest else 0)
        out = cols.max(axis=2) if self.largest else cols.sum(axis=2)
        return out.reshape(n, ch, oh, ow)
