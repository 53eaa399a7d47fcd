/* Where the device's counter record persists (docs/PROTOCOL.md 4.3): in the flash journal on a
 * board that has a flash driver (state_journal.c over journal.c; the STM32F411), else in the host
 * that drives the UART (main.c, SNN_STATE_HARNESS: harness messages 'C' in, 'W' out, 'w' back:
 * QEMU's flash is read-only between runs). */
#ifndef SNN_STATE_H
#define SNN_STATE_H

#include <stdint.h>

/* 1 with a record for this key (*next, *limit), 0 with none, -1 on an error. */
int snn_state_open(uint32_t key_check, uint32_t *next, uint32_t *limit);
/* Persist (next, limit); 0 once it is durable. */
int snn_state_save(uint32_t next, uint32_t limit);
/* n bytes of entropy for a resynchronisation nonce: the board's random source, or the host's
 * CSPRNG over the UART in harness builds. 0 on success. */
int snn_entropy(uint8_t *out, unsigned n);

#endif
