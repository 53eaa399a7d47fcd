/* Reset handler and vector table for ARMv7-M (Cortex-M4/M7): copy .data, zero .bss (the tensor
 * arena lives there), enable the FPU, call main. */
#include <stdint.h>

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;
int main(void);
void SysTick_Handler(void);

void Reset_Handler(void)
{
    uint32_t *src = &_sidata, *dst = &_sdata;
    while (dst < &_edata) {
        *dst++ = *src++;
    }
    for (dst = &_sbss; dst < &_ebss;) {
        *dst++ = 0;
    }
#if defined(__ARM_FP)
    *(volatile uint32_t *)0xE000ED88u |= 0xFu << 20;   /* CPACR: CP10, CP11 full access */
    __asm__ volatile("dsb\n\tisb");
#endif
    main();
    for (;;) {
    }
}

static void Default_Handler(void)
{
    for (;;) {
    }
}

__attribute__((section(".isr_vector"), used))
void (*const snn_vectors[16])(void) = {
    (void (*)(void))(uintptr_t)&_estack, Reset_Handler,
    Default_Handler, Default_Handler, Default_Handler, Default_Handler, Default_Handler,   /* NMI..Usage */
    0, 0, 0, 0, Default_Handler, Default_Handler, 0, Default_Handler,                      /* SVC, Debug, PendSV */
    SysTick_Handler,
};
