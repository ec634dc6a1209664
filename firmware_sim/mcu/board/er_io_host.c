/* The runner's I/O on the host build (stdio); the model code itself uses no libc beyond memcpy. */
#include <stdio.h>
#include <stdlib.h>
#include "er_io.h"

static FILE* er_files[4];

int er_open(const char* path, int write) {
    int h;
    for (h = 0; h < 4; ++h) {
        if (er_files[h] == 0) {
            er_files[h] = fopen(path, write ? "wb" : "rb");
            return er_files[h] ? h : -1;
        }
    }
    return -1;
}

int32_t er_read(int handle, void* buf, int32_t n) { return (int32_t)fread(buf, 1, (size_t)n, er_files[handle]); }

int32_t er_write(int handle, const void* buf, int32_t n) {
    return (int32_t)fwrite(buf, 1, (size_t)n, er_files[handle]);
}

void er_close(int handle) { fclose(er_files[handle]); er_files[handle] = 0; }

void er_exit(int status) { exit(status); }

uint32_t er_stack_used(void) { return 0; }

uint32_t er_ticks(void) { return 0; }

uint32_t er_calibrate(uint32_t loops) { (void)loops; return 0; }
