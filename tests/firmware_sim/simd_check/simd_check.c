/* The DSP intrinsics of firmware/snn_simd.h over edge and pseudo-random operands, folded into one
 * FNV-1a hash: built for a Cortex-M (the real SMLAD/SMLALD/SXTB16, run under QEMU) and for the
 * host (the portable C), the two hashes must be equal (tests/firmware_sim/test_simd.py). */
#include <stdint.h>
#include "snn_simd.h"

static uint32_t next(uint32_t *s) { *s = *s * 1664525u + 1013904223u; return *s ^ (*s >> 15); }

static uint64_t fold(uint64_t h, uint64_t v) { return (h ^ v) * 1099511628211ull; }

uint64_t snn_simd_check(void)
{
    uint32_t s = 12345u;
    uint64_t h = 1469598103934665603ull;
    static const uint32_t edge[] = {0u, 0x80008000u, 0x7FFF7FFFu, 0xFFFFFFFFu, 0x80007FFFu, 0x00018000u, 0x807F80FFu};
    for (int i = 0; i < 4000; i++) {
        uint32_t x = next(&s), y = next(&s), a = next(&s);
        if (i < 49) { x = edge[i % 7]; y = edge[i / 7]; }
        int64_t b = (int64_t)(((uint64_t)next(&s) << 32) | next(&s));
        h = fold(h, snn_smlad(x, y, a));
        h = fold(h, (uint64_t)snn_smlald(x, y, b));
        h = fold(h, snn_sxtb16(x));
        h = fold(h, snn_sxtb16_ror8(y));
    }
    int8_t w[2][36] __attribute__((aligned(4)));
    int16_t c[2][36] __attribute__((aligned(4)));
    for (int r = 0; r < 50; r++) {
        for (int k = 0; k < 36; k++) {
            w[0][k] = (int8_t)next(&s); w[1][k] = (int8_t)next(&s);
            c[0][k] = (int16_t)next(&s); c[1][k] = (int16_t)next(&s);
            if (r == 0) { w[0][k] = w[1][k] = -128; c[0][k] = c[1][k] = -32768; }
        }
        uint32_t a[4] = {next(&s), 0, 0, 0};
        int64_t aw[4] = {0, 0, 0, (int64_t)next(&s)};
        snn_dot2x2(w[0], w[1], c[0], c[1], 36, a);
        snn_dot2x2_wide(w[0], w[1], c[0], c[1], 36, aw);
        for (int k = 0; k < 4; k++) { h = fold(h, a[k]); h = fold(h, (uint64_t)aw[k]); }
    }
    return h;
}
