/* UART and SysTick for each board family (register addresses from the vendors' reference manuals:
 * ST RM0383 (STM32F411), RM0385 (STM32F746), RM0433 (STM32H743); Nordic nRF52840 PS v1.1).
 * The clock tree is set up first (clock.c: each board's maximum documented clock); the UART's
 * baud divisor is computed from the clock of the bus it sits on (SNN_UART_HZ). Polling, no
 * interrupts: a byte the firmware has not read stays in the
 * UART (on QEMU the character backend holds it until the one-byte receive register is free). */
#include "board.h"
#include "clock.h"

#define REG(addr) (*(volatile uint32_t *)(addr))

/* SysTick (ARMv7-M, same on every core here) */
#define SYST_CSR REG(0xE000E010u)
#define SYST_RVR REG(0xE000E014u)
#define SYST_CVR REG(0xE000E018u)
static volatile uint32_t systick_wraps;

void SysTick_Handler(void) { systick_wraps++; }

uint64_t snn_ticks(void)
{
    uint32_t hi, v;
    do {
        hi = systick_wraps;
        v = SYST_CVR;
    } while (hi != systick_wraps);
    return ((uint64_t)hi << 24) + (0xFFFFFFu - v);
}

static void systick_init(void)
{
    SYST_RVR = 0xFFFFFFu;
    SYST_CVR = 0;
    SYST_CSR = 7u;   /* processor clock, interrupt on wrap, enabled */
}

#if defined(SNN_BOARD_STM32F4)
/* STM32F4 USART (SR/DR): USART2 on PA2/PA3 AF7, the Nucleo-F411RE's ST-LINK virtual COM port.
 * QEMU's netduinoplus2 (STM32F405) models the same USART at the same address. */
#define RCC_AHB1ENR REG(0x40023830u)
#define RCC_APB1ENR REG(0x40023840u)
#define GPIOA_MODER REG(0x40020000u)
#define GPIOA_AFRL REG(0x40020020u)
#define USART_BASE 0x40004400u
#define USART_SR REG(USART_BASE + 0x00u)
#define USART_DR REG(USART_BASE + 0x04u)
#define USART_BRR REG(USART_BASE + 0x08u)
#define USART_CR1 REG(USART_BASE + 0x0Cu)

#if defined(SNN_LINK_SX1276)
/* SPI1 to the SX1276 (RM0383 20.5): PA5 SCK, PA6 MISO, PA7 MOSI (AF5), PA4 NSS as a GPIO output;
 * mode 0, MSB first, APB2 100 MHz / 16 = 6.25 MHz (the SX1276 takes up to 10 MHz). */
#define SPI1_BASE 0x40013000u
#define SPI1_CR1 REG(SPI1_BASE + 0x00u)
#define SPI1_SR REG(SPI1_BASE + 0x08u)
#define SPI1_DR REG(SPI1_BASE + 0x0Cu)

static void spi_init(void)
{
    REG(0x40023844u) |= 1u << 12;                                       /* RCC_APB2ENR.SPI1EN */
    GPIOA_MODER = (GPIOA_MODER & ~(0xFFu << 8)) | (0xA9u << 8);         /* PA4 out, PA5-7 alternate */
    GPIOA_AFRL = (GPIOA_AFRL & ~(0xFFFu << 20)) | (0x555u << 20);       /* PA5-7 AF5 */
    REG(0x40020018u) = 1u << 4;                                         /* BSRR: NSS high */
    SPI1_CR1 = (1u << 9) | (1u << 8) | (3u << 3) | (1u << 2);           /* SSM SSI, /16, master */
    SPI1_CR1 |= 1u << 6;                                                /* SPE */
}

void snn_spi_select(int on)
{
    while (SPI1_SR & (1u << 7)) {                                       /* BSY */
    }
    REG(0x40020018u) = on ? 1u << (4 + 16) : 1u << 4;                   /* NSS low / high */
}

