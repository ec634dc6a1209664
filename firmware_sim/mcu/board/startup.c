/* Reset handler and vector table for the emulated Cortex-M boards: copy .data, zero .bss, paint
 * the stack (so its high-water mark can be measured), enable the FPU, run main, exit via
 * semihosting. */
#include <stdint.h>
#include "er_io.h"

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _sstack, _estack;
int main(void);
void er_reset(void);

#define ER_PAINT 0xA5A5A5A5u

static void er_fault(void) { er_print("ER_FAULT\n"); er_exit(1); }

__attribute__((section(".vectors"), used))
const void* const er_vectors[16] = {
    (const void*)&_estack, (const void*)er_reset, (const void*)er_fault, (const void*)er_fault,
    (const void*)er_fault, (const void*)er_fault, (const void*)er_fault, 0, 0, 0, 0,
    (const void*)er_fault, (const void*)er_fault, 0, (const void*)er_fault, (const void*)er_fault,
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
    er_exit(main());
}
