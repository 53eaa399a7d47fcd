"""Division family: a / b and sqrt(a) in integers, at the output's demanded scale (GDN's core).

Division. The result is ``round(a * K / b)`` with ``K = s_a / (s_b * s_out) = k0 * 2^e`` (k0 a
31-bit multiplier). The recipe, fixed once at compile time in `Div.build` and read by both the
NumPy and the C evaluation::

    num = round(a / 2^pre_a) * k0          pre_a brings a wider-than-31-bit a to 31 bits
    e >= 0:  res = round_div(num << num_up, b)        num_up: what the 62-bit product leaves room for
             res = clip(res, +-2^(62-post_shl)) << post_shl   the rest of the gain, saturating
    e <  0:  res = round_div(num, b << den_up)        den_up: what b's bound leaves room for
             res = round(res / 2^post_rdbp)            the rest, one more rounding
    y = clip(res, INT32_MIN + 1, INT32_MAX)

Square root. Digit-by-digit ``isqrt`` of ``x * k0`` with the exponent made even first: when the
product may reach 2^61 (an input of 31 bits or more) the parity is fixed by halving, else by
doubling; the choice is made from the input's bound at compile time, never from the data.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from firmware_sim import kernels as K
from firmware_sim.ir.base import CContext, Kernel, register
from snn.errors import SnnError


@register
@dataclass(frozen=True, eq=False)
class Div(Kernel):
    name = "div"
    reads = ("a", "b")
    a: str
    b: str
    k0: int
    e: int             # K = k0 * 2^e
    pre_a: int
    grow: bool         # e + pre_a >= 0: the gain is applied to the numerator
    num_up: int
    post_shl: int
    den_up: int
    post_rdbp: int

    @classmethod
    def build(cls, a: str, b: str, gain: float, ba: int, bb: int) -> "Div":
        """The recipe for round(a * gain / b) with |a| < 2^ba, |b| < 2^bb."""
        k0, e = K.quantize_multiplier(gain)
        e -= 31
        pre_a = max(0, ba - 31)
        shift = e + pre_a
        if shift >= 0:
            up = min(shift, max(0, 62 - (min(ba, 31) + 31) - 1))
            return cls(a, b, k0, e, pre_a, True, up, shift - up, 0, 0)
        down = -shift
        up = min(down, max(0, 62 - bb))
        return cls(a, b, k0, e, pre_a, False, 0, 0, up, down - up)

    def run(self, v):
        x = v[self.a]
        num = (K.rounding_divide_by_pot(x, self.pre_a) if self.pre_a else x) * self.k0
        if self.grow:
            res = K.round_div(num << self.num_up, v[self.b].copy())
            if self.post_shl:
                lim = 1 << (62 - self.post_shl)
                res = np.clip(res, -lim, lim) << self.post_shl
        else:
            res = K.round_div(num, v[self.b] << self.den_up)
            if self.post_rdbp:
                res = K.rounding_divide_by_pot(res, self.post_rdbp)
        return np.clip(res, K.INT32_MIN + 1, K.INT32_MAX)

    def emit_c(self, c: CContext) -> str:
        lines = [f"    int64_t a = {c.inp(self.a)};", f"    int64_t den = {c.inp(self.b)};",
                 f"    int64_t num = {'snn_rdbp(a, ' + str(self.pre_a) + ')' if self.pre_a else 'a'} * {self.k0}LL;"]
        if self.grow:
            lines.append(f"    int64_t res = snn_round_div(snn_shl(num, {self.num_up}), den);")
            if self.post_shl:
                if self.post_shl > 62:
                    raise SnnError("div: a scale change beyond 2^62 is not supported in C")
                lim = 1 << (62 - self.post_shl)
                lines.append(f"    res = snn_shl(snn_clip(res, -{lim}LL, {lim}LL), {self.post_shl});")
        else:
            lines.append(f"    int64_t res = snn_round_div(num, snn_shl(den, {self.den_up}));")
            if self.post_rdbp:
                if self.post_rdbp > 62:
                    raise SnnError("div: a scale change beyond 2^-62 is not supported in C")
                lines.append(f"    res = snn_rdbp(res, {self.post_rdbp});")
        lines.append("    return snn_clip(res, SNN_INT32_MIN + 1, SNN_INT32_MAX);")
        return "\n".join(lines) + "\n"


@register
@dataclass(frozen=True, eq=False)
class SqrtFree(Kernel):
    """isqrt(max(x, 0) << pre_shift): a square root at the natural scale sqrt(s) / 2^(pre_shift/2)."""

    name = "sqrt_free"
    x: str
    pre_shift: int

    def run(self, v):
        return K.isqrt(np.maximum(v[self.x], 0) << self.pre_shift)

    def emit_c(self, c: CContext) -> str:
        return (f"    int64_t x = {c.inp(self.x)};\n"
                f"    return snn_isqrt(snn_shl(x > 0 ? x : 0, {int(self.pre_shift)}));\n")


@register
@dataclass(frozen=True, eq=False)
class Sqrt(Kernel):
    """sqrt(x * s_x) / s_out = isqrt(x * k0 * 2^ee) with ee made even (see the module's docstring)."""

    name = "sqrt"
    x: str
    k0: int
    e: int             # gain = k0 * 2^e
    pre: int           # rounding shift bringing x to 31 bits
    halve: bool        # the exponent's parity is fixed by n >> 1 (else n << 1)
    odd: bool          # whether the parity needs fixing at all
    ee: int            # the even exponent after the fix

    @classmethod
    def build(cls, x: str, gain: float, bits: int) -> "Sqrt":
        k0, e = K.quantize_multiplier(gain)
        e -= 31
        pre = max(0, bits - 31)
        ee = e + pre
        halve = min(bits, 31) + 31 > 61       # x * k0 may reach 2^61: doubling could overflow
        odd = bool(ee % 2)
        if odd:
            ee = ee + 1 if halve else ee - 1
        return cls(x, k0, e, pre, halve, odd, ee)

    def run(self, v):
        x = np.maximum(v[self.x], 0)
        if self.pre:
            x = K.rounding_divide_by_pot(x, self.pre)
        n = x * self.k0
        if self.odd:
            n = n >> 1 if self.halve else n << 1
        if self.ee >= 0:
            return np.clip(K.isqrt(n) << (self.ee // 2), 0, K.INT32_MAX)
        return np.clip(K.isqrt(n >> (-self.ee)), 0, K.INT32_MAX)

    def emit_c(self, c: CContext) -> str:
        lines = [f"    int64_t x = {c.inp(self.x)};", "    if (x < 0) x = 0;"]
        if self.pre:
            lines.append(f"    x = snn_rdbp(x, {self.pre});")
        lines.append(f"    int64_t n = x * {self.k0}LL;")
        if self.odd:
            lines.append("    n = snn_shr(n, 1);" if self.halve else "    n = snn_shl(n, 1);")
        if self.ee >= 0:
            lines.append(f"    return snn_clip(snn_shl(snn_isqrt(n), {self.ee // 2}), 0, SNN_INT32_MAX);")
        else:
            lines.append(f"    return snn_clip(snn_isqrt(snn_shr(n, {-self.ee})), 0, SNN_INT32_MAX);")
        return "\n".join(lines) + "\n"