uint8_t snn_spi_xfer(uint8_t out)
{
    while (!(SPI1_SR & (1u << 1))) {                                    /* TXE */
    }
    *(volatile uint8_t *)(SPI1_BASE + 0x0Cu) = out;
    while (!(SPI1_SR & 1u)) {                                           /* RXNE */
    }
    return (uint8_t)SPI1_DR;
}
#endif

void snn_board_init(void)
{
    snn_clock_init();
    RCC_AHB1ENR |= 1u << 0;          /* GPIOA */
    RCC_APB1ENR |= 1u << 17;         /* USART2 */
    GPIOA_MODER = (GPIOA_MODER & ~(0xFu << 4)) | (0xAu << 4);          /* PA2, PA3 alternate */
    GPIOA_AFRL = (GPIOA_AFRL & ~(0xFFu << 8)) | (0x77u << 8);          /* AF7 */
    USART_BRR = (SNN_UART_HZ + SNN_BAUD / 2) / SNN_BAUD;
    USART_CR1 = (1u << 13) | (1u << 3) | (1u << 2);                    /* UE, TE, RE */
#if defined(SNN_LINK_SX1276)
    spi_init();
#endif
    systick_init();
}

void snn_uart_putc(uint8_t c)
{
    while (!(USART_SR & (1u << 7))) {  /* TXE */
    }
    USART_DR = c;
}

int snn_uart_getc(void)
{
    if (USART_SR & (1u << 5)) {        /* RXNE */
        return (int)(USART_DR & 0xFFu);
    }
    return -1;
}

#elif defined(SNN_LINK_SX1276)
#error "the SX1276 link has an SPI driver for the STM32F411 only (board.c)"
#elif defined(SNN_BOARD_STM32V2)
/* STM32F7/H7 USART (ISR/RDR/TDR). F746G-DISCO: USART1 on PA9/PB7; Nucleo-H743ZI: USART3 on PD8/PD9. */
#if defined(SNN_BOARD_H7)
#define USART_BASE 0x40004800u
#define RCC_BASE 0x58024400u
#define GPIO_BASE 0x58020C00u          /* GPIOD */
#else
#define USART_BASE 0x40011000u
#define RCC_BASE 0x40023800u
#define GPIO_BASE 0x40020000u          /* GPIOA */
#endif
#define USART_CR1 REG(USART_BASE + 0x00u)
#define USART_BRR REG(USART_BASE + 0x0Cu)
#define USART_ISR REG(USART_BASE + 0x1Cu)
#define USART_RDR REG(USART_BASE + 0x24u)
#define USART_TDR REG(USART_BASE + 0x28u)

void snn_board_init(void)
{
    snn_clock_init();
#if defined(SNN_BOARD_H7)
    REG(RCC_BASE + 0x0E0u) |= 1u << 3;               /* AHB4ENR: GPIOD */
    REG(RCC_BASE + 0x0E8u) |= 1u << 18;              /* APB1LENR: USART3 */
    REG(GPIO_BASE + 0x00u) = (REG(GPIO_BASE + 0x00u) & ~(0xFu << 16)) | (0xAu << 16);   /* PD8, PD9 */
    REG(GPIO_BASE + 0x24u) = (REG(GPIO_BASE + 0x24u) & ~0xFFu) | 0x77u;                  /* AFRH AF7 */
#else
    REG(RCC_BASE + 0x30u) |= (1u << 0) | (1u << 1);  /* AHB1ENR: GPIOA, GPIOB */
    REG(RCC_BASE + 0x44u) |= 1u << 4;                /* APB2ENR: USART1 */
    REG(GPIO_BASE + 0x00u) = (REG(GPIO_BASE + 0x00u) & ~(0x3u << 18)) | (0x2u << 18);   /* PA9 */
    REG(GPIO_BASE + 0x24u) = (REG(GPIO_BASE + 0x24u) & ~(0xFu << 4)) | (0x7u << 4);     /* AFRH AF7 */
    REG(0x40020400u) = (REG(0x40020400u) & ~(0x3u << 14)) | (0x2u << 14);               /* PB7 */
    REG(0x40020420u) = (REG(0x40020420u) & ~(0xFu << 28)) | (0x7u << 28);               /* AFRL AF7 */
#endif
    USART_BRR = (SNN_UART_HZ + SNN_BAUD / 2) / SNN_BAUD;
    USART_CR1 = (1u << 3) | (1u << 2) | 1u;          /* TE, RE, UE */
    systick_init();
}

