/* A NOR flash for firmware/journal.c on the host (tests/firmware_sim/test_journal.py): two small
 * sectors that erase to 0xFF and whose program only clears bits, and power cuts. Every program
 * and every erase is one step; when the step numbered in the cut list comes, it is done only in
 * part (a program clears a random subset of the bits it should; an erase erases a random prefix
 * of the sector and sets random bits of the next word) and the power goes: longjmp back to the
 * scenario, which "reboots" (opens the journal again from flash) and goes on. After every reboot
 * the scenario checks that no counter it ever used is handed out again. */
#include <setjmp.h>
#include <stdint.h>
#include <string.h>

#include "counter_store.h"

#define SECTOR_BYTES 256u
#define BASE 0x1000u
static uint32_t mem[2 * SECTOR_BYTES / 4];
static uint32_t rng_state;
static long step, cuts[16];
static int n_cuts, next_cut;
static jmp_buf power;
static long erases[2];

static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}

static uint32_t *word(uint32_t addr)
{
    return &mem[(addr - BASE) / 4];
}

static int cut_now(void)
{
    step++;
    return next_cut < n_cuts && step == cuts[next_cut];
}

uint32_t snn_flash_read(uint32_t addr)
{
    return *word(addr);
}

int snn_flash_program(uint32_t addr, uint32_t value)
{
    if (cut_now()) {
        next_cut++;
        *word(addr) &= value | rnd();          /* some of the bits that should clear did */
        longjmp(power, 1);
    }
    *word(addr) &= value;
    return 0;
}

int snn_flash_erase(uint32_t sector_addr)
{
    uint32_t *w = word(sector_addr);
    int s = (sector_addr - BASE) / SECTOR_BYTES;
    if (cut_now()) {
        next_cut++;
        uint32_t upto = rnd() % (SECTOR_BYTES / 4);
        for (uint32_t i = 0; i < upto; i++) {
            w[i] = 0xFFFFFFFFu;
        }
        w[upto] |= rnd();
        longjmp(power, 1);
    }
    for (uint32_t i = 0; i < SECTOR_BYTES / 4; i++) {
        w[i] = 0xFFFFFFFFu;
    }
    erases[s]++;
    return 0;
}

/* Run the scenario: a resynchronised start, then `takes` counters (a vouch now and then), with the
 * power cut at the listed steps. Returns 0, or a code saying which invariant broke; *steps_out is
 * the number of flash steps the run took, *reboots_out the reboots it survived. */
int journal_scenario(uint32_t seed, int takes, const long *cut_list, int n, long *steps_out, int *reboots_out,
                     uint32_t *skipped_out, long *erases_out)
{
    static snn_counter_store_t st;
    static volatile uint32_t max_used, used, vouched;
    static volatile int have_used, reboots, started;
    static volatile uint32_t skipped;
    memset(mem, 0xFF, sizeof mem);
    rng_state = seed | 1u;
    step = 0;
    n_cuts = n < 16 ? n : 16;
    memcpy(cuts, cut_list, (size_t)n_cuts * sizeof cuts[0]);
    next_cut = 0;
    erases[0] = erases[1] = 0;
    max_used = used = vouched = 0;
    have_used = reboots = started = 0;
    skipped = 0;
    const uint32_t key = 0x5B4AC3C4u;
    if (setjmp(power)) {
        reboots++;
    }
    int have = snn_counter_open(&st, BASE, BASE + SECTOR_BYTES, SECTOR_BYTES, key);
    if (have) {
        if (have_used && st.next <= max_used) {
            return 1;                            /* a used counter would be handed out again */
        }
        if (have_used && st.next - max_used > 2u * SNN_COUNTER_AHEAD + 1u) {
            return 2;                            /* more skipped than the write-ahead allows */
        }
        if (have_used) {
            skipped += st.next - max_used - 1u;
        }
    } else if (started) {
        return 3;                                /* state lost after a committed start */
    }
    if (!have) {
        if (snn_counter_start(&st, 1000u) != 0) {
            return 4;
        }
        started = 1;
    }
    while ((int)used < takes) {
        uint32_t c;
        int r = snn_counter_take(&st, &c);
        if (r == SNN_COUNTER_AT_LIMIT) {
            return 5;
        }
        if (r != SNN_COUNTER_OK) {
            return 6;
        }
        if (have_used && c <= max_used) {
            return 7;
        }
        max_used = c;
        have_used = 1;
        used++;
        if (used % 7u == 0) {                    /* a REPLY vouches for a recent counter */
            vouched = c;
            snn_counter_vouch(&st, c);
        }
    }
    *steps_out = step;
    *reboots_out = reboots;
    *skipped_out = skipped;
    erases_out[0] = erases[0];
    erases_out[1] = erases[1];
    /* the record read back at the end is the one the store holds */
    snn_journal_t j;
    if (snn_journal_open(&j, BASE, BASE + SECTOR_BYTES, SECTOR_BYTES, key) != 1 || j.next != st.written) {
        return 8;
    }
    if (snn_journal_open(&j, BASE, BASE + SECTOR_BYTES, SECTOR_BYTES, key ^ 1u) != 0) {
        return 9;                                /* another key sees no state */
    }
    (void)vouched;
    return 0;
}
