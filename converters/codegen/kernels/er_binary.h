/* The element walk shared by ADD, SUB and MUL (int8, broadcasting up to rank 6) and the rescaled
 * sum of ADD and SUB (TFLM reference integer Add/Sub: inputs to a common scale, then to the output). */
#ifndef ER_BINARY_H
#define ER_BINARY_H
#include "er_kernels.h"
#include "er_fixedpoint.h"

/* a (+1) or - (-1) b in TFLM's Add/Sub arithmetic, clamped to the output range. */
static inline int8_t er_add_sub_one(const er_add_params* p, int32_t a, int32_t b, int32_t sign) {
    const int64_t scale = (int64_t)1 << p->left_shift;
    const int32_t sa = er_mbqm(er_wrap32((int64_t)(a + p->a_offset) * scale), p->a_mult, p->a_shift);
    const int32_t sb = er_mbqm(er_wrap32((int64_t)(b + p->b_offset) * scale), p->b_mult, p->b_shift);
    const int32_t raw = er_mbqm(er_wrap32((int64_t)sa + sign * (int64_t)sb), p->out_mult, p->out_shift) + p->out_offset;
    return (int8_t)er_clamp(raw, p->act_min, p->act_max);
}

typedef int8_t (*er_elementwise)(const er_add_params* p, int32_t a, int32_t b);

/* out[i] = one(p, a[.], b[.]) over the output's elements, inputs broadcast as p->bcast says. */
static inline void er_binary_s8(const er_add_params* p, const int8_t* a, const int8_t* b, int8_t* out,
                                er_elementwise one) {
    const er_bcast* bc = p->bcast;
    int32_t i, d, idx[ER_MAX_RANK], ia = 0, ib = 0;
    if (bc == 0) {
        for (i = 0; i < p->count; ++i) out[i] = one(p, a[i], b[i]);
        return;
    }
    for (d = 0; d < ER_MAX_RANK; ++d) idx[d] = 0;
    for (i = 0; i < p->count; ++i) {
        out[i] = one(p, a[ia], b[ib]);
        er_bcast_step(bc->rank, bc->dims, bc->a_strides, bc->b_strides, idx, &ia, &ib);
    }
}

#endif
