/* Clock tree set-up at boot (see clock.h for the figures). Register addresses and bit positions from
 * the reference manuals: ST RM0383 (STM32F411: RCC 6.3, PWR 5.4, FLASH_ACR 3.8.1), RM0385
 * (STM32F746: RCC 5.3, PWR 4.4 with the over-drive sequence of 4.1.4, FLASH_ACR 3.7.1), RM0433
 * (STM32H743: PWR 6.8, RCC 8.7, SYSCFG_PWRCR 12.3.7, FLASH_ACR 4.9.1), Nordic nRF52840 PS v1.7
 * (CLOCK 5.4, NVMC 4.3), Arm ARMv7-M ARM (SCB CCR, cache maintenance, for the Cortex-M7 I-cache).
 *
 * Order matters and follows the manuals: raise the regulator's voltage scale before the PLL runs,
 * raise the flash wait states before the core clock rises, set the bus prescalers before the
 * switch, and wait for each ready flag. Built for the host with SNN_HOST_REGS, every register
 * access goes to snn_reg_read/snn_reg_write (a register model in the tests), which is how the
 * values are checked: QEMU models no clock tree. */
#include "board.h"
#include "clock.h"

#ifdef SNN_HOST_REGS
uint32_t snn_reg_read(uint32_t addr);
void snn_reg_write(uint32_t addr, uint32_t value);
#define RD(a) snn_reg_read(a)
#define WR(a, v) snn_reg_write((a), (v))
#define BARRIER() ((void)0)
#else
#define RD(a) (*(volatile uint32_t *)(a))
#define WR(a, v) (*(volatile uint32_t *)(a) = (v))
#define BARRIER() __asm__ volatile("dsb\n\tisb" ::: "memory")
#endif

/* value of the field at [shift, shift + width) set to v, the rest of x kept */
static inline uint32_t field(uint32_t x, unsigned shift, unsigned width, uint32_t v)
{
    uint32_t mask = ((1u << width) - 1u) << shift;
    return (x & ~mask) | ((v << shift) & mask);
}

static inline void set_field(uint32_t addr, unsigned shift, unsigned width, uint32_t v)
{
    WR(addr, field(RD(addr), shift, width, v));
}

static inline void wait_bits(uint32_t addr, uint32_t mask, uint32_t value)
{
    while ((RD(addr) & mask) != value) {
    }
}

#if (defined(SNN_BOARD_STM32V2)) && !defined(SNN_NO_CLOCK_TREE)
/* Cortex-M7 instruction cache on (ARMv7-M ARM B3.5.6: invalidate all, then CCR.IC). The data cache
 * stays off: nothing here needs it, and it would need clean/invalidate around any future DMA. */
static void icache_on(void)
{
    BARRIER();
    WR(0xE000EF50u, 0u);                                  /* ICIALLU */
    BARRIER();
    WR(0xE000ED14u, RD(0xE000ED14u) | (1u << 17));        /* SCB_CCR.IC */
    BARRIER();
}
#endif

#if defined(SNN_NO_CLOCK_TREE)
void snn_clock_init(void)
{
}

#elif defined(SNN_BOARD_STM32F4)
/* STM32F411: SYSCLK = HSI 16 MHz / PLLM 8 (2 MHz VCO input, the jitter-minimising value) * PLLN 100
 * (200 MHz VCO, within 100-432) / PLLP 2 = 100 MHz; PLLQ 5 (40 MHz: SDIO and RNG want <= 48).
 * AHB /1, APB1 /2 (50 MHz, its maximum), APB2 /1. Scale 1 regulator (VOS = 11) for 100 MHz; 3 wait states at
 * 90-100 MHz and 2.7-3.6 V. */
#define RCC 0x40023800u
void snn_clock_init(void)
{
    WR(RCC + 0x40u, RD(RCC + 0x40u) | (1u << 28));                    /* APB1ENR.PWREN */
    (void)RD(RCC + 0x40u);
    set_field(0x40007000u, 14, 2, 3u);                                 /* PWR_CR.VOS: scale 1 */
    WR(RCC + 0x00u, RD(RCC + 0x00u) | 1u);                             /* CR.HSION */
    wait_bits(RCC + 0x00u, 1u << 1, 1u << 1);                          /* HSIRDY */
    uint32_t pll = RD(RCC + 0x04u);
    pll = field(pll, 0, 6, 8u);                                        /* PLLM */
    pll = field(pll, 6, 9, 100u);                                      /* PLLN */
    pll = field(pll, 16, 2, 0u);                                       /* PLLP = 2 */
    pll = field(pll, 22, 1, 0u);                                       /* PLLSRC = HSI */
    pll = field(pll, 24, 4, 5u);                                       /* PLLQ */
    WR(RCC + 0x04u, pll);
    WR(RCC + 0x00u, RD(RCC + 0x00u) | (1u << 24));                     /* CR.PLLON */
    wait_bits(RCC + 0x00u, 1u << 25, 1u << 25);                        /* PLLRDY */
    WR(0x40023C00u, 3u | (1u << 8) | (1u << 9) | (1u << 10));          /* FLASH_ACR: 3 WS, PRFTEN ICEN DCEN */
    wait_bits(0x40023C00u, 0xFu, 3u);
    uint32_t cfgr = RD(RCC + 0x08u);
    cfgr = field(cfgr, 4, 4, 0u);                                      /* HPRE /1 */
    cfgr = field(cfgr, 10, 3, 4u);                                     /* PPRE1 /2 */
    cfgr = field(cfgr, 13, 3, 0u);                                     /* PPRE2 /1 */
    WR(RCC + 0x08u, cfgr);
    set_field(RCC + 0x08u, 0, 2, 2u);                                  /* SW = PLL */
    wait_bits(RCC + 0x08u, 3u << 2, 2u << 2);                          /* SWS = PLL */
}

