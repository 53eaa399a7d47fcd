/* The counter record in the board's flash journal (journal.h), two sectors the linker script
 * leaves out of the image (SNN_JOURNAL_SECTOR0/1, SNN_JOURNAL_SECTOR_BYTES: build.py). */
#include "journal.h"
#include "state.h"

#if !defined(SNN_STATE_HARNESS)
static snn_journal_t journal;

int snn_state_open(uint32_t key_check, uint32_t *next, uint32_t *limit)
{
    int have = snn_journal_open(&journal, SNN_JOURNAL_SECTOR0, SNN_JOURNAL_SECTOR1, SNN_JOURNAL_SECTOR_BYTES,
                                key_check);
    *next = journal.next;
    *limit = journal.limit;
    return have;
}

int snn_state_save(uint32_t next, uint32_t limit)
{
    return snn_journal_write(&journal, next, limit);
}
#endif
