/* Board support the firmware needs: a UART, a tick counter, and the clock they assume.
 * One implementation per board family in board.c, chosen by SNN_BOARD_<FAMILY> at compile time. */
#ifndef SNN_BOARD_H
#define SNN_BOARD_H

#include <stdint.h>

#ifndef SNN_CPU_HZ
#error "SNN_CPU_HZ must be defined (the core clock the SysTick counts)"
#endif

void snn_board_init(void);
void snn_uart_putc(uint8_t c);
int snn_uart_getc(void);          /* the next received byte, or -1 when none is waiting */
uint64_t snn_ticks(void);         /* core clock ticks since boot (SysTick, 24 bits + overflow count) */

static inline uint32_t snn_ms(uint64_t ticks) { return (uint32_t)(ticks / (SNN_CPU_HZ / 1000u)); }

#endif