#elif defined(SNN_BOARD_STM32V2) && defined(SNN_BOARD_H7)
/* STM32H743 (revision V silicon, 480 MHz): LDO supply, VOS1 then VOS0 (SYSCFG_PWRCR.ODEN);
 * PLL1 from HSI 64 MHz / DIVM1 4 = 16 MHz (PLL1RGE 8-16 MHz, wide VCO) * DIVN1 60 = 960 MHz /
 * DIVP1 2 = 480 MHz; D1CPRE /1, HPRE /2 (240 MHz AXI/AHB), APB1-4 /2 (120 MHz each, their
 * maximum); flash 4 wait states, WRHIGHFREQ 2 (AXI 225-240 MHz at VOS0). */
#define RCC 0x58024400u
#define PWR 0x58024800u
void snn_clock_init(void)
{
    uint32_t cr3 = RD(PWR + 0x0Cu);
    cr3 = field(cr3, 0, 3, 1u << 1);                                   /* PWR_CR3: LDOEN, no bypass; locks SCUEN */
    WR(PWR + 0x0Cu, cr3);
    wait_bits(PWR + 0x04u, 1u << 13, 1u << 13);                        /* PWR_CSR1.ACTVOSRDY */
    set_field(PWR + 0x18u, 14, 2, 3u);                                 /* PWR_D3CR.VOS = scale 1 */
    wait_bits(PWR + 0x18u, 1u << 13, 1u << 13);                        /* VOSRDY */
    WR(RCC + 0xF4u, RD(RCC + 0xF4u) | (1u << 1));                      /* APB4ENR.SYSCFGEN */
    (void)RD(RCC + 0xF4u);
    WR(0x5800042Cu, RD(0x5800042Cu) | 1u);                             /* SYSCFG_PWRCR.ODEN: VOS0 */
    wait_bits(PWR + 0x18u, 1u << 13, 1u << 13);                        /* VOSRDY */
    WR(RCC + 0x00u, RD(RCC + 0x00u) | 1u);                             /* CR.HSION */
    wait_bits(RCC + 0x00u, 1u << 2, 1u << 2);                          /* HSIRDY */
    uint32_t sel = RD(RCC + 0x28u);
    sel = field(sel, 0, 2, 0u);                                        /* PLLCKSELR.PLLSRC = HSI */
    sel = field(sel, 4, 6, 4u);                                        /* DIVM1 */
    WR(RCC + 0x28u, sel);
    uint32_t cfg = RD(RCC + 0x2Cu);
    cfg = field(cfg, 0, 1, 0u);                                        /* PLL1FRACEN off */
    cfg = field(cfg, 1, 1, 0u);                                        /* PLL1VCOSEL: wide 192-960 MHz */
    cfg = field(cfg, 2, 2, 3u);                                        /* PLL1RGE: 8-16 MHz */
    cfg = field(cfg, 16, 3, 7u);                                       /* DIVP1EN DIVQ1EN DIVR1EN */
    WR(RCC + 0x2Cu, cfg);
    WR(RCC + 0x30u, (59u << 0) | (1u << 9) | (3u << 16) | (1u << 24)); /* PLL1DIVR: N 60, P 2, Q 4, R 2 */
    WR(RCC + 0x00u, RD(RCC + 0x00u) | (1u << 24));                     /* CR.PLL1ON */
    wait_bits(RCC + 0x00u, 1u << 25, 1u << 25);                        /* PLL1RDY */
    WR(0x52002000u, field(field(RD(0x52002000u), 0, 4, 4u), 4, 2, 2u)); /* FLASH_ACR: LATENCY 4, WRHIGHFREQ 2 */
    wait_bits(0x52002000u, 0x3Fu, 0x24u);
    uint32_t d1 = RD(RCC + 0x18u);
    d1 = field(d1, 8, 4, 0u);                                          /* D1CPRE /1 */
    d1 = field(d1, 0, 4, 8u);                                          /* HPRE /2 */
    d1 = field(d1, 4, 3, 4u);                                          /* D1PPRE /2 (APB3) */
    WR(RCC + 0x18u, d1);
    WR(RCC + 0x1Cu, field(field(RD(RCC + 0x1Cu), 4, 3, 4u), 8, 3, 4u)); /* D2PPRE1, D2PPRE2 /2 */
    set_field(RCC + 0x20u, 4, 3, 4u);                                  /* D3PPRE /2 (APB4) */
    set_field(RCC + 0x10u, 0, 3, 3u);                                  /* CFGR.SW = PLL1 */
    wait_bits(RCC + 0x10u, 7u << 3, 3u << 3);                          /* SWS = PLL1 */
    icache_on();
}

