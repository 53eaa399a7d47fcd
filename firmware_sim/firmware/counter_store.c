/* The write-ahead frame counter over the persistent record (counter_store.h). */
#include "counter_store.h"

static uint32_t plus_gap(uint32_t b)
{
    return b > 0xFFFFFFFFu - SNN_MAX_GAP ? 0xFFFFFFFFu : b + SNN_MAX_GAP;
}

int snn_counter_open(snn_counter_store_t *s, uint32_t key_check)
{
    uint32_t next = 0, limit = 0;
    int r = snn_state_open(key_check, &next, &limit);
    s->have = r == 1;
    s->next = s->written = next;
    s->limit = s->limit_written = limit;
    return r;
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
        if (snn_state_save(ahead, s->limit) != 0) {
            return SNN_COUNTER_FLASH_ERROR;
        }
        s->written = ahead;
        s->limit_written = s->limit;
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

int snn_counter_flush(snn_counter_store_t *s)
{
    if (!s->have || (s->next == s->written && s->limit == s->limit_written)) {
        return 0;
    }
    if (snn_state_save(s->next, s->limit) != 0) {
        return SNN_COUNTER_FLASH_ERROR;
    }
    s->written = s->next;
    s->limit_written = s->limit;
    return 0;
}

int snn_counter_start(snn_counter_store_t *s, uint32_t start)
{
    uint32_t limit = start == 0 ? SNN_MAX_GAP - 1u : plus_gap(start - 1u);
    if (snn_state_save(start, limit) != 0) {
        return SNN_COUNTER_FLASH_ERROR;
    }
    s->have = 1;
    s->next = s->written = start;
    s->limit = s->limit_written = limit;
    return SNN_COUNTER_OK;
}
