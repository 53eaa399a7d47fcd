"""Requantisation family: scale changes of one tensor (QuantizeLinear, a common scale, a narrowing
shift) and the zero-point view of DequantizeLinear.

``Requantize`` is CMSIS-NN's ``arm_nn_requantize`` with single rounding (`kernels.rescale`) plus
the output zero point and saturation: ``q = clamp(rescale(x, real) + zp, lo, hi)``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from firmware_sim import kernels as K
from firmware_sim.ir.base import CContext, Kernel, register


@register
@dataclass(frozen=True, eq=False)
class Requantize(Kernel):
    """A real-valued tensor (|x| < 2^bits, scale s_in) to codes of scale s_out: real = s_in / s_out."""

    name = "requantize"
    x: str
    real: np.ndarray
    bits: int
    zp: int
    lo: int
    hi: int

    def run(self, v):
        return K.requantize(v[self.x], self.real, self.bits, self.zp, self.lo, self.hi)

    def emit_c(self, c: CContext) -> str:
        # clip(y + zp, lo, hi) == clip(y, lo - zp, hi - zp) + zp, and y (a rescale) fits int32
        r = c.rescale(c.tag, c.inp(self.x), self.real, self.bits)
        zp = int(self.zp)
        return (f"    int32_t y = (int32_t)({r});\n"
                f"    return (int64_t)snn_clip32(y, {int(self.lo) - zp}, {int(self.hi) - zp}) + {zp};\n")


@register
@dataclass(frozen=True, eq=False)
class Rescale(Kernel):
    """x * r (per channel), single-rounded: a conv accumulator brought to one scale."""

    name = "rescale"
    x: str
    r: np.ndarray
    bits: int

    def run(self, v):
        return K.rescale(v[self.x], self.r, self.bits)

    def emit_c(self, c: CContext) -> str:
        return f"    return {c.rescale(c.tag, c.inp(self.x), self.r, self.bits)};\n"


@register
@dataclass(frozen=True, eq=False)
class Narrow(Kernel):
    """round(x / 2^d): a value made narrow enough for the sum that follows."""

    name = "narrow"
    x: str
    d: int

    def run(self, v):
        return K.rounding_divide_by_pot(v[self.x], self.d) if self.d else v[self.x]

    def emit_c(self, c: CContext) -> str:
        x = c.inp(self.x)
        return f"    return {f'snn_rdbp({x}, {int(self.d)})' if self.d else x};\n"


@register
@dataclass(frozen=True, eq=False)
class Offset(Kernel):
    """DequantizeLinear as a view: q - zp (the consumer takes the zero point as an input offset)."""

    name = "offset"
    x: str
    zp: int

    def run(self, v):
        return v[self.x] - self.zp

    def c_view(self, expr: str) -> str:
        return f"{expr} - {int(self.zp)}"

    def direct_offset(self) -> int | None:
        return int(self.zp)
