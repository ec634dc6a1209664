/* Semihosting calls (bkpt 0xab in Thumb state): files on the host through QEMU, and the exit. */
#include "er_io.h"

static int32_t er_semihost(int32_t op, const void* arg) {
    register int32_t r0 __asm__("r0") = op;
    register const void* r1 __asm__("r1") = arg;
    __asm volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

static int32_t er_strlen(const char* s) { int32_t n = 0; while (s[n]) ++n; return n; }

int er_open(const char* path, int write) {
    int32_t args[3];
    args[0] = (int32_t)(uintptr_t)path;
    args[1] = write ? 5 : 1; /* "wb" : "rb" */
    args[2] = er_strlen(path);
    return (int)er_semihost(0x01, args);
}

int32_t er_read(int handle, void* buf, int32_t n) {
    int32_t args[3];
    args[0] = handle; args[1] = (int32_t)(uintptr_t)buf; args[2] = n;
    return n - er_semihost(0x06, args); /* SYS_READ returns the bytes not read */
}

int32_t er_write(int handle, const void* buf, int32_t n) {
    int32_t args[3];
    args[0] = handle; args[1] = (int32_t)(uintptr_t)buf; args[2] = n;
    return n - er_semihost(0x05, args);
}

void er_close(int handle) { int32_t args[1]; args[0] = handle; er_semihost(0x02, args); }

void er_exit(int status) {
    /* SYS_EXIT_EXTENDED (0x20): ADP_Stopped_ApplicationExit (0x20026) with `status` as the subcode,
     * which QEMU (7.2 and later) makes its own exit status. */
    int32_t args[2];
    args[0] = 0x20026;
    args[1] = status;
    er_semihost(0x20, args);
    for (;;) {}
}
