/* Test runner: reads model inputs from inputs.bin (MODEL_INPUT_BYTES each, straight into the
 * arena), runs model_invoke on each and appends the outputs to outputs.bin, then ends outputs.bin
 * with a 16-byte statistics record: four little-endian uint32 (inputs run, stack high-water mark in
 * bytes, SysTick ticks spent in model_invoke, ticks of a 20,000,001-instruction loop; the last three
 * 0 on the host). It prints nothing: failures end it with an ER_EXIT_* status (er_io.h), so the image
 * holds no text but the two file names. */
#include "er_io.h"
#include "model.h"

int main(void) {
    uint32_t stats[4] = {0, 0, 0, 0};
    int fi = er_open("inputs.bin", 0);
    int fo = er_open("outputs.bin", 1);
    if (fi < 0 || fo < 0) return ER_EXIT_OPEN;
    while (er_read(fi, model_input_ptr(), MODEL_INPUT_BYTES) == MODEL_INPUT_BYTES) {
        const uint32_t t0 = er_ticks();
        model_invoke(model_input_ptr(), model_output_ptr());
        stats[2] += (er_ticks() - t0) & ER_TICKS_MASK;
        if (er_write(fo, model_output_ptr(), MODEL_OUTPUT_BYTES) != MODEL_OUTPUT_BYTES) return ER_EXIT_WRITE;
        ++stats[0];
    }
    er_close(fi);
    stats[1] = er_stack_used();
    stats[3] = er_calibrate(ER_CALIB_LOOPS);
    if (er_write(fo, stats, (int32_t)sizeof stats) != (int32_t)sizeof stats) return ER_EXIT_WRITE;
    er_close(fo);
    return 0;
}
