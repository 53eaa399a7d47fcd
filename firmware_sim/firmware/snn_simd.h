/* Packed 16-bit SIMD of the Armv7E-M DSP extension (Cortex-M4/M7), as the generated convolutions use it.
 *
 * On a core with the DSP extension (__ARM_FEATURE_DSP, set by GCC for -mcpu=cortex-m4/m7) each
 * helper is the one instruction, written as inline assembly (Arm ARMv7-M Architecture Reference
 * Manual, DDI 0403E, A7.7: SMLAD, SMLALD, SXTB16). Elsewhere (the host test build, a core without
 * DSP that is nevertheless built with SNN_SIMD=1) the same helpers are portable C with the
 * instructions' exact results, so the host tests run the SIMD kernels bit for bit.
 *
 *   snn_smlad(x, y, a)    a + x.lo*y.lo + x.hi*y.hi     (signed 16x16 products, sum modulo 2^32)
 *   snn_smlald(x, y, a)   the same into a 64-bit accumulator (exact)
 *   snn_sxtb16(x)         (sext(byte0), sext(byte2)) as two 16-bit lanes
 *   snn_sxtb16_ror8(x)    (sext(byte1), sext(byte3))
 *
 * SMLAD's additions wrap modulo 2^32 (they set the Q flag, which nothing here reads). That is all a
 * convolution needs when its true result fits int32: addition modulo 2^32 is exact for any
 * intermediate overflow, so the final sum is right whenever the lowering's bound on it is below
 * 2^31 (`ir.conv`); wider accumulators use SMLALD. */
#ifndef SNN_SIMD_H
#define SNN_SIMD_H

#include <stdint.h>

#if defined(__ARM_FEATURE_DSP) && !defined(SNN_SIMD_PORTABLE)
static inline __attribute__((always_inline)) uint32_t snn_smlad(uint32_t x, uint32_t y, uint32_t a)
{
    uint32_t r;
    __asm__("smlad %0, %1, %2, %3" : "=r"(r) : "r"(x), "r"(y), "r"(a));
    return r;
}

static inline __attribute__((always_inline)) int64_t snn_smlald(uint32_t x, uint32_t y, int64_t a)
{
    uint32_t lo = (uint32_t)a, hi = (uint32_t)((uint64_t)a >> 32);
    __asm__("smlald %0, %1, %2, %3" : "+r"(lo), "+r"(hi) : "r"(x), "r"(y));
    return (int64_t)(((uint64_t)hi << 32) | lo);
}

static inline __attribute__((always_inline)) uint32_t snn_sxtb16(uint32_t x)
{
    uint32_t r;
    __asm__("sxtb16 %0, %1" : "=r"(r) : "r"(x));
    return r;
}

static inline __attribute__((always_inline)) uint32_t snn_sxtb16_ror8(uint32_t x)
{
    uint32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}
#else
static inline uint32_t snn_smlad(uint32_t x, uint32_t y, uint32_t a)
{
    int32_t lo = (int32_t)(int16_t)(uint16_t)x * (int32_t)(int16_t)(uint16_t)y;
    int32_t hi = (int32_t)(int16_t)(uint16_t)(x >> 16) * (int32_t)(int16_t)(uint16_t)(y >> 16);
    return a + (uint32_t)lo + (uint32_t)hi;
}

static inline int64_t snn_smlald(uint32_t x, uint32_t y, int64_t a)
{
    int64_t lo = (int64_t)(int16_t)(uint16_t)x * (int16_t)(uint16_t)y;
    int64_t hi = (int64_t)(int16_t)(uint16_t)(x >> 16) * (int16_t)(uint16_t)(y >> 16);
    return a + lo + hi;
}

static inline uint32_t snn_sxtb16(uint32_t x)
{
    return (uint32_t)(uint16_t)(int16_t)(int8_t)(uint8_t)x | ((uint32_t)(uint16_t)(int16_t)(int8_t)(uint8_t)(x >> 16) << 16);
}

static inline uint32_t snn_sxtb16_ror8(uint32_t x)
{
    return snn_sxtb16((x >> 8) | (x << 24));
}
#endif

