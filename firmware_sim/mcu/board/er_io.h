/* The test runner's I/O: semihosting on the emulated boards, stdio on the host build. */
#ifndef ER_IO_H
#define ER_IO_H
#include <stdint.h>

/* Exit statuses of the runner (firmware_sim/mcu/runner.py names each in one line). On the boards
 * they reach QEMU's exit status through semihosting SYS_EXIT_EXTENDED. */
#define ER_EXIT_OPEN 2   /* inputs.bin or outputs.bin could not be opened */
#define ER_EXIT_WRITE 3  /* a write to outputs.bin fell short */
#define ER_EXIT_FAULT 4  /* a processor fault (HardFault or NMI) */

#define ER_TICKS_MASK 0xFFFFFFu     /* er_ticks() counts modulo 2**24 */
#define ER_CALIB_LOOPS 10000000u    /* er_calibrate(ER_CALIB_LOOPS): 2 * loops + 1 instructions */

int er_open(const char* path, int write);          /* handle, or -1 */
int32_t er_read(int handle, void* buf, int32_t n);  /* bytes read */
int32_t er_write(int handle, const void* buf, int32_t n);
void er_close(int handle);
void er_exit(int status);
uint32_t er_stack_used(void);                        /* stack high-water mark (0 on the host) */
uint32_t er_ticks(void);                             /* a tick counter, modulo 2**24 (0 on the host) */
uint32_t er_calibrate(uint32_t loops);               /* ticks of a loop of 2*loops+1 instructions */

#endif
