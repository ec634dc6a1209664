/* MEAN / SUM, int8 (see er_reduce.h). Output elements are produced in order; each reads its own
 * reduced elements only, after the previous output is written, so the output has its own buffer. */
#include "er_reduce.h"
#include "er_fixedpoint.h"

void er_reduce_s8(const er_reduce_params* p, const int8_t* in, int8_t* out) {
    int32_t kidx[ER_MAX_RANK], ridx[ER_MAX_RANK], d, o = 0;
    const int32_t kr = p->kept_rank, rr = p->red_rank;
    for (d = 0; d < ER_MAX_RANK; ++d) kidx[d] = 0;
    for (;;) {
        int32_t base = 0, acc = 0;
        for (d = 0; d < kr; ++d) base += kidx[d] * p->kept_strides[d];
        for (d = 0; d < ER_MAX_RANK; ++d) ridx[d] = 0;
        for (;;) {
            int32_t off = base;
            for (d = 0; d < rr; ++d) off += ridx[d] * p->red_strides[d];
            acc += in[off];
            for (d = rr - 1; d >= 0; --d) {
                if (++ridx[d] < p->red_dims[d]) break;
                ridx[d] = 0;
            }
            if (d < 0) break;
        }
        acc = er_mbqm(acc - p->zp_count, p->mult, p->shift) + p->out_offset;
        out[o++] = (int8_t)er_clamp(acc, p->act_min, p->act_max);
        for (d = kr - 1; d >= 0; --d) {
            if (++kidx[d] < p->kept_dims[d]) break;
            kidx[d] = 0;
        }
        if (d < 0) return;
    }
}
