/* Test runner: reads model inputs from inputs.bin (MODEL_INPUT_BYTES each, straight into the
 * arena), runs model_invoke on each, appends the outputs to outputs.bin, then prints
 * "ER_DONE inputs=N stack=S ticks=T calib_ticks=C" (S: stack high-water mark in bytes; T: SysTick
 * ticks spent in model_invoke; C: ticks of a 2,000,001-instruction loop; all 0 on the host). */
#include "er_io.h"
#include "model.h"

static void er_utoa(uint32_t v, char* out) {
    char tmp[12];
    int n = 0, i;
    do { tmp[n++] = (char)('0' + v % 10u); v /= 10u; } while (v);
    for (i = 0; i < n; ++i) out[i] = tmp[n - 1 - i];
    out[n] = 0;
}

int main(void) {
    char num[12];
    uint32_t count = 0, ticks = 0, calib;
    int fi = er_open("inputs.bin", 0);
    int fo = er_open("outputs.bin", 1);
    if (fi < 0 || fo < 0) { er_print("ER_ERROR open\n"); return 1; }
    while (er_read(fi, model_input_ptr(), MODEL_INPUT_BYTES) == MODEL_INPUT_BYTES) {
        const uint32_t t0 = er_ticks();
        model_invoke(model_input_ptr(), model_output_ptr());
        ticks += er_ticks() - t0;
        if (er_write(fo, model_output_ptr(), MODEL_OUTPUT_BYTES) != MODEL_OUTPUT_BYTES) {
            er_print("ER_ERROR write\n");
            return 1;
        }
        ++count;
    }
    er_close(fi);
    er_close(fo);
    er_print("ER_DONE inputs=");
    er_utoa(count, num);
    er_print(num);
    er_print(" stack=");
    er_utoa(er_stack_used(), num);
    er_print(num);
    er_print(" ticks=");
    er_utoa(ticks, num);
    er_print(num);
    calib = er_calibrate(1000000u);
    er_print(" calib_ticks=");
    er_utoa(calib, num);
    er_print(num);
    er_print("\n");
    return 0;
}
