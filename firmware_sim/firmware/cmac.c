#include "cmac.h"

static void double_block(const uint8_t in[16], uint8_t out[16])
{
    uint8_t carry = in[0] >> 7;
    for (int i = 0; i < 15; i++) {
        out[i] = (uint8_t)((in[i] << 1) | (in[i + 1] >> 7));
    }
    out[15] = (uint8_t)((in[15] << 1) ^ (carry ? 0x87 : 0));
}

void snn_aes_cmac(const snn_aes128_t *ctx, const uint8_t *msg, size_t n, uint8_t tag[16])
{
    uint8_t l[16] = {0}, k1[16], k2[16], x[16] = {0}, last[16];
    snn_aes128_encrypt(ctx, l, l);
    double_block(l, k1);
    double_block(k1, k2);
    size_t blocks = n == 0 ? 1 : (n + 15) / 16;
    int complete = n != 0 && n % 16 == 0;
    for (size_t b = 0; b + 1 < blocks; b++) {
        for (int i = 0; i < 16; i++) {
            x[i] ^= msg[16 * b + i];
        }
        snn_aes128_encrypt(ctx, x, x);
    }
    size_t off = 16 * (blocks - 1), rest = n - off;
    for (int i = 0; i < 16; i++) {
        if (complete) {
            last[i] = msg[off + i] ^ k1[i];
        } else {
            uint8_t m = (size_t)i < rest ? msg[off + i] : ((size_t)i == rest ? 0x80 : 0);
            last[i] = m ^ k2[i];
        }
        x[i] ^= last[i];
    }
    snn_aes128_encrypt(ctx, x, tag);
}
