"""Convolution family: integer 2-D convolution (regular, 1x1, grouped, depthwise) to int32/int64
accumulators, ``acc[oc] = bias[oc] + sum (x - zp) * w[oc]`` (weights symmetric, int8 or int16).

The C reads the input in place when it is a stored buffer seen through zero-point offsets only
(`CContext.direct`): the window is clipped once per output, and interior outputs of small kernels
run unrolled taps over the raw codes with the zero point taken off once (``zp * sum w``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from firmware_sim import kernels as K
from firmware_sim.ir.base import CContext, Kernel, register

NP_C = {np.dtype(np.int8): "int8_t", np.dtype(np.int16): "int16_t", np.dtype(np.int32): "int32_t",
        np.dtype(np.uint8): "uint8_t", np.dtype(np.int64): "int64_t"}


@register
@dataclass(frozen=True, eq=False)
class Conv(Kernel):
    name = "conv"
    x: str
    w: np.ndarray                  # (M, C/group, kh, kw) int8 or int16
    bias: np.ndarray | None        # int64 (M,) in accumulator units
    strides: tuple[int, int]
    pads: tuple[int, int, int, int]
    dilations: tuple[int, int]
    group: int
    acc_bits: int                  # |acc| < 2^acc_bits (the output's bound)

    def run(self, v):
        return K.conv2d_int(v[self.x], self.w, self.bias, self.strides, self.pads, self.dilations, self.group)

    def emit_c(self, c: CContext) -> str:
        w = np.asarray(self.w)
        sh, sw = (int(v) for v in self.strides)
        pt, pl, _, _ = (int(v) for v in self.pads)
        dh, dw = (int(v) for v in self.dilations)
        src = self.x
        cin, h, wd = c.shape(src)
        m, cg, kh, kw = w.shape
        _, oh, ow = c.out[1:]
        mg = m // int(self.group)
        wide = self.acc_bits > 31 or c.bits(src) > 31   # the bound says int32 cannot overflow otherwise
        acc_t = "int64_t" if wide else "int32_t"
        wt = NP_C[w.dtype]
        w_arr = c.array(f"{c.tag}_w", w, wt)
        bias = np.zeros(m, np.int64) if self.bias is None else np.asarray(self.bias)
        b_arr = c.array(f"{c.tag}_b", bias.astype(np.int64))
        direct = c.direct(src) if dh == 1 and dw == 1 else None
        head = [f"    int32_t oc = i / {oh * ow};", f"    int32_t r = i - oc * {oh * ow};",
                f"    int32_t oy = r / {ow};", f"    int32_t ox = r - oy * {ow};",
                f"    const {wt} *wp = {w_arr} + oc * {cg * kh * kw};", f"    {acc_t} acc = 0;"]
        if direct is None:
            return self._generic(c, head, acc_t, b_arr, (cg, h, wd, kh, kw, sh, sw, pt, pl, dh, dw, mg))
        # the input is a stored buffer (minus a zero point): clip the window once, then run the taps
        # without bounds checks (padding taps add 0, as im2col's zero padding does)
        ptr, ctype, zp = direct
        interior = []
        if not wide and kh * kw <= 49:
            # interior outputs: every tap valid, so sum x*w over the raw codes and take the zero
            # point off once per output (zp * sum of the output channel's weights). The sum may
            # pass 2^31 on the way; it is exact modulo 2^32 and the result fits int32 (its bound)
            wsum = c.array(f"{c.tag}_wsum", w.reshape(m, -1).astype(np.int64).sum(axis=1))
            taps = " + ".join(f"(uint32_t)xr[{ky * wd + kx}] * (uint32_t)(int32_t)wp[{ky * kw + kx}]"
                              for ky in range(kh) for kx in range(kw))
            interior = [
                f"    if (ky0 == 0 && ky1 == {kh} && kx0 == 0 && kx1 == {kw}) {{  /* interior: unrolled taps */",
                f"        const {ctype} *xr = xb + iy0 * {wd} + ix0;", "        uint32_t sum = 0;",
                f"        for (int32_t c = 0; c < {cg}; c++, xr += {h * wd}, wp += {kh * kw}) {{",
                f"            sum += {taps};", "        }",
                f"        acc = (int32_t)(sum - (uint32_t){zp} * (uint32_t){wsum}[oc]);",
                f"        return (int64_t)acc + {b_arr}[oc];", "    }"]
        return "\n".join(head + [
            f"    const {ctype} *xb = ({ptr}) + (oc / {mg}) * {cg * h * wd};",
            f"    int32_t iy0 = oy * {sh} - {pt}, ix0 = ox * {sw} - {pl};",
            f"    int32_t ky0 = iy0 < 0 ? -iy0 : 0, ky1 = {h} - iy0 < {kh} ? {h} - iy0 : {kh};",
            f"    int32_t kx0 = ix0 < 0 ? -ix0 : 0, kx1 = {wd} - ix0 < {kw} ? {wd} - ix0 : {kw};",
        ] + interior + [
            f"    for (int32_t c = 0; c < {cg}; c++, xb += {h * wd}, wp += {kh * kw}) {{",
            "        for (int32_t ky = ky0; ky < ky1; ky++) {",
            f"            const {ctype} *xr = xb + (iy0 + ky) * {wd} + ix0;",
            f"            const {wt} *wr = wp + ky * {kw};",
            "            for (int32_t kx = kx0; kx < kx1; kx++) {",
            f"                acc += (({acc_t})xr[kx] - {zp}) * wr[kx];",
            "            }", "        }", "    }",
            f"    return (int64_t)acc + {b_arr}[oc];"]) + "\n"

    def _generic(self, c: CContext, head: list[str], acc_t: str, b_arr: str, dims) -> str:
        """Any input (computed, dilated): element by element through its T_at, bounds checked."""
        cg, h, wd, kh, kw, sh, sw, pt, pl, dh, dw, mg = dims
        x = c.at(self.x, "xc + iy * %d + ix" % wd)
        return "\n".join(head + [
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
