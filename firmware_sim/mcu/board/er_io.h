/* The test runner's I/O: semihosting on the emulated boards, stdio on the host build. */
#ifndef ER_IO_H
#define ER_IO_H
#include <stdint.h>

int er_open(const char* path, int write);          /* handle, or -1 */
int32_t er_read(int handle, void* buf, int32_t n);  /* bytes read */
int32_t er_write(int handle, const void* buf, int32_t n);
void er_close(int handle);
void er_print(const char* s);
void er_exit(int status);
uint32_t er_stack_used(void);                        /* stack high-water mark (0 on the host) */
uint32_t er_ticks(void);                             /* SysTick ticks since start (0 on the host) */
uint32_t er_calibrate(uint32_t loops);               /* ticks of a loop of 2*loops+1 instructions */

#endif
