/* The resynchronisation exchange, device side (resync.h; docs/PROTOCOL.md 4.7). */
#include "resync.h"

#include "board.h"
#include "link.h"
#include "proto.h"
#include "snn_config.h"

#define STATUS_OK 0u
#define STATUS_NO_STATE 1u
#define KIND_OFFER 2u
#define KIND_ACK 3u

static uint8_t out_buf[1u + 5u * SNN_CONTROL_BLOCK_BYTES];   /* one byte of room for the UART link's tag */
static uint8_t in_buf[5u * SNN_CONTROL_BLOCK_BYTES];

/* Wait up to timeout_ms for an OFFER/ACK of this nonce of `kind` (and, for an ACK, `start`).
 * 1 with *got filled, 0 on timeout, -1 when too many frames failed their MIC (abandon the attempt). */
static int await(const uint8_t nonce[SNN_NONCE_BYTES], unsigned kind, uint32_t start, uint32_t timeout_ms,
                 snn_control_t *got)
{
    uint64_t deadline = snn_ticks() + (uint64_t)timeout_ms * (SNN_CPU_HZ / 1000u);
    unsigned bad = 0;
    while (snn_ticks() < deadline) {
        snn_pump();
        int n = snn_link_recv(in_buf, sizeof in_buf);
        if (n <= 0) {
            continue;
        }
        int r = snn_proto_parse_control(in_buf, (size_t)n, nonce, got);
        if (r < 0 && ++bad >= SNN_RESYNC_MAX_BAD) {
            return -1;
        }
        if (r == 1 && got->kind == kind && (kind != KIND_ACK || (got->start == start && got->status == STATUS_OK))) {
            return 1;
        }
    }
    return 0;
}

static void back_off(unsigned attempt, uint32_t timeout_ms)
{
    uint8_t r = 0;
    snn_entropy(&r, 1);
    /* timeout x 2^attempt x U(0.5, 1.5) */
    uint64_t ms = ((uint64_t)timeout_ms << attempt) * (128u + r) / 256u;
    uint64_t until = snn_ticks() + ms * (SNN_CPU_HZ / 1000u);
    while (snn_ticks() < until) {
        snn_pump();
    }
}

int snn_resync(snn_counter_store_t *store, uint32_t timeout_ms, unsigned copies)
{
    for (unsigned attempt = 0; attempt < SNN_RESYNC_ATTEMPTS; attempt++) {
        if (attempt) {
            back_off(attempt, timeout_ms);
        }
        uint8_t nonce[SNN_NONCE_BYTES];
        if (snn_entropy(nonce, SNN_NONCE_BYTES) != 0) {
            return SNN_RESYNC_STORE;
        }
        size_t n = snn_proto_resync_frame(out_buf + 1, nonce, copies);
        snn_link_send(out_buf + 1, n);
        snn_control_t offer;
        if (await(nonce, KIND_OFFER, 0, timeout_ms, &offer) != 1) {
            continue;
        }
        uint32_t start;
        if (offer.status == STATUS_OK) {
            start = store->have && store->next > offer.start ? store->next : offer.start;
        } else if (offer.status == STATUS_NO_STATE && store->have) {
            start = store->next;          /* the edge lost the history: confirm our own next counter */
        } else {
            return SNN_RESYNC_REKEY;      /* NO_STATE without a state of our own, or EXHAUSTED */
        }
        n = snn_proto_confirm_frame(out_buf + 1, nonce, start, copies);
        for (unsigned k = 0; k < SNN_RESYNC_CONFIRMS; k++) {
            snn_link_send(out_buf + 1, n);
            snn_control_t ack;
            int r = await(nonce, KIND_ACK, start, timeout_ms, &ack);
            if (r < 0) {
                break;
            }
            if (r == 1) {
                if (snn_counter_start(store, start) != SNN_COUNTER_OK) {
                    return SNN_RESYNC_STORE;
                }
                snn_proto_restart();      /* the first DATA after the exchange: the long counter */
                return SNN_RESYNC_OK;
            }
        }
    }
    return SNN_RESYNC_NO_ANSWER;
}