void snn_uart_putc(uint8_t c)
{
    while (!(USART_ISR & (1u << 7))) {
    }
    USART_TDR = c;
}

int snn_uart_getc(void)
{
    if (USART_ISR & (1u << 3)) {       /* ORE: clear an overrun so reception goes on */
        REG(USART_BASE + 0x20u) = 1u << 3;
    }
    if (USART_ISR & (1u << 5)) {
        return (int)(USART_RDR & 0xFFu);
    }
    return -1;
}

#elif defined(SNN_BOARD_NRF52)
/* nRF52840 UART0 (legacy, no DMA) on the DK's interface MCU pins P0.06 (TX) / P0.08 (RX). */
#define UART_BASE 0x40002000u
#define TASKS_STARTRX REG(UART_BASE + 0x000u)
#define TASKS_STARTTX REG(UART_BASE + 0x008u)
#define EVENTS_RXDRDY REG(UART_BASE + 0x108u)
#define EVENTS_TXDRDY REG(UART_BASE + 0x11Cu)
#define ENABLE REG(UART_BASE + 0x500u)
#define PSEL_TXD REG(UART_BASE + 0x50Cu)
#define PSEL_RXD REG(UART_BASE + 0x514u)
#define RXD REG(UART_BASE + 0x518u)
#define TXD REG(UART_BASE + 0x51Cu)
#define BAUDRATE REG(UART_BASE + 0x524u)

void snn_board_init(void)
{
    snn_clock_init();
    PSEL_TXD = 6;
    PSEL_RXD = 8;
    BAUDRATE = 0x01D7E000u;            /* 115200 baud */
    ENABLE = 4;
    TASKS_STARTTX = 1;
    TASKS_STARTRX = 1;
    EVENTS_TXDRDY = 1;                 /* the first byte may go at once */
    systick_init();
}

void snn_uart_putc(uint8_t c)
{
    while (!EVENTS_TXDRDY) {
    }
    EVENTS_TXDRDY = 0;
    TXD = c;
}

int snn_uart_getc(void)
{
    if (EVENTS_RXDRDY) {
        EVENTS_RXDRDY = 0;
        return (int)(RXD & 0xFFu);
    }
    return -1;
}

#elif defined(SNN_BOARD_CMSDK)
/* Arm CMSDK APB UART0 of the MPS2 FPGA images (QEMU's mps2-an386 / mps2-an500): the QEMU image of
 * boards whose own UART QEMU does not model (the STM32F7/H7 USART v2, the nRF52840 UART). */
#define UART_BASE 0x40004000u
#define UART_DATA REG(UART_BASE + 0x00u)
#define UART_STATE REG(UART_BASE + 0x04u)
#define UART_CTRL REG(UART_BASE + 0x08u)
#define UART_BAUDDIV REG(UART_BASE + 0x10u)

void snn_board_init(void)
{
    UART_BAUDDIV = SNN_CPU_HZ / SNN_BAUD;
    UART_CTRL = 3u;                    /* TX and RX enabled, no interrupts */
    systick_init();
}

void snn_uart_putc(uint8_t c)
{
    while (UART_STATE & 1u) {          /* TX full */
    }
    UART_DATA = c;
}

int snn_uart_getc(void)
{
    if (UART_STATE & 2u) {             /* RX full */
        return (int)(UART_DATA & 0xFFu);
    }
    return -1;
}

#else
#error "define the board family: SNN_BOARD_STM32F4, SNN_BOARD_STM32V2, SNN_BOARD_NRF52 or SNN_BOARD_CMSDK"
#endif
