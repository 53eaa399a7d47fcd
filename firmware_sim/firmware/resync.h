/* The device side of the resynchronisation exchange (docs/PROTOCOL.md 4.7): how a device with no
 * counter it may use (no state, a state for another key, its limit reached, or told ERROR RESYNC)
 * gets back into service without ever reusing a counter. No frame counter, no encrypted payload:
 *
 *   RESYNC(nonce) -> OFFER(S, status) -> CONFIRM(S') -> ACK(S') -> next = S', written durably
 *
 * A fresh 40-bit nonce per attempt (state.h's snn_entropy), at most SNN_RESYNC_ATTEMPTS attempts
 * with a randomised back-off that doubles, an attempt abandoned after 16 frames failing their MIC,
 * and a CONFIRM resent (it is idempotent) until its ACK comes. */
#ifndef SNN_RESYNC_H
#define SNN_RESYNC_H

#include <stdint.h>

#include "counter_store.h"

#define SNN_RESYNC_ATTEMPTS 3u
#define SNN_RESYNC_CONFIRMS 3u
#define SNN_RESYNC_MAX_BAD 16u

enum { SNN_RESYNC_OK = 0, SNN_RESYNC_NO_ANSWER = 1, SNN_RESYNC_REKEY = 2, SNN_RESYNC_STORE = 3 };

/* Run the exchange (each wait `timeout_ms`; each frame `copies` times: the copies the rule gives
 * the next DATA transmission, lowered to 15 c <= MTU, docs/PROTOCOL.md 3.3); SNN_RESYNC_OK once the committed start is written to
 * the store (which then hands out counters from it), SNN_RESYNC_REKEY when the edge says the device
 * must get a new key (NO_STATE without a state of its own, EXHAUSTED). */
int snn_resync(snn_counter_store_t *store, uint32_t timeout_ms, unsigned copies);

/* The caller's pump: read the UART so that the link's received frames arrive (main.c). */
void snn_pump(void);

#endif
