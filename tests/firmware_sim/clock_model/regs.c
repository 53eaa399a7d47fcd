/* A register model for firmware/clock.c built on the host (SNN_HOST_REGS): a memory of registers
 * with their reset values, the ready and status flags the hardware would raise, and a log of every
 * write in order, which tests/firmware_sim/test_clock.py checks against the reference manuals. */
#include <stdint.h>

#include "clock.h"

#define N_REGS 128
#define N_LOG 1024

static uint32_t reg_addr[N_REGS], reg_val[N_REGS];
static int n_regs;
static uint32_t log_addr[N_LOG], log_val[N_LOG];
static int n_log;

static uint32_t reset_value(uint32_t a)
{
#if defined(SNN_BOARD_STM32V2) && defined(SNN_BOARD_H7)
    switch (a) {
    case 0x58024400u: return 0x00000025u;   /* RCC_CR: HSION, HSIRDY, HSIDIV /1 */
    case 0x5802480Cu: return 0x00000006u;   /* PWR_CR3: SCUEN, LDOEN */
    case 0x58024818u: return 0x00004000u;   /* PWR_D3CR: VOS scale 3 */
    case 0x58024428u: return 0x02020200u;   /* RCC_PLLCKSELR */
    case 0x5802442Cu: return 0x01FF0000u;   /* RCC_PLLCFGR */
    case 0x52002000u: return 0x00000037u;   /* FLASH_ACR: 7 WS, WRHIGHFREQ 3 */
    default: return 0;
    }
#elif defined(SNN_BOARD_STM32F4) || defined(SNN_BOARD_STM32V2)
    switch (a) {
    case 0x40023800u: return 0x00000083u;   /* RCC_CR: HSION, HSIRDY, HSITRIM */
    case 0x40023804u: return 0x24003010u;   /* RCC_PLLCFGR */
    case 0x40007000u: return 0x00008000u;   /* PWR_CR(1) */
    default: return 0;
    }
#else
    (void)a;
    return 0;
#endif
}

static uint32_t *slot(uint32_t a)
{
    for (int i = 0; i < n_regs; i++) {
        if (reg_addr[i] == a) {
            return &reg_val[i];
        }
    }
    reg_addr[n_regs] = a;
    reg_val[n_regs] = reset_value(a);
    return &reg_val[n_regs++];
}

static void raise_flags(void)
{
#if defined(SNN_BOARD_STM32V2) && defined(SNN_BOARD_H7)
    uint32_t cr = *slot(0x58024400u);
    cr = (cr & ~((1u << 2) | (1u << 25))) | ((cr & 1u) << 2) | (cr & (1u << 24)) << 1;
    *slot(0x58024400u) = cr;
    uint32_t cfgr = *slot(0x58024410u);
    *slot(0x58024410u) = (cfgr & ~(7u << 3)) | ((cfgr & 7u) << 3);
    *slot(0x58024804u) |= 1u << 13;                          /* PWR_CSR1.ACTVOSRDY */
    *slot(0x58024818u) |= 1u << 13;                          /* PWR_D3CR.VOSRDY */
#elif defined(SNN_BOARD_STM32F4) || defined(SNN_BOARD_STM32V2)
    uint32_t cr = *slot(0x40023800u);
    cr = (cr & ~((1u << 1) | (1u << 25))) | ((cr & 1u) << 1) | (cr & (1u << 24)) << 1;
    *slot(0x40023800u) = cr;
    uint32_t cfgr = *slot(0x40023808u);
    *slot(0x40023808u) = (cfgr & ~(3u << 2)) | ((cfgr & 3u) << 2);
#if defined(SNN_BOARD_STM32V2)
    uint32_t pcr = *slot(0x40007000u);
    *slot(0x40007004u) = (*slot(0x40007004u) & ~(3u << 16)) | (pcr & (3u << 16));   /* ODRDY, ODSWRDY */
#endif
#elif defined(SNN_BOARD_NRF52)
    if (*slot(0x40000000u)) {                                /* TASKS_HFCLKSTART */
        *slot(0x40000000u) = 0;
        *slot(0x40000100u) = 1;                              /* EVENTS_HFCLKSTARTED */
        *slot(0x4000040Cu) = (1u << 16) | 1u;                /* HFCLKSTAT: running, Xtal */
    }
#endif
}

uint32_t snn_reg_read(uint32_t a)
{
    return *slot(a);
}

void snn_reg_write(uint32_t a, uint32_t v)
{
    if (n_log < N_LOG) {
        log_addr[n_log] = a;
        log_val[n_log++] = v;
    }
    *slot(a) = v;
    raise_flags();
}

uint32_t snn_reg_peek(uint32_t a) { return *slot(a); }
int snn_log_count(void) { return n_log; }
uint32_t snn_log_addr(int i) { return log_addr[i]; }
uint32_t snn_log_value(int i) { return log_val[i]; }
uint32_t snn_uart_hz(void) { return SNN_UART_HZ; }
