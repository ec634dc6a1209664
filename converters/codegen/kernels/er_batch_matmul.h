/* BATCH_MATMUL, int8 (TFLM reference: sum over depth of (lhs + a_offset) * (rhs + b_offset),
 * MultiplyByQuantizedMultiplier, output offset, clamp; adjoints as strides, broadcast batch dims as
 * zero strides). */
#ifndef ER_BATCH_MATMUL_H
#define ER_BATCH_MATMUL_H
#include "er_kernels.h"

typedef struct {
    int32_t batch_dims[3], a_batch_strides[3], b_batch_strides[3]; /* the output's batch dims */
    int32_t rows, cols, depth;
    int32_t a_row_stride, a_depth_stride, b_depth_stride, b_col_stride;
    int32_t mult;
    int16_t a_offset, b_offset;
    int8_t batch_rank, shift, out_offset, act_min, act_max;
} er_batch_matmul_params;

void er_batch_matmul_s8(const er_batch_matmul_params* p, const int8_t* a, const int8_t* b, int8_t* out);

#endif