#elif defined(SNN_BOARD_STM32V2)
/* STM32F746: SYSCLK = HSI 16 MHz / PLLM 8 * PLLN 216 (432 MHz VCO) / PLLP 2 = 216 MHz, PLLQ 9
 * (48 MHz); scale 1 plus over-drive (required above 180 MHz); AHB /1, APB1 /4 (54 MHz), APB2 /2
 * (108 MHz), their maxima; 7 wait states at 210-216 MHz and 2.7-3.6 V, ART accelerator on. */
#define RCC 0x40023800u
#define PWR 0x40007000u
void snn_clock_init(void)
{
    WR(RCC + 0x40u, RD(RCC + 0x40u) | (1u << 28));                    /* APB1ENR.PWREN */
    (void)RD(RCC + 0x40u);
    set_field(PWR + 0x00u, 14, 2, 3u);                                 /* PWR_CR1.VOS: scale 1 */
    WR(RCC + 0x00u, RD(RCC + 0x00u) | 1u);                             /* CR.HSION */
    wait_bits(RCC + 0x00u, 1u << 1, 1u << 1);                          /* HSIRDY */
    uint32_t pll = RD(RCC + 0x04u);
    pll = field(pll, 0, 6, 8u);                                        /* PLLM */
    pll = field(pll, 6, 9, 216u);                                      /* PLLN */
    pll = field(pll, 16, 2, 0u);                                       /* PLLP = 2 */
    pll = field(pll, 22, 1, 0u);                                       /* PLLSRC = HSI */
    pll = field(pll, 24, 4, 9u);                                       /* PLLQ */
    WR(RCC + 0x04u, pll);
    WR(RCC + 0x00u, RD(RCC + 0x00u) | (1u << 24));                     /* CR.PLLON */
    wait_bits(RCC + 0x00u, 1u << 25, 1u << 25);                        /* PLLRDY */
    WR(PWR + 0x00u, RD(PWR + 0x00u) | (1u << 16));                     /* PWR_CR1.ODEN */
    wait_bits(PWR + 0x04u, 1u << 16, 1u << 16);                        /* PWR_CSR1.ODRDY */
    WR(PWR + 0x00u, RD(PWR + 0x00u) | (1u << 17));                     /* PWR_CR1.ODSWEN */
    wait_bits(PWR + 0x04u, 1u << 17, 1u << 17);                        /* PWR_CSR1.ODSWRDY */
    WR(0x40023C00u, 7u | (1u << 8) | (1u << 9));                       /* FLASH_ACR: 7 WS, PRFTEN, ARTEN */
    wait_bits(0x40023C00u, 0xFu, 7u);
    uint32_t cfgr = RD(RCC + 0x08u);
    cfgr = field(cfgr, 4, 4, 0u);                                      /* HPRE /1 */
    cfgr = field(cfgr, 10, 3, 5u);                                     /* PPRE1 /4 */
    cfgr = field(cfgr, 13, 3, 4u);                                     /* PPRE2 /2 */
    WR(RCC + 0x08u, cfgr);
    set_field(RCC + 0x08u, 0, 2, 2u);                                  /* SW = PLL */
    wait_bits(RCC + 0x08u, 3u << 2, 2u << 2);                          /* SWS = PLL */
    icache_on();
}

#elif defined(SNN_BOARD_NRF52)
/* nRF52840: the CPU always runs at 64 MHz; at reset from the internal RC (HFINT, +-1.5 %), here
 * from the 32 MHz crystal (HFXO) for a UART and radio timing within crystal tolerance. Flash has
 * no wait-state setting; the NVMC instruction cache is turned on. */
#define CLOCK 0x40000000u
void snn_clock_init(void)
{
    WR(CLOCK + 0x100u, 0u);                                            /* EVENTS_HFCLKSTARTED */
    WR(CLOCK + 0x000u, 1u);                                            /* TASKS_HFCLKSTART */
    wait_bits(CLOCK + 0x100u, 1u, 1u);
    wait_bits(CLOCK + 0x40Cu, (1u << 16) | 1u, (1u << 16) | 1u);       /* HFCLKSTAT: running, SRC = Xtal */
    WR(0x4001E540u, RD(0x4001E540u) | 1u);                             /* NVMC ICACHECNF.CACHEEN */
}

#else
void snn_clock_init(void)
{
}
#endif
