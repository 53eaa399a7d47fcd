"""Activation family: ReLU, PReLU/LeakyReLU, Clip, Abs, Neg on fixed-point values.

PReLU at a demanded scale: ``y = x >= 0 ? rescale(x, pos_r) : sg * rescale(x, neg_r)`` with the
slope's magnitude folded into ``neg_r`` and its sign into ``sg`` (per channel).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from firmware_sim import kernels as K
from firmware_sim.ir.base import CContext, Kernel, register


@register
@dataclass(frozen=True, eq=False)
class Relu(Kernel):
    name = "relu"
    x: str

    def run(self, v):
        return np.maximum(v[self.x], 0)

    def emit_c(self, c: CContext) -> str:
        return f"    int64_t x = {c.inp(self.x)};\n    return x > 0 ? x : 0;\n"


@register
@dataclass(frozen=True, eq=False)
class PRelu(Kernel):
    name = "prelu"
    x: str
    pos_r: np.ndarray
    neg_r: np.ndarray
    sg: np.ndarray
    bits: int

    def run(self, v):
        x = v[self.x]
        return np.where(x >= 0, K.rescale(x, self.pos_r, self.bits), self.sg * K.rescale(x, self.neg_r, self.bits))

    def emit_c(self, c: CContext) -> str:
        pos = c.rescale(c.tag + "_pos", "x", self.pos_r, self.bits)
        neg = c.rescale(c.tag + "_neg", "x", self.neg_r, self.bits)
        sg = np.asarray(self.sg)
        if sg.size == 1:
            sgn = str(int(np.ravel(sg)[0]))
        else:
            sgn = f"{c.array(c.tag + '_sign', sg.astype(np.int64), 'int8_t')}[{c.bidx(sg.shape)}]"
        return f"    int64_t x = {c.inp(self.x)};\n    return x >= 0 ? {pos} : {sgn} * {neg};\n"


@register
@dataclass(frozen=True, eq=False)
class Clip(Kernel):
    """clip(x, lo, hi) with bounds already in the input's integer units (None: unbounded)."""

    name = "clip"
    x: str
    lo: int | None
    hi: int | None

    def run(self, v):
        return np.clip(v[self.x], self.lo, self.hi)

    def emit_c(self, c: CContext) -> str:
        lo = "INT64_MIN" if self.lo is None else f"{int(self.lo)}LL"
        hi = "INT64_MAX" if self.hi is None else f"{int(self.hi)}LL"
        return f"    return snn_clip({c.inp(self.x)}, {lo}, {hi});\n"


@register
@dataclass(frozen=True, eq=False)
class Abs(Kernel):
    name = "abs"
    x: str

    def run(self, v):
        return np.abs(v[self.x])

    def emit_c(self, c: CContext) -> str:
        return f"    return snn_abs64({c.inp(self.x)});\n"


@register
@dataclass(frozen=True, eq=False)
class Neg(Kernel):
    name = "neg"
    x: str

    def run(self, v):
        return -v[self.x]

    def emit_c(self, c: CContext) -> str:
        return f"    return -{c.inp(self.x)};\n"
