/* The clock tree each board runs at: its maximum documented core clock, the flash wait states and
 * bus prescalers that clock needs, and the clock of the peripheral bus its UART sits on.
 *
 *   board      core clock (SNN_CPU_HZ)            flash                   UART kernel clock
 *   stm32f411  100 MHz: HSI 16 / 8 * 100 / 2      3 WS, prefetch, I/D$    APB1 50 MHz (USART2)
 *   stm32f746  216 MHz: HSI 16 / 8 * 216 / 2      7 WS, ART, prefetch     APB2 108 MHz (USART1)
 *   stm32h743  480 MHz: HSI 64 / 4 * 60 / 2, VOS0 4 WS, WRHIGHFREQ 2      APB1 120 MHz (USART3)
 *   nrf52840   64 MHz from the HFXO crystal        no wait states; I$      (UART baud register)
 *
 * SysTick counts the core clock, so SNN_CPU_HZ is the build's -D and must equal what
 * snn_clock_init() sets up (checked below). QEMU models no clock tree (its RCC reads 0), so the
 * QEMU images are built with SNN_NO_CLOCK_TREE and the emulated machine's own SysTick clock. */
#ifndef SNN_CLOCK_H
#define SNN_CLOCK_H

#include <stdint.h>

void snn_clock_init(void);

#if defined(SNN_NO_CLOCK_TREE)
#define SNN_UART_HZ SNN_CPU_HZ
#elif defined(SNN_BOARD_STM32F4)
#define SNN_CLOCK_HZ 100000000u
#define SNN_UART_HZ (SNN_CLOCK_HZ / 2u)
#elif defined(SNN_BOARD_STM32V2) && defined(SNN_BOARD_H7)
#define SNN_CLOCK_HZ 480000000u
#define SNN_UART_HZ (SNN_CLOCK_HZ / 4u)
#elif defined(SNN_BOARD_STM32V2)
#define SNN_CLOCK_HZ 216000000u
#define SNN_UART_HZ (SNN_CLOCK_HZ / 2u)
#elif defined(SNN_BOARD_NRF52)
#define SNN_CLOCK_HZ 64000000u
#define SNN_UART_HZ SNN_CLOCK_HZ
#else
#define SNN_UART_HZ SNN_CPU_HZ
#endif

#if defined(SNN_CLOCK_HZ) && defined(SNN_CPU_HZ) && (SNN_CPU_HZ != SNN_CLOCK_HZ)
#error "SNN_CPU_HZ must be the clock snn_clock_init() configures (clock.h)"
#endif

#endif
