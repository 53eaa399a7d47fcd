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
    uint32_t counter;    /* the counter of the request it answers (a REPLY vouches for it, 4.3) */
} snn_reply_t;

/* A control frame of the resynchronisation exchange (docs/PROTOCOL.md 4.7). */
typedef struct {
    uint8_t kind;        /* 2 OFFER, 3 ACK */
    uint8_t status;      /* 0 OK, 1 NO_STATE, 2 EXHAUSTED */
    uint32_t start;
} snn_control_t;

#define SNN_NONCE_BYTES 5u
#define SNN_CONTROL_BLOCK_BYTES 15u

typedef void (*snn_emit_fn)(const uint8_t *frame, size_t n);

/* Key schedule, tables. */
void snn_proto_init(void);

/* The next unused frame counter, from the device's non-volatile store. */
void snn_proto_set_counter(uint32_t next);
uint32_t snn_proto_counter(void);

/* Build and emit the frames of one transmission of inference `seq` (attempt 0 is the first,
 * later attempts are resends) with `copies` header copies in `fragments` fragments (the copies
 * rule's plan, copies.h; 0 fragments: the fewest that fit). `scratch` holds one frame (SNN_MTU
 * bytes). Returns the frame count. */
unsigned snn_proto_transmit(uint16_t seq, unsigned attempt, const uint8_t *payload, size_t nbytes,
                            uint16_t payload_bits, uint8_t truth, unsigned copies, unsigned fragments,
                            uint8_t *scratch, snn_emit_fn emit);
/* Whether that transmission carries the long counter (the first after start or a resync, resends). */
int snn_proto_long_counter(unsigned attempt);

/* 1: the answer to a pending transmission (filled into *out); 0: a frame for someone else;
 * -1: damaged, unauthentic or not an answer (dropped). */
int snn_proto_parse(const uint8_t *buf, size_t n, snn_reply_t *out);

/* The next DATA frame carries the long counter (the first after a resynchronisation, 4.7). */
void snn_proto_restart(void);

/* RESYNC and CONFIRM frames (copies identical 15-byte blocks); the frame's length. No counter. */
size_t snn_proto_resync_frame(uint8_t *out, const uint8_t nonce[SNN_NONCE_BYTES], unsigned copies);
size_t snn_proto_confirm_frame(uint8_t *out, const uint8_t nonce[SNN_NONCE_BYTES], uint32_t start, unsigned copies);
/* 1: an OFFER or ACK of the exchange of `nonce` (filled into *out); 0: not a control frame
 * (another length); -1: damaged, reserved bits set, another kind, or not authentic. */
int snn_proto_parse_control(const uint8_t *buf, size_t n, const uint8_t nonce[SNN_NONCE_BYTES], snn_control_t *out);

/* 4 bytes that depend on the device key alone (AES of a constant block): binds the flash journal's
 * records to this key, so a record of another key is no state for it (journal.h). */
uint32_t snn_proto_key_check(void);

/* The protocol version this build speaks (1 or 2). */
unsigned snn_proto_version(void);

#endif
