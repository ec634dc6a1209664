/* BATCH_MATMUL, int8 (see er_batch_matmul.h). The output has its own buffer. */
#include "er_batch_matmul.h"
#include "er_fixedpoint.h"

void er_batch_matmul_s8(const er_batch_matmul_params* p, const int8_t* a, const int8_t* b, int8_t* out) {
    int32_t idx[3] = {0, 0, 0}, d, i, j, l;
    const int32_t rows = p->rows, cols = p->cols, depth = p->depth;
    const int32_t ar = p->a_row_stride, ad = p->a_depth_stride, bd = p->b_depth_stride, bc = p->b_col_stride;
    const int32_t a_off = p->a_offset, b_off = p->b_offset;
    for (;;) {
        int32_t ab = 0, bb = 0;
        for (d = 0; d < p->batch_rank; ++d) {
            ab += idx[d] * p->a_batch_strides[d];
            bb += idx[d] * p->b_batch_strides[d];
        }
        for (i = 0; i < rows; ++i) {
            for (l = 0; l < cols; ++l) {
                const int8_t* ap = a + ab + i * ar;
                const int8_t* bp = b + bb + l * bc;
                int32_t acc = 0;
                for (j = 0; j < depth; ++j) acc += ((int32_t)ap[j * ad] + a_off) * ((int32_t)bp[j * bd] + b_off);
                acc = er_mbqm(acc, p->mult, p->shift) + p->out_offset;
                *out++ = (int8_t)er_clamp(acc, p->act_min, p->act_max);
            }
        }
        for (d = p->batch_rank - 1; d >= 0; --d) {
            if (++idx[d] < p->batch_dims[d]) break;
            idx[d] = 0;
        }
        if (d < 0) return;
    }
}
