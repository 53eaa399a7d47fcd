/* Protocol framing, v1 (docs/PROTOCOL.md; reference codec/frame.py): the one module that knows
 * the header layout. Swapping the protocol version means swapping this file and frame.c. */
#ifndef SNN_FRAME_H
#define SNN_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define SNN_FRAME_HEADER_BYTES 31u   /* 17 header bytes, CRC-16, 12 Reed-Solomon parity bytes */
#define SNN_FRAME_MAX_PILOTS 32u
#define SNN_NO_TRUTH 0xFFu

typedef struct {
    uint8_t kind;        /* 1 REPLY, 2 ERROR */
    uint8_t label;       /* REPLY: class index; ERROR: error code */
    uint8_t confidence;  /* x 255 */
    uint16_t ber_e5;     /* the edge's BER estimate x 1e5 */
} snn_reply_t;

/* CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF). */
uint16_t snn_crc16(const uint8_t *data, size_t n);

/* The 12 RS(255,243) parity bytes (GF(2^8), 0x11D, roots alpha^0..alpha^11) of n message bytes. */
void snn_rs_parity(const uint8_t *msg, size_t n, uint8_t parity[12]);

/* The first n bytes of the PN9 pilot sequence. */
void snn_pilots(uint8_t *out, size_t n);

/* One DATA frame: header block + pilots + this fragment's payload slice. Returns its length. */
size_t snn_frame_data(uint8_t *out, const uint8_t fingerprint[4], uint16_t device_id, uint16_t seq,
                      unsigned frag_index, unsigned frag_count, uint16_t payload_bits, unsigned pilot_len,
                      uint8_t truth, const uint8_t *slice, size_t slice_len);

/* Parse a frame from the edge: 1 = a REPLY or ERROR for (device_id, seq) filled into *out,
 * 0 = a valid frame for someone else, -1 = damaged or not a reply (CRC checks only). */
int snn_frame_parse_reply(const uint8_t *buf, size_t n, const uint8_t fingerprint[4], uint16_t device_id,
                          uint16_t seq, snn_reply_t *out);

#endif
