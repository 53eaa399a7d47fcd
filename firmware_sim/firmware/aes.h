/* AES-128 (FIPS-197), encryption only: what AES-CTR (payload) and AES-CMAC (MIC) need.
 * Byte-oriented, table-free except the S-box, constant in code size (~1 KB on Cortex-M). */
#ifndef SNN_AES_H
#define SNN_AES_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint8_t round_keys[176];
} snn_aes128_t;

void snn_aes128_init(snn_aes128_t *ctx, const uint8_t key[16]);
void snn_aes128_encrypt(const snn_aes128_t *ctx, const uint8_t in[16], uint8_t out[16]);

/* XOR n bytes with the AES-CTR keystream from `counter` (a 128-bit big-endian block, incremented
 * per block as NIST SP 800-38A does); counter is left at the next unused block. In place is fine. */
void snn_aes128_ctr(const snn_aes128_t *ctx, uint8_t counter[16], const uint8_t *in, uint8_t *out, size_t n);

#endif
