/* Reset handler and vector table for the emulated Cortex-M boards: copy .data, zero .bss, paint
 * the stack (so its high-water mark can be measured), enable the FPU, run main, exit via
 * semihosting (ER_EXIT_FAULT on a fault). */
#include <stdint.h>
#include "er_io.h"

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _sstack, _estack;
int main(void);
void er_reset(void);

#define ER_PAINT 0xA5A5A5A5u

static void er_fault(void) { er_exit(ER_EXIT_FAULT); }

/* SysTick on the external reference clock (CSR.CLKSOURCE = 0: QEMU's mps2 boards drive it at 1 MHz),
 * counting down from 2**24 - 1 without an interrupt: under qemu -icount shift=0 guest time advances
 * one nanosecond per instruction, so one tick is 1,000 instructions (calibrated by er_calibrate)
 * and the 24-bit counter wraps after 16.7 G instructions, longer than any one measured span; the
 * runner subtracts readings modulo 2**24 (ER_TICKS_MASK). */
#define ER_SYST_CSR (*(volatile uint32_t*)0xE000E010u)
#define ER_SYST_RVR (*(volatile uint32_t*)0xE000E014u)
#define ER_SYST_CVR (*(volatile uint32_t*)0xE000E018u)

uint32_t er_ticks(void) { return ER_TICKS_MASK - ER_SYST_CVR; }

uint32_t er_calibrate(uint32_t loops) {
    uint32_t t0 = er_ticks();
    __asm volatile("mov r2, %0\n1: subs r2, r2, #1\n bne 1b" : : "r"(loops) : "r2", "cc");
    return (er_ticks() - t0) & ER_TICKS_MASK;
}

/* Initial stack pointer, reset, NMI and HardFault: no interrupt is enabled, and the configurable
 * faults (MemManage, BusFault, UsageFault) stay disabled, so they escalate to HardFault. */
__attribute__((section(".vectors"), used))
const void* const er_vectors[4] = {
    (const void*)&_estack, (const void*)er_reset, (const void*)er_fault, (const void*)er_fault,
};

uint32_t er_stack_used(void) {
    const uint32_t* p = &_sstack;
    while (p < &_estack && *p == ER_PAINT) ++p;
    return (uint32_t)((const uint8_t*)&_estack - (const uint8_t*)p);
}

void er_reset(void) {
    uint32_t* src = &_sidata;
    uint32_t* dst = &_sdata;
    uint32_t sp;
    while (dst < &_edata) *dst++ = *src++;
    for (dst = &_sbss; dst < &_ebss; ++dst) *dst = 0;
    __asm volatile("mov %0, sp" : "=r"(sp));
    for (dst = &_sstack; (uint32_t)dst < sp - 64u; ++dst) *dst = ER_PAINT;
    *(volatile uint32_t*)0xE000ED88u |= (0xFu << 20); /* CPACR: full access to CP10/CP11 (FPU) */
    __asm volatile("dsb\n isb");
    ER_SYST_RVR = 0xFFFFFFu;
    ER_SYST_CVR = 0;
    ER_SYST_CSR = 1u; /* enable; no interrupt; external reference clock */
    er_exit(main());
}
