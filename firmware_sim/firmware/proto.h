/* The protocol as the firmware's main loop sees it: send one transmission of an inference, parse
 * the edge's answer. One implementation per protocol version (proto_v2.c today), chosen by the
 * build; main.c does not change when the wire format does. */
#ifndef SNN_PROTO_H
#define SNN_PROTO_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint8_t kind;        /* 1 REPLY, 2 ERROR */
    uint8_t label;       /* REPLY: class index; ERROR: error code */
    uint8_t confidence;  /* REPLY: x 255 */
    uint16_t ber;        /* REPLY: the BER code byte */
    uint16_t retry_ms;   /* ERROR BUSY: retry after (v2) */
} snn_reply_t;

typedef void (*snn_emit_fn)(const uint8_t *frame, size_t n);

/* Key schedule, tables. */
void snn_proto_init(void);

/* The next unused frame counter, from the device's non-volatile store. */
void snn_proto_set_counter(uint32_t next);
uint32_t snn_proto_counter(void);

/* Build and emit the frames of one transmission of inference `seq` (attempt 0 is the first,
 * later attempts are resends). `scratch` holds one frame (SNN_MTU bytes). Returns the frame count. */
unsigned snn_proto_transmit(uint16_t seq, unsigned attempt, const uint8_t *payload, size_t nbytes,
                            uint16_t payload_bits, uint8_t truth, uint8_t *scratch, snn_emit_fn emit);

/* 1: the answer to a pending transmission (filled into *out); 0: a frame for someone else;
 * -1: damaged, unauthentic or not an answer (dropped). */
int snn_proto_parse(const uint8_t *buf, size_t n, snn_reply_t *out);

/* The protocol version this build speaks (1 or 2). */
unsigned snn_proto_version(void);

#endif
