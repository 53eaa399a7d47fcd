/* Fixed-point helpers of the integer encoder: the C twin of firmware_sim/kernels.py.
 *
 * Every function here computes, bit for bit, what the NumPy reference computes on int64 arrays
 * (arithmetic right shifts, two's complement wrap on left shifts), so the generated encoder
 * equals the simulator on every symbol. No division instruction is used on 64-bit values: the
 * only 64-bit division (snn_udiv64) is a shift-subtract loop, so the image links without libgcc.
 * Signed right shift is arithmetic (GCC defines it so; the firmware is built with GCC).
 */
#ifndef SNN_FIXED_H
#define SNN_FIXED_H

#include <stdint.h>

/* int64 arena buffers sit at 4-byte aligned offsets (the planner's alignment); GCC honours the
 * reduced alignment of this type (LDRD on ARMv7-M needs only word alignment). */
typedef int64_t snn_i64a __attribute__((aligned(4)));

#define SNN_INT32_MIN (-2147483647LL - 1)
#define SNN_INT32_MAX 2147483647LL

static inline int64_t snn_clip(int64_t x, int64_t lo, int64_t hi)
{
    return x < lo ? lo : (x > hi ? hi : x);
}

static inline int32_t snn_clip32(int32_t x, int32_t lo, int32_t hi)
{
    return x < lo ? lo : (x > hi ? hi : x);
}

/* round(x / 2^e), ties away from zero (gemmlowp RoundingDivideByPOT); 1 <= e <= 62. */
static inline int64_t snn_rdbp(int64_t x, int e)
{
    int64_t mask = ((int64_t)1 << e) - 1;
    int64_t rem = x & mask;
    int64_t thr = (mask >> 1) + (x < 0);
    return (x >> e) + (rem > thr);
}

/* x * M0 * 2^-(sh+1), single rounding (CMSIS_NN_USE_SINGLE_ROUNDING), saturated to int32.
 * pre: the rounding pre-shift of inputs wider than 31 bits; sh = 30 - shift, clamped to 63. */
static inline int64_t snn_rescale32(int32_t x, int32_t m0, int sh);

static inline int64_t snn_rescale(int64_t x, int pre, int64_t m0, int sh)
{
    if (pre) {
        x = snn_rdbp(x, pre);
    }
    return snn_rescale32((int32_t)snn_clip(x, SNN_INT32_MIN, SNN_INT32_MAX), (int32_t)m0, sh);
}

/* The same for an input known to fit int32 (the generator's bound says so): one 32x32->64-bit
 * multiply (SMULL). With sh >= 32 (a gain below 2^-1) the result is taken from the product's high
 * word and cannot leave the int32 range, so it needs no clamp: (t >> 1) + (t & 1) is (t + 1) >> 1
 * without the overflow of t + 1. */
static inline int64_t snn_rescale32(int32_t x, int32_t m0, int sh)
{
    int64_t p = (int64_t)x * m0;
    if (sh >= 32) {
        int32_t t = (int32_t)(p >> 32) >> (sh - 32);
        return (t >> 1) + (t & 1);
    }
    return snn_clip(((p >> sh) + 1) >> 1, SNN_INT32_MIN + 1, SNN_INT32_MAX);
}

/* snn_rescale32 where the generator knows sh >= 32 (every channel's gain below 2^-1): hs = sh - 32. */
static inline int32_t snn_rescale_hi(int32_t x, int32_t m0, int hs)
{
    int32_t t = (int32_t)(((int64_t)x * m0) >> 32) >> hs;
    return (t >> 1) + (t & 1);
}

/* A gain >= 2^30: anything non-zero saturates (kernels.rescale's total < 1 branch). */
static inline int64_t snn_rescale_sat(int64_t x, int pre)
{
    if (pre) {
        x = snn_rdbp(x, pre);
    }
    return x > 0 ? SNN_INT32_MAX : (x < 0 ? SNN_INT32_MIN + 1 : 0);
}

/* Left shift with NumPy's int64 wrap (and 0 for shifts >= 64). */
static inline int64_t snn_shl(int64_t x, int s)
{
    return s >= 64 ? 0 : (int64_t)((uint64_t)x << s);
}

/* Arithmetic right shift, NumPy semantics for shifts >= 64 (sign fill). */
static inline int64_t snn_shr(int64_t x, int s)
{
    return x >> (s > 63 ? 63 : s);
}

/* floor(sqrt(n)) digit by digit (kernels.isqrt): no float, 32 iterations. */
static inline int64_t snn_isqrt(int64_t n)
{
    uint64_t v = n < 0 ? 0 : (uint64_t)n;
    uint64_t res = 0;
    uint64_t bit = (uint64_t)1 << 62;
    while (bit) {
        uint64_t s = res + bit;
        if (v >= s) {
            v -= s;
            res = (res >> 1) + bit;
        } else {
            res >>= 1;
        }
        bit >>= 2;
    }
    return (int64_t)res;
}

/* n / d for d > 0 by shift and subtract (no __aeabi_uldivmod, so no libgcc in the image). */
static inline uint64_t snn_udiv64(uint64_t n, uint64_t d)
{
    if (d > n) {
        return 0;
    }
    int shift = __builtin_clzll(d) - __builtin_clzll(n);
    uint64_t q = 0;
    d <<= shift;
    for (; shift >= 0; shift--) {
        q <<= 1;
        if (n >= d) {
            n -= d;
            q |= 1;
        }
        d >>= 1;
    }
    return q;
}

/* round(num / den), ties away from zero; den == 0 gives +-2^60 (kernels.round_div). */
static inline int64_t snn_round_div(int64_t num, int64_t den)
{
    int neg = (num < 0) ^ (den < 0);
    uint64_t an = num < 0 ? (uint64_t)0 - (uint64_t)num : (uint64_t)num;
    uint64_t ad = den < 0 ? (uint64_t)0 - (uint64_t)den : (uint64_t)den;
    uint64_t q;
    if (ad == 0) {
        q = an == 0 ? 0 : ((uint64_t)1 << 60);
    } else {
        q = snn_udiv64(an + ad / 2, ad);
    }
    return neg ? -(int64_t)q : (int64_t)q;
}

static inline int64_t snn_abs64(int64_t x)
{
    return x < 0 ? -x : x;
}

#endif /* SNN_FIXED_H */
