/* AES-CMAC (NIST SP 800-38B, RFC 4493) over AES-128: the frame MIC (truncated by the caller). */
#ifndef SNN_CMAC_H
#define SNN_CMAC_H

#include <stddef.h>
#include <stdint.h>

#include "aes.h"

void snn_aes_cmac(const snn_aes128_t *ctx, const uint8_t *msg, size_t n, uint8_t tag[16]);

#endif
