/* MEAN and SUM over constant axes, int8 (TFLM's QuantizedMeanOrSum: the int32 sum minus the input
 * zero point times the count, one MultiplyByQuantizedMultiplier whose multiplier holds 1/count for
 * MEAN, the output offset, a clamp). */
#ifndef ER_REDUCE_H
#define ER_REDUCE_H
#include "er_kernels.h"

typedef struct {
    int32_t kept_dims[ER_MAX_RANK];    /* the output's dims, in the input's order */
    int32_t kept_strides[ER_MAX_RANK]; /* their element strides in the input */
    int32_t red_dims[ER_MAX_RANK];     /* the reduced dims */
    int32_t red_strides[ER_MAX_RANK];
    int32_t mult, zp_count;            /* zp_count: input zero point x elements per output */
    int8_t kept_rank, red_rank, shift, out_offset, act_min, act_max;
} er_reduce_params;

void er_reduce_s8(const er_reduce_params* p, const int8_t* in, int8_t* out);

#endif
