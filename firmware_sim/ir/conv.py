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


# -- the DSP path: im2col columns of int16 taps, weights as SXTB16 expands them, SMLAD ------------
SHIFTS = {"uint16_t": 32768, "int16_t": 0, "uint8_t": 0, "int8_t": 0}   # codes - shift fit int16


@dataclass(frozen=True)
class SimdPlan:
    """How the DSP path runs one convolution (`Conv.simd_plan`).

    Every output position gets an im2col column of ``k4`` int16 taps (``k`` real ones, zero padded
    to a multiple of 4), each ``x - shift`` (unsigned 16-bit codes shifted by 32,768 fit a signed
    lane); a padding tap holds ``zp - shift``, so it adds 0 once the per-channel constant
    ``bias + (shift - zp) * sum(w)`` is added to the lane products. Two columns are live at a time.
    """

    k: int
    k4: int
    shift: int
    pad: int
    ptr: str            # the input buffer (C expression)
    ctype: str          # its element type
    zp: int
    wide: bool          # the accumulator bound passes 2^31: SMLALD into 64 bits

    @property
    def scratch_bytes(self) -> int:
        return 2 * self.k4 * 2


def simd_weights(w: np.ndarray, k4: int) -> np.ndarray:
    """(M, k) int8 weights as rows of k4 bytes, each group of 4 taps stored as (w0, w2, w1, w3):
    SXTB16 of the word then gives the lanes (w0, w1) and SXTB16 ROR 8 gives (w2, w3), matching the
    natural order of the im2col column."""
    m = w.shape[0]
    rows = np.zeros((m, k4), np.int8)
    rows[:, :w[0].size] = w.reshape(m, -1)
    return rows.reshape(m, k4 // 4, 4)[:, :, [0, 2, 1, 3]].reshape(m, k4)


@dataclass(frozen=True)
class SimdParts:
    """One conv's share of a DSP-path run (`Conv.simd_parts`)."""

    im2col: str         # name of its im2col function
    im2col_c: str       # that function's C
    weights: str        # C array names
    const: str
    k4: int
    wide: bool
    channels: int
    positions: int


def blocked_run(convs: list[tuple[SimdParts, str, str]], calc: str, out_ctype: str) -> str:
    """The statements of the DSP path of ``T_run`` for convs (parts, accumulator variable, im2col
    offset macro) whose outputs all finish the same stored tensor element for element: for each
    pair of output positions their im2col columns, then for each pair of output channels four dot
    products per conv (SMLAD, 2 x 2 register blocking as CMSIS-NN's mat-mult kernels do), each
    element finished by the fused epilogue `calc(i)` with every conv's accumulator set. An odd count
    repeats the last position or channel and drops the repeat."""
    m, npos = convs[0][0].channels, convs[0][0].positions
    body = []
    for j, (part, _, off) in enumerate(convs):
        body.append(f"    int16_t *col{j}a = (int16_t *)(snn_arena + {off}), *col{j}b = col{j}a + {part.k4};")
    body += [f"    for (int32_t p = 0; p < {npos}; p += 2) {{", f"        int32_t q = p + 1 < {npos} ? p + 1 : p;"]
    for j, (part, _, _) in enumerate(convs):
        body += [f"        {part.im2col}(col{j}a, p);", f"        {part.im2col}(col{j}b, q);"]
    body += [f"        for (int32_t oc = 0; oc < {m}; oc += 2) {{", f"            int32_t od = oc + 1 < {m} ? oc + 1 : oc;"]
    for j, (part, _, _) in enumerate(convs):
        acc_t, dot = ("int64_t", "snn_dot2x2_wide") if part.wide else ("uint32_t", "snn_dot2x2")
        body += [f"            {acc_t} a{j}[4] = {{0, 0, 0, 0}};",
                 f"            {dot}({part.weights} + oc * {part.k4}, {part.weights} + od * {part.k4}, col{j}a, col{j}b, "
                 f"{part.k4}, a{j});"]

    def finish(slot: int, ch: str, pos: str, ind: str) -> list[str]:
        sets = [f"{ind}{var} = ({'int64_t' if part.wide else 'int32_t'})(a{j}[{slot}] + {part.const}[{ch}]);"
                for j, (part, var, _) in enumerate(convs)]
        return sets + [f"{ind}out[{ch} * {npos} + {pos}] = ({out_ctype}){calc}({ch} * {npos} + {pos});"]

    body += finish(0, "oc", "p", " " * 12) + ["            if (q != p) {"] + finish(1, "oc", "q", " " * 16) + \
        ["            }", "            if (od != oc) {"] + finish(2, "od", "p", " " * 16) + \
        ["                if (q != p) {"] + finish(3, "od", "q", " " * 20) + ["                }", "            }"]
    return "\n".join(body + ["        }", "    }"]) + "\n"


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

    def simd_plan(self, c: CContext) -> SimdPlan | None:
        """The DSP path's plan, or None where the plain path must run (grouped or dilated convs, int16
        weights, an input that is not a stored code buffer, a padding value outside int16)."""
        w = np.asarray(self.w)
        if self.group != 1 or tuple(self.dilations) != (1, 1) or w.dtype != np.int8:
            return None
        direct = c.direct(self.x)
        if direct is None or direct[1] not in SHIFTS:
            return None
        ptr, ctype, zp = direct
        shift = SHIFTS[ctype]
        if not -32768 <= zp - shift <= 32767:
            return None
        k = int(w[0].size)
        return SimdPlan(k, (k + 3) // 4 * 4, shift, int(zp - shift), ptr, ctype, int(zp), self.acc_bits > 31)


    def simd_parts(self, c: CContext, plan: SimdPlan) -> "SimdParts":
        """The DSP path's pieces for this conv (c.tag names them): its im2col function (one output
        position's column), its weights as SXTB16 wants them, and its per-channel constant."""
        w = np.asarray(self.w)
        m = w.shape[0]
        cin, h, wd = c.shape(self.x)
        _, kh, kw = w.shape[1:]
        _, oh, ow = c.out[1:]
        sh, sw = (int(v) for v in self.strides)
        pt, pl = int(self.pads[0]), int(self.pads[1])
        npos = oh * ow
        bias = np.zeros(m, np.int64) if self.bias is None else np.asarray(self.bias, np.int64)
        const = bias + (plan.shift - plan.zp) * w.reshape(m, -1).astype(np.int64).sum(axis=1)
        if plan.wide:
            b_arr = c.array(f"{c.tag}_simd_b", const, "int64_t")
        else:   # modulo 2^32: the sum is exact modulo 2^32 and its true value fits int32
            b_arr = c.array(f"{c.tag}_simd_b", ((const + (1 << 31)) % (1 << 32)) - (1 << 31), "int32_t")
        w_arr = c.array(f"{c.tag}_simd_w", simd_weights(w, plan.k4), "int8_t")
        sub = f" - {plan.shift}" if plan.shift else ""
        rows = [ln for ky in range(kh) for ln in self._row_copy(plan, kw, f"xr + {ky * wd}", f"d + {ky * kw}")]
        col = [
            f"    /* im2col of output position p: x{sub} per tap, {plan.pad} for a padding tap */",
            "    int16_t *d = col;",
            f"    int32_t oy = p / {ow}, ox = p - oy * {ow};",
            f"    int32_t iy0 = oy * {sh} - {pt}, ix0 = ox * {sw} - {pl};",
            f"    const {plan.ctype} *xb = {plan.ptr};",
            f"    if (iy0 >= 0 && iy0 + {kh} <= {h} && ix0 >= 0 && ix0 + {kw} <= {wd}) {{   /* interior: no padding */",
            f"        const {plan.ctype} *xr = xb + iy0 * {wd} + ix0;",
            f"        for (int32_t ch = 0; ch < {cin}; ch++, xr += {h * wd}, d += {kh * kw}) {{",
            *rows, "        }", "    } else {",
            f"        for (int32_t ch = 0; ch < {cin}; ch++, xb += {h * wd}) {{",
            f"            for (int32_t ky = 0; ky < {kh}; ky++, d += {kw}) {{",
            "                int32_t iy = iy0 + ky;",
            f"                const {plan.ctype} *xr = xb + iy * {wd} + ix0;",
            f"                for (int32_t kx = 0; kx < {kw}; kx++) {{",
            "                    int32_t ix = ix0 + kx;",
            f"                    d[kx] = iy >= 0 && iy < {h} && ix >= 0 && ix < {wd} ? (int16_t)((int32_t)xr[kx]{sub})"
            f" : (int16_t){plan.pad};",
            "                }", "            }", "        }", "    }",
            f"    for (int32_t k = {plan.k}; k < {plan.k4}; k++) d[k - {plan.k}] = 0;"]
        im2col = f"static inline __attribute__((always_inline)) void {c.tag}_im2col(int16_t *col, int32_t p)\n{{\n" \
            + "\n".join(col) + "\n}\n"
        return SimdParts(f"{c.tag}_im2col", im2col, w_arr, b_arr, plan.k4, plan.wide, m, npos)

    @staticmethod
    def _row_copy(plan: SimdPlan, kw: int, src: str, dst: str) -> list[str]:
        """C copying one window row of kw taps from `src` to `dst`: 16-bit codes two at a time (one
        unaligned word; unsigned codes shifted by XOR 0x8000 per lane, which is x - 32768 as int16),
        8-bit codes one at a time."""
        ind = " " * 12
        if plan.ctype not in ("uint16_t", "int16_t"):
            sub = f" - {plan.shift}" if plan.shift else ""
            return [f"{ind}({dst})[{k}] = (int16_t)((int32_t)({src})[{k}]{sub});" for k in range(kw)]
        flip, flip1 = ("0x80008000u", "0x8000u") if plan.shift else ("0u", "0u")
        lines = [f"{ind}snn_write32u({dst} + {k}, snn_read32u({src} + {k}) ^ {flip});" for k in range(0, kw - 1, 2)]
        if kw % 2:
            lines.append(f"{ind}({dst})[{kw - 1}] = (int16_t)(({src})[{kw - 1}] ^ {flip1});")
        return lines

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
