/* The device's frame counter on a board: the rule of docs/PROTOCOL.md 4.3 over the flash journal.
 *
 * Before counter N is used the journal holds a `next` > N: it is written ahead by
 * SNN_COUNTER_AHEAD (256) and then N, N+1, ... are used; so a cut at any instant skips at most
 * that many counters and never reuses one. The transmit limit L (= the highest counter a REPLY
 * vouched for + MAX_GAP) is kept in RAM and written with the next record: lost in a cut, the
 * older L in flash is lower, i.e. stricter. The C device leaves the last counter, 2^32 - 1, unused
 * (its record holds next in 32 bits). */
#ifndef SNN_COUNTER_STORE_H
#define SNN_COUNTER_STORE_H

#include <stdint.h>

#include "journal.h"

#define SNN_COUNTER_AHEAD 256u
#define SNN_MAX_GAP 16384u
#define SNN_COUNTER_LAST 0xFFFFFFFEu

enum { SNN_COUNTER_OK = 0, SNN_COUNTER_NO_STATE = 1, SNN_COUNTER_AT_LIMIT = 2, SNN_COUNTER_EXHAUSTED = 3,
       SNN_COUNTER_FLASH_ERROR = -1 };

typedef struct {
    snn_journal_t journal;
    int have;
    uint32_t next;       /* the next counter to hand out */
    uint32_t written;    /* the next value in flash: counters below it may have been used */
    uint32_t limit;
} snn_counter_store_t;

/* Read the state from flash; 1 with one, 0 without (the device must resynchronise first). */
int snn_counter_open(snn_counter_store_t *s, uint32_t sector0, uint32_t sector1, uint32_t sector_bytes,
                     uint32_t key_check);
/* The next counter to transmit with (written ahead first), or why there is none. */
int snn_counter_take(snn_counter_store_t *s, uint32_t *counter);
/* A REPLY authenticated for counter b: the limit rises to b + MAX_GAP (written with the next record). */
void snn_counter_vouch(snn_counter_store_t *s, uint32_t b);
/* A resynchronisation committed start S: next = S, limit = S - 1 + MAX_GAP, written at once. */
int snn_counter_start(snn_counter_store_t *s, uint32_t start);

#endif
