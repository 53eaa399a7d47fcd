/* The write-ahead frame counter over the flash journal (counter_store.h). */
#include "counter_store.h"

static uint32_t plus_gap(uint32_t b)
{
    return b > 0xFFFFFFFFu - SNN_MAX_GAP ? 0xFFFFFFFFu : b + SNN_MAX_GAP;
}

int snn_counter_open(snn_counter_store_t *s, uint32_t sector0, uint32_t sector1, uint32_t sector_bytes,
                     uint32_t key_check)
{
    s->have = snn_journal_open(&s->journal, sector0, sector1, sector_bytes, key_check);
    s->next = s->written = s->journal.next;
    s->limit = s->journal.limit;
    return s->have;
}

int snn_counter_take(snn_counter_store_t *s, uint32_t *counter)
{
    if (!s->have) {
        return SNN_COUNTER_NO_STATE;
    }
    uint32_t n = s->next;
    if (n > SNN_COUNTER_LAST) {
        return SNN_COUNTER_EXHAUSTED;
    }
    if (n > s->limit) {
        return SNN_COUNTER_AT_LIMIT;
    }
    if (n >= s->written) {                      /* write ahead before using n */
        uint32_t ahead = n > SNN_COUNTER_LAST - SNN_COUNTER_AHEAD ? SNN_COUNTER_LAST + 1u : n + SNN_COUNTER_AHEAD;
        if (snn_journal_write(&s->journal, ahead, s->limit) != 0) {
            return SNN_COUNTER_FLASH_ERROR;
        }
        s->written = ahead;
    }
    s->next = n + 1u;
    *counter = n;
    return SNN_COUNTER_OK;
}

void snn_counter_vouch(snn_counter_store_t *s, uint32_t b)
{
    uint32_t l = plus_gap(b);
    if (l > s->limit) {
        s->limit = l;
    }
}

int snn_counter_start(snn_counter_store_t *s, uint32_t start)
{
    uint32_t limit = start == 0 ? SNN_MAX_GAP - 1u : plus_gap(start - 1u);
    if (snn_journal_write(&s->journal, start, limit) != 0) {
        return SNN_COUNTER_FLASH_ERROR;
    }
    s->have = 1;
    s->next = s->written = start;
    s->limit = limit;
    return SNN_COUNTER_OK;
}
