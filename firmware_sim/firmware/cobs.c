#include "cobs.h"

size_t snn_cobs_encode(const uint8_t *src, size_t n, uint8_t *dst)
{
    size_t out = 1, code_at = 0;
    uint8_t code = 1;
    for (size_t i = 0; i < n; i++) {
        if (src[i] == 0) {
            dst[code_at] = code;
            code_at = out++;
            code = 1;
            continue;
        }
        dst[out++] = src[i];
        if (++code == 0xFF) {
            dst[code_at] = code;
            code_at = out++;
            code = 1;
        }
    }
    dst[code_at] = code;
    return out;
}

int snn_cobs_decode(uint8_t *buf, size_t n)
{
    size_t i = 0, out = 0;
    if (n == 0) {
        return -1;
    }
    while (i < n) {
        uint8_t code = buf[i];
        if (code == 0 || i + code > n) {
            return -1;
        }
        for (size_t k = 1; k < code; k++) {
            if (buf[i + k] == 0) {
                return -1;
            }
            buf[out++] = buf[i + k];
        }
        i += code;
        if (code != 0xFF && i < n) {
            buf[out++] = 0;
        }
    }
    return (int)out;
}
