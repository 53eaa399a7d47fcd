/* Bare-metal entry of simd_check.c for QEMU's MPS2 machines: the hash out over semihosting
 * (SYS_WRITE0), then SYS_EXIT. No startup code is needed: nothing has static storage. */
#include <stdint.h>
uint64_t snn_simd_check(void);
static int semihost(int op, const void *arg)
{
    register int r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}
void reset(void)
{
    char buf[20];
    uint64_t h = snn_simd_check();
    for (int i = 0; i < 16; i++) buf[i] = "0123456789abcdef"[(h >> (60 - 4 * i)) & 15];
    buf[16] = '\n'; buf[17] = 0;
    semihost(0x04, buf);               /* SYS_WRITE0 */
    semihost(0x18, (void *)0x20026);   /* SYS_EXIT, ADP_Stopped_ApplicationExit */
    for (;;) {}
}
extern uint32_t _stack_top;
__attribute__((section(".vectors"), used)) const void *vectors[2] = {&_stack_top, (void *)reset};
