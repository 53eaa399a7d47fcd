#include "pack.h"

size_t snn_pack_symbols(const uint8_t *symbols, size_t n, unsigned bits, int gray, uint8_t *out)
{
    size_t nbytes = (n * bits + 7) / 8;
    uint32_t acc = 0;
    unsigned have = 0;
    size_t o = 0;
    for (size_t i = 0; i < nbytes; i++) {
        out[i] = 0;
    }
    for (size_t i = 0; i < n; i++) {
        uint32_t code = symbols[i];
        if (gray) {
            code ^= code >> 1;
        }
        acc = (acc << bits) | (code & ((1u << bits) - 1));
        have += bits;
        while (have >= 8) {
            have -= 8;
            out[o++] = (uint8_t)(acc >> have);
        }
        acc &= (1u << have) - 1;
    }
    if (have) {
        out[o] = (uint8_t)(acc << (8 - have));
    }
    return nbytes;
}
