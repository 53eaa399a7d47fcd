/* A power-cut-safe, wear-spreading journal of the device's counter record in NOR flash.
 *
 * Layout. Two flash sectors used in turn. Each holds 16-byte records appended from its start:
 *
 *     word 0  seq    record sequence number, +1 per record, across both sectors
 *     word 1  next   the next frame counter the device may use
 *     word 2  limit  its transmit limit L (docs/PROTOCOL.md 4.3)
 *     word 3  check  CRC-32 of (key_check, seq, next, limit); never 0xFFFFFFFF
 *
 * The words are programmed in that order, the check last. NOR flash erases to 0xFF and programming
 * only clears bits, so a cut while a record is written leaves its check word either erased
 * (0xFFFFFFFF, never a valid check) or with fewer bits cleared than the true check (not equal to
 * it): a torn record never validates, and the previous record stands. The record with the highest
 * seq among valid ones is the state; `key_check` (derived from the device key) folds the key into
 * every check, so a record written under another key is no state for this one.
 *
 * Appending. The next record goes to the first fully erased slot after the latest record (a torn
 * slot is skipped, never programmed over). When the sector holding the latest record is full, the
 * other sector is erased and the record written there: the sector being erased never holds the
 * latest record, so a cut during an erase loses nothing (the half-erased sector's surviving old
 * records have lower seq; erasing only sets bits, so it can only raise their values, which a
 * CRC check rejects). Wear: each sector is erased once per (sector bytes / 16) records.
 *
 * The flash is reached through the snn_flash_* functions (the board's driver; a NOR-flash model in
 * the host tests, tests/firmware_sim/test_journal.py, which cuts the power at every program and
 * erase step). */
#ifndef SNN_JOURNAL_H
#define SNN_JOURNAL_H

#include <stdint.h>

#define SNN_JOURNAL_RECORD_BYTES 16u

/* The board's flash: read a word, program a word (only clears bits), erase the sector at addr. */
uint32_t snn_flash_read(uint32_t addr);
int snn_flash_program(uint32_t addr, uint32_t value);
int snn_flash_erase(uint32_t sector_addr);

typedef struct {
    uint32_t sector[2];        /* start addresses of the two sectors */
    uint32_t sector_bytes;     /* their size (a multiple of 16) */
    uint32_t key_check;
    int have;                  /* a valid record was found / written */
    uint32_t seq, next, limit; /* the latest record */
    int active;                /* the sector holding it */
    uint32_t slot;             /* address of the next slot to try */
} snn_journal_t;

/* Scan both sectors; 1 with a state (j->next, j->limit), 0 with none for this key. */
int snn_journal_open(snn_journal_t *j, uint32_t sector0, uint32_t sector1, uint32_t sector_bytes,
                     uint32_t key_check);
/* Append (next, limit) durably: 0 once it is in flash, -1 on a flash error. */
int snn_journal_write(snn_journal_t *j, uint32_t next, uint32_t limit);

#endif
