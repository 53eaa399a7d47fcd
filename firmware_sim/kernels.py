"""Integer kernels and fixed-point arithmetic, as CMSIS-NN / TFLite Micro compute them.

Everything here takes and returns integer numpy arrays; floats appear only at compile time, to
turn a real multiplier into its fixed-point form (`quantize_multiplier`), never in a kernel.

Requantisation (TFLite ``MultiplyByQuantizedMultiplier``, CMSIS-NN ``arm_nn_requantize``): a real
multiplier ``M > 0`` is stored as ``M = M0 * 2^(shift - 31)`` with ``M0`` a 31-bit integer in
``[2^30, 2^31)``. We use the single-rounding form (``CMSIS_NN_USE_SINGLE_ROUNDING``)::

    y = ((x * M0) >> (30 - shift) + 1) >> 1        # exact 62-bit product, rounded once

The double-rounding form (``SaturatingRoundingDoublingHighMul`` then ``RoundingDivideByPOT``)
is kept as `multiply_by_quantized_multiplier` for reference; it can be one LSB off whenever
x*M lies within 2^-(right+1) of a rounding tie (see `rescale`).

Conv accumulators are int32: ``acc = sum (q_x - zp_x) * q_w + bias`` (weights symmetric, so no
weight zero point), then ``q_y = clamp(requant(acc) + zp_y, -128, 127)`` per output channel.
"""
from __future__ import annotations

import math

import numpy as np

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


def quantize_multiplier(real: float) -> tuple[int, int]:
    """(M0, shift) with real = M0 * 2^(shift-31), M0 in [2^30, 2^31) (0, 0 for real == 0)."""
    if real == 0.0:
        return 0, 0
    if real < 0:
        raise ValueError("requantisation multipliers are positive")
    mant, exp = math.frexp(real)  # real = mant * 2^exp, mant in [0.5, 1)
    m0 = int(round(mant * (1 << 31)))
    if m0 == 1 << 31:
        m0 //= 2
        exp += 1
    return m0, exp


def quantize_multipliers(reals) -> tuple[np.ndarray, np.ndarray]:
    """Vector form of `quantize_multiplier`: int64 arrays (M0, shift)."""
    pairs = [quantize_multiplier(float(r)) for r in np.ravel(reals)]
    m0 = np.array([p[0] for p in pairs], dtype=np.int64).reshape(np.shape(reals))
    sh = np.array([p[1] for p in pairs], dtype=np.int64).reshape(np.shape(reals))
    return m0, sh


def rounding_divide_by_pot(x: np.ndarray, exponent) -> np.ndarray:
    """round(x / 2^exponent), ties away from zero (gemmlowp RoundingDivideByPOT)."""
    exponent = np.asarray(exponent, dtype=np.int64)
    if not np.any(exponent):
        return x
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def saturating_rounding_doubling_high_mul(a: np.ndarray, m0) -> np.ndarray:
    """round(a * m0 / 2^31) with gemmlowp's nudge (a, m0 int32 range; exact in int64)."""
    ab = a.astype(np.int64) * np.asarray(m0, dtype=np.int64)
    nudge = np.where(ab >= 0, np.int64(1 << 30), np.int64(1 - (1 << 30)))
    # C integer division truncates toward zero; emulate it for the 2^31 divide
    s = ab + nudge
    q = np.where(s >= 0, s >> 31, -((-s) >> 31))
    return q


def multiply_by_quantized_multiplier(x: np.ndarray, m0, shift) -> np.ndarray:
    """x * M0 * 2^(shift-31) rounded as TFLite does; x is int32-range, result int64."""
    shift = np.asarray(shift, dtype=np.int64)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    y = saturating_rounding_doubling_high_mul(np.asarray(x, dtype=np.int64) << left, m0)
    return rounding_divide_by_pot(y, right)


def requantize(acc: np.ndarray, real, in_bits: int, zero_point: int, qmin: int, qmax: int) -> np.ndarray:
    """Accumulators (scale s_in) -> int8/uint8 of scale s_out: real = s_in / s_out per channel."""
    return np.clip(rescale(acc, real, in_bits) + int(zero_point), qmin, qmax)


