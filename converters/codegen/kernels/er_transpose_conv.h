/* TRANSPOSE_CONV, int8 (TFLM reference: every input pixel times the OHWI filter scattered into an
 * int32 accumulator per output element, then bias, per-channel requantization, output offset and
 * clamp). The C gathers instead: each output element sums the input pixels whose taps land on it,
 * the same integer terms. */
#ifndef ER_TRANSPOSE_CONV_H
#define ER_TRANSPOSE_CONV_H
#include "er_kernels.h"

typedef struct {
    er_out_stage out;
    const int8_t* weights; /* out_c x k_h x k_w x in_c */
    int16_t batches, in_h, in_w, in_c, out_h, out_w, out_c, in_offset;
    uint8_t k_h, k_w, stride_h, stride_w, pad_t, pad_l;
} er_transpose_conv_params;

void er_transpose_conv_s8(const er_transpose_conv_params* p, const int8_t* in, int8_t* out);

#endif