/* A 32-bit word from a 4-byte aligned address: one LDR (the may_alias type keeps strict aliasing). */
typedef uint32_t snn_word __attribute__((may_alias));

static inline __attribute__((always_inline)) uint32_t snn_read32(const void *p)
{
    return *(const snn_word *)p;
}

/* A 32-bit word at any address (Armv7-M LDR/STR take unaligned addresses; a byte copy elsewhere). */
static inline __attribute__((always_inline)) uint32_t snn_read32u(const void *p)
{
    uint32_t v;
    __builtin_memcpy(&v, p, 4);
    return v;
}

static inline __attribute__((always_inline)) void snn_write32u(void *p, uint32_t v)
{
    __builtin_memcpy(p, &v, 4);
}

/* Four dot products over k4 taps (a multiple of 4): a[0] += w0.c0, a[1] += w0.c1, a[2] += w1.c0,
 * a[3] += w1.c1. Weights are int8 rows whose groups of 4 are stored (w0, w2, w1, w3), so SXTB16 and
 * SXTB16 ROR 8 of one word give the lanes (w0, w1) and (w2, w3); the columns are int16 taps in
 * their natural order. 2 output channels x 2 positions: each loaded lane pair is used twice. */
static inline __attribute__((always_inline)) void snn_dot2x2(const int8_t *w0, const int8_t *w1, const int16_t *c0,
                                                           const int16_t *c1, int32_t k4, uint32_t *a)
{
    uint32_t a00 = a[0], a01 = a[1], a10 = a[2], a11 = a[3];
#pragma GCC unroll 4
    for (int32_t k = 0; k < k4; k += 4) {
        uint32_t x0 = snn_read32(c0 + k), x1 = snn_read32(c1 + k);
        uint32_t y0 = snn_read32(c0 + k + 2), y1 = snn_read32(c1 + k + 2);
        uint32_t wa = snn_read32(w0 + k), wb = snn_read32(w1 + k);
        uint32_t wa01 = snn_sxtb16(wa), wa23 = snn_sxtb16_ror8(wa);
        a00 = snn_smlad(wa01, x0, a00);
        a00 = snn_smlad(wa23, y0, a00);
        a01 = snn_smlad(wa01, x1, a01);
        a01 = snn_smlad(wa23, y1, a01);
        uint32_t wb01 = snn_sxtb16(wb), wb23 = snn_sxtb16_ror8(wb);
        a10 = snn_smlad(wb01, x0, a10);
        a10 = snn_smlad(wb23, y0, a10);
        a11 = snn_smlad(wb01, x1, a11);
        a11 = snn_smlad(wb23, y1, a11);
    }
    a[0] = a00;
    a[1] = a01;
    a[2] = a10;
    a[3] = a11;
}

/* The same into 64-bit accumulators (SMLALD), for convolutions whose bound passes 2^31. */
static inline __attribute__((always_inline)) void snn_dot2x2_wide(const int8_t *w0, const int8_t *w1,
                                                                const int16_t *c0, const int16_t *c1, int32_t k4,
                                                                int64_t *a)
{
    for (int32_t k = 0; k < k4; k += 4) {
        uint32_t x0 = snn_read32(c0 + k), x1 = snn_read32(c1 + k);
        uint32_t y0 = snn_read32(c0 + k + 2), y1 = snn_read32(c1 + k + 2);
        uint32_t wa = snn_read32(w0 + k), wb = snn_read32(w1 + k);
        a[0] = snn_smlald(snn_sxtb16(wa), x0, a[0]);
        a[0] = snn_smlald(snn_sxtb16_ror8(wa), y0, a[0]);
        a[1] = snn_smlald(snn_sxtb16(wa), x1, a[1]);
        a[1] = snn_smlald(snn_sxtb16_ror8(wa), y1, a[1]);
        a[2] = snn_smlald(snn_sxtb16(wb), x0, a[2]);
        a[2] = snn_smlald(snn_sxtb16_ror8(wb), y0, a[2]);
        a[3] = snn_smlald(snn_sxtb16(wb), x1, a[3]);
        a[3] = snn_smlald(snn_sxtb16_ror8(wb), y1, a[3]);
    }
}

#endif /* SNN_SIMD_H */
