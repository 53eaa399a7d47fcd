"""Arithmetic family: sums and products of tensors and constants in fixed point.

Every operand is first brought to the output's scale by `kernels.rescale` (one 32x31-bit product,
single rounding), so a sum is a plain integer add: ``y = xs * rescale(x, r) + cs * c``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from firmware_sim import kernels as K
from firmware_sim.ir.base import CContext, Kernel, register


@register
@dataclass(frozen=True, eq=False)
class Add(Kernel):
    """a * ra + sg * b * rb (Add, Sub of two tensors)."""

    name = "add"
    reads = ("a", "b")
    a: str
    b: str
    ra: np.ndarray
    rb: np.ndarray
    ba: int
    bb: int
    sg: int

    def run(self, v):
        return K.rescale(v[self.a], self.ra, self.ba) + self.sg * K.rescale(v[self.b], self.rb, self.bb)

    def emit_c(self, c: CContext) -> str:
        ra = c.rescale(c.tag + "_a", c.inp(self.a), self.ra, self.ba)
        rb = c.rescale(c.tag + "_b", c.inp(self.b), self.rb, self.bb)
        return f"    return {ra} + {int(self.sg)} * {rb};\n"


@register
@dataclass(frozen=True, eq=False)
class AddConst(Kernel):
    """xs * rescale(x, r) + cs * cq: a tensor plus or minus a constant quantised at the output scale."""

    name = "add_const"
    x: str
    r: np.ndarray
    bx: int
    cq: np.ndarray
    xs: int
    cs: int

    def run(self, v):
        return self.xs * K.rescale(v[self.x], self.r, self.bx) + self.cs * self.cq

    def emit_c(self, c: CContext) -> str:
        cq = np.asarray(self.cq)
        arr = c.array(f"{c.tag}_c", cq.astype(np.int64))
        r = c.rescale(c.tag, c.inp(self.x), self.r, self.bx)
        return f"    return {int(self.xs)} * {r} + {int(self.cs)} * (int64_t){arr}[{c.bidx(cq.shape)}];\n"


@register
@dataclass(frozen=True, eq=False)
class Zero(Kernel):
    """A product with the constant 0."""

    name = "zero"
    x: str

    def run(self, v):
        return np.zeros_like(v[self.x])

    def emit_c(self, c: CContext) -> str:
        return "    return 0;\n"


@register
@dataclass(frozen=True, eq=False)
class Sign(Kernel):
    """sg * x: a scalar gain that only changes the scale (a view when sg is +1)."""

    name = "sign"
    x: str
    sg: int

    def run(self, v):
        return self.sg * v[self.x]

    def emit_c(self, c: CContext) -> str:
        return f"    return {int(self.sg)} * {c.inp(self.x)};\n"

    def c_view(self, expr: str) -> str:
        return f"{int(self.sg)} * {expr}"

    def direct_offset(self) -> int | None:
        return None


@register
@dataclass(frozen=True, eq=False)
class ScaleBy(Kernel):
    """sg * rescale(x, r): a product with a scalar constant at a demanded scale."""

    name = "scale_by"
    x: str
    r: np.ndarray
    bx: int
    sg: int

    def run(self, v):
        return self.sg * K.rescale(v[self.x], self.r, self.bx)

    def emit_c(self, c: CContext) -> str:
        return f"    return {int(self.sg)} * {c.rescale(c.tag, c.inp(self.x), self.r, self.bx)};\n"


@register
@dataclass(frozen=True, eq=False)
class MulConst(Kernel):
    """x * cq: a product with a constant tensor quantised to 16 bits (broadcast)."""

    name = "mul_const"
    x: str
    cq: np.ndarray

    def run(self, v):
        return v[self.x] * self.cq

    def emit_c(self, c: CContext) -> str:
        cq = np.asarray(self.cq)
        arr = c.array(f"{c.tag}_c", cq.astype(np.int64))
        return f"    return {c.inp(self.x)} * (int64_t){arr}[{c.bidx(cq.shape)}];\n"


@register
@dataclass(frozen=True, eq=False)
class Mul(Kernel):
    """a * b, rounded down by 2^d (d = 0: exact) so that the sums that follow stay narrow."""

    name = "mul"
    reads = ("a", "b")
    a: str
    b: str
    d: int

    def run(self, v):
        p = v[self.a] * v[self.b]
        return K.rounding_divide_by_pot(p, self.d) if self.d else p

    def emit_c(self, c: CContext) -> str:
        d = int(self.d)
        return (f"    int64_t p = {c.inp(self.a)} * {c.inp(self.b)};\n"
                f"    return {'snn_rdbp(p, ' + str(d) + ')' if d else 'p'};\n")


@register
@dataclass(frozen=True, eq=False)
class MulRescale(Kernel):
    """rescale(a * b, r): a product of tensors at a demanded scale."""

    name = "mul_rescale"
    reads = ("a", "b")
    a: str
    b: str
    r: float
    bits: int

    def run(self, v):
        return K.rescale(v[self.a] * v[self.b], self.r, self.bits)

    def emit_c(self, c: CContext) -> str:
        prod = f"{c.inp(self.a)} * {c.inp(self.b)}"
        return f"    int64_t p = {prod};\n    return {c.rescale(c.tag, 'p', self.r, self.bits)};\n"
