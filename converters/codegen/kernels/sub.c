/* SUB, int8 (TFLM reference integer Sub: inputs rescaled to a common scale, then to the output). */
#include "er_kernels.h"
#include "er_fixedpoint.h"

static int8_t er_sub_one(const er_add_params* p, int32_t a, int32_t b) {
    const int32_t sa = er_mbqm(er_wrap32((int64_t)(a + p->a_offset) * ((int64_t)1 << p->left_shift)), p->a_mult, p->a_shift);
    const int32_t sb = er_mbqm(er_wrap32((int64_t)(b + p->b_offset) * ((int64_t)1 << p->left_shift)), p->b_mult, p->b_shift);
    const int32_t raw = er_mbqm(er_wrap32((int64_t)sa - sb), p->out_mult, p->out_shift) + p->out_offset;
    return (int8_t)er_clamp(raw, p->act_min, p->act_max);
}

void er_sub_s8(const er_add_params* p, const int8_t* a, const int8_t* b, int8_t* out) {
    int32_t i, d, idx[ER_MAX_RANK], ia = 0, ib = 0;
    if (!p->broadcast) {
        for (i = 0; i < p->count; ++i) out[i] = er_sub_one(p, a[i], b[i]);
        return;
    }
    for (d = 0; d < ER_MAX_RANK; ++d) idx[d] = 0;
    for (i = 0; i < p->count; ++i) {
        out[i] = er_sub_one(p, a[ia], b[ib]);
        er_bcast_step(p->rank, p->dims, p->a_strides, p->b_strides, idx, &ia, &ib);
    }
}
