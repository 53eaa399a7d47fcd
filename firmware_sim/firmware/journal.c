/* The counter journal in NOR flash (see journal.h for the layout and why a cut at any instant is safe). */
#include "journal.h"

static uint32_t crc32_word(uint32_t crc, uint32_t w)
{
    for (int i = 0; i < 4; i++) {
        crc ^= (w >> (8 * i)) & 0xFFu;
        for (int k = 0; k < 8; k++) {
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));   /* CRC-32 (IEEE 802.3), reflected */
        }
    }
    return crc;
}

static uint32_t check_of(uint32_t key_check, uint32_t seq, uint32_t next, uint32_t limit)
{
    uint32_t c = 0xFFFFFFFFu;
    c = crc32_word(c, key_check);
    c = crc32_word(c, seq);
    c = crc32_word(c, next);
    c = crc32_word(c, limit);
    c = ~c;
    return c == 0xFFFFFFFFu ? 0xFFFFFFFEu : c;        /* an erased word is never a valid check */
}

static int erased(uint32_t addr)
{
    for (uint32_t k = 0; k < SNN_JOURNAL_RECORD_BYTES; k += 4u) {
        if (snn_flash_read(addr + k) != 0xFFFFFFFFu) {
            return 0;
        }
    }
    return 1;
}

/* the first erased slot at or after addr in the sector starting at base, or 0 if none */
static uint32_t free_slot(const snn_journal_t *j, uint32_t base, uint32_t addr)
{
    for (; addr + SNN_JOURNAL_RECORD_BYTES <= base + j->sector_bytes; addr += SNN_JOURNAL_RECORD_BYTES) {
        if (erased(addr)) {
            return addr;
        }
    }
    return 0;
}

int snn_journal_open(snn_journal_t *j, uint32_t sector0, uint32_t sector1, uint32_t sector_bytes,
                     uint32_t key_check)
{
    j->sector[0] = sector0;
    j->sector[1] = sector1;
    j->sector_bytes = sector_bytes;
    j->key_check = key_check;
    j->have = 0;
    j->seq = j->next = j->limit = 0;
    j->active = 0;
    j->slot = sector0;
    uint32_t latest = 0;
    for (int s = 0; s < 2; s++) {
        for (uint32_t a = j->sector[s]; a + SNN_JOURNAL_RECORD_BYTES <= j->sector[s] + sector_bytes;
             a += SNN_JOURNAL_RECORD_BYTES) {
            uint32_t seq = snn_flash_read(a), next = snn_flash_read(a + 4u), limit = snn_flash_read(a + 8u);
            if (snn_flash_read(a + 12u) != check_of(key_check, seq, next, limit)) {
                continue;
            }
            if (!j->have || seq > j->seq) {
                j->have = 1;
                j->seq = seq;
                j->next = next;
                j->limit = limit;
                j->active = s;
                latest = a;
            }
        }
    }
    if (j->have) {
        j->slot = latest + SNN_JOURNAL_RECORD_BYTES;
    } else {
        /* no record for this key: start in whichever sector has room (a record of another key may remain) */
        j->active = 0;
        j->slot = j->sector[0];
    }
    return j->have;
}

int snn_journal_write(snn_journal_t *j, uint32_t next, uint32_t limit)
{
    uint32_t base = j->sector[j->active];
    uint32_t slot = free_slot(j, base, j->slot);
    if (slot == 0) {
        /* the active sector is full (or torn to its end): the other one, erased, takes over */
        int other = 1 - j->active;
        if (snn_flash_erase(j->sector[other]) != 0) {
            return -1;
        }
        j->active = other;
        base = j->sector[other];
        slot = free_slot(j, base, base);
        if (slot == 0) {
            return -1;
        }
    }
    uint32_t seq = j->have ? j->seq + 1u : 1u;
    if (snn_flash_program(slot, seq) != 0 || snn_flash_program(slot + 4u, next) != 0 ||
        snn_flash_program(slot + 8u, limit) != 0 ||
        snn_flash_program(slot + 12u, check_of(j->key_check, seq, next, limit)) != 0) {
        j->slot = slot + SNN_JOURNAL_RECORD_BYTES;      /* that slot is spent, valid or not */
        return -1;
    }
    if (snn_flash_read(slot + 12u) != check_of(j->key_check, seq, next, limit) ||
        snn_flash_read(slot + 4u) != next || snn_flash_read(slot + 8u) != limit) {
        j->slot = slot + SNN_JOURNAL_RECORD_BYTES;      /* verify: a weak program counts as a failure */
        return -1;
    }
    j->have = 1;
    j->seq = seq;
    j->next = next;
    j->limit = limit;
    j->slot = slot + SNN_JOURNAL_RECORD_BYTES;
    return 0;
}
