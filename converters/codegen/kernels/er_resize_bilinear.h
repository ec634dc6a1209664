/* RESIZE_BILINEAR, int8 (TFLM's integer version: source coordinates in 1/1024, each output the four
 * neighbours weighted by products of their fractions (20 fractional bits), divided by 2**20 rounding
 * half away from zero; raw int8 values, input and output share their quantization). */
#ifndef ER_RESIZE_BILINEAR_H
#define ER_RESIZE_BILINEAR_H
#include "er_kernels.h"

typedef struct {
    const int16_t* rows; /* per output row: lower row, upper row, fraction (1/1024) */
    const int16_t* cols; /* per output column: lower column, upper column, fraction (1/1024) */
    int16_t batches, in_h, in_w, channels, out_h, out_w;
} er_resize_bilinear_params;

void er_resize_bilinear_s8(const er_resize_bilinear_params* p, const int8_t* in, int8_t* out);

#endif