def rescale(x: np.ndarray, real, in_bits: int) -> np.ndarray:
    """x * real for int64 x with |x| < 2^in_bits, single-rounded, saturated to the int32 range.

    This is CMSIS-NN's ``arm_nn_requantize`` built with ``CMSIS_NN_USE_SINGLE_ROUNDING`` (TFLite's
    ``TFLITE_SINGLE_ROUNDING``): ``y = ((x * M0) >> (30 - shift) + 1) >> 1``, one rounding (half
    up) of the exact 62-bit product. The default double-rounding form (`multiply_by_quantized_
    multiplier`) rounds twice and can be off by one whenever x*M lies within 2^-(right+1) of a
    tie; single rounding is exact to 2^-31 and so agrees with onnxruntime's float requantisation
    except at exact ties. `real` is a positive scalar or an array broadcastable against x (per
    channel). Inputs wider than 31 bits are first brought to 31 bits by a rounding right shift
    (the bound is known at compile time).
    """
    x = np.asarray(x, dtype=np.int64)
    real = np.asarray(real, dtype=np.float64)
    pre = max(0, int(in_bits) - 31)
    if pre:
        x = rounding_divide_by_pot(x, pre)
        real = real * float(1 << pre)
    m0, shift = quantize_multipliers(real)
    total = 31 - shift
    if np.any(total < 1):  # gains >= 2^30: anything non-zero saturates
        x = np.where(total < 1, np.sign(x) * (1 << 31), x)
        total = np.maximum(total, 1)
        m0 = np.where(31 - shift < 1, 1 << 30, m0)
    x = np.clip(x, INT32_MIN, INT32_MAX)
    y = ((x * m0) >> (total - 1)) + 1 >> 1
    return np.clip(y, INT32_MIN + 1, INT32_MAX)


def isqrt(n: np.ndarray) -> np.ndarray:
    """floor(sqrt(n)) of non-negative int64, digit by digit (no float, 31 iterations)."""
    n = np.asarray(n, dtype=np.int64).copy()
    n[n < 0] = 0
    res = np.zeros_like(n)
    bit = np.int64(1) << 62
    while bit:
        s = res + bit
        ge = n >= s
        n = np.where(ge, n - s, n)
        res = np.where(ge, (res >> 1) + bit, res >> 1)
        bit >>= 2
    return res


def round_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """round(num / den) with ties away from zero; den == 0 saturates to +-INT64 limit/4."""
    num = np.asarray(num, dtype=np.int64)
    den = np.asarray(den, dtype=np.int64)
    sign = np.where((num < 0) ^ (den < 0), -1, 1)
    an, ad = np.abs(num), np.abs(den)
    safe = np.where(ad == 0, 1, ad)
    q = (an + safe // 2) // safe
    q = np.where(ad == 0, np.where(an == 0, 0, np.int64(1) << 60), q)
    return sign * q


def im2col(x: np.ndarray, kh: int, kw: int, stride: tuple[int, int], pads: tuple[int, int, int, int],
           dilation: tuple[int, int], pad_value: int = 0) -> tuple[np.ndarray, int, int]:
    """(N, C, H, W) -> columns (N, OH*OW, C*kh*kw) and (OH, OW); padding with `pad_value`."""
    n, c, h, w = x.shape
    top, left, bottom, right = pads
    if any(pads):
        x = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=pad_value)
    sh, sw = stride
    dh, dw = dilation
    oh = (h + top + bottom - dh * (kh - 1) - 1) // sh + 1
    ow = (w + left + right - dw * (kw - 1) - 1) // sw + 1
    cols = np.empty((n, c, kh, kw, oh, ow), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j] = x[:, :, i * dh:i * dh + sh * (oh - 1) + 1:sh, j * dw:j * dw + sw * (ow - 1) + 1:sw]
    return cols.reshape(n, c * kh * kw, oh * ow).transpose(0, 2, 1), oh, ow


def conv2d_int(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, stride, pads, dilation,
               group: int) -> np.ndarray:
    """Integer convolution: x (N, C, H, W) int, w (M, C/group, kh, kw) int8 -> int64 accumulators.

    Grouped (and depthwise, group == C) convolutions run one group at a time; the products and
    sums are integers (int32 matmul), exactly what an MCU's SMLAD loop accumulates.
    """
    n, c, _, _ = x.shape
    m, cg, kh, kw = w.shape
    mg = m // group
    outs = []
    x32 = x.astype(np.int32)
    for g in range(group):
        cols, oh, ow = im2col(x32[:, g * cg:(g + 1) * cg], kh, kw, stride, pads, dilation)
        wg = w[g * mg:(g + 1) * mg].reshape(mg, -1).astype(np.int32)
        outs.append(cols @ wg.T)  # (N, OH*OW, mg) int32
    acc = np.concatenate(outs, axis=2).astype(np.int64) if group > 1 else outs[0].astype(np.int64)
    if bias is not None:
        acc = acc + bias.astype(np.int64)
    return acc.transpose(0, 2, 1).reshape(n, m, oh, ow)
