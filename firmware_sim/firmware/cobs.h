/* COBS byte framing for the UART (Cheshire & Baker 1999; docs/PROTOCOL.md section 3). */
#ifndef SNN_COBS_H
#define SNN_COBS_H

#include <stddef.h>
#include <stdint.h>

/* Encode n bytes of src into dst (room: n + n / 254 + 1); returns the encoded length (no delimiter). */
size_t snn_cobs_encode(const uint8_t *src, size_t n, uint8_t *dst);

/* Decode n COBS bytes (without the 0x00 delimiter) in place; returns the length, or -1 when malformed. */
int snn_cobs_decode(uint8_t *buf, size_t n);

#endif
