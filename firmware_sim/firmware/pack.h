/* Gray-coded fixed-length symbol packing (codec/packing.py; docs/PROTOCOL.md section 1). */
#ifndef SNN_PACK_H
#define SNN_PACK_H

#include <stddef.h>
#include <stdint.h>

/* Pack n symbol indices of `bits` bits each, Gray-coded when gray != 0, MSB first, into
 * ceil(n * bits / 8) bytes (last byte zero-padded). Returns the byte count. */
size_t snn_pack_symbols(const uint8_t *symbols, size_t n, unsigned bits, int gray, uint8_t *out);

#endif
