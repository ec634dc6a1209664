/* TRANSPOSE_CONV, int8 (see er_transpose_conv.h). Output element (y, x, c) takes filter tap
 * (ky, kx) of input pixel (iy, ix) where iy * stride_h - pad_t + ky = y (and likewise along x).
 * The output has its own buffer. */
#include "er_transpose_conv.h"
#include "er_layer.h"

void er_transpose_conv_s8(const er_transpose_conv_params* p, const int8_t* in, int8_t* out) {
    const int32_t in_h = p->in_h, in_w = p->in_w, in_c = p->in_c, k_h = p->k_h, k_w = p->k_w;
    const int32_t sh = p->stride_h, sw = p->stride_w, in_off = p->in_offset;
    int32_t n, oy, ox, oc, ky, kx, ic;
    for (n = 0; n < p->batches; ++n) {
        const int8_t* img = in + n * in_h * in_w * in_c;
        for (oy = 0; oy < p->out_h; ++oy) {
            for (ox = 0; ox < p->out_w; ++ox) {
                for (oc = 0; oc < p->out_c; ++oc) {
                    int32_t acc = 0;
                    for (ky = 0; ky < k_h; ++ky) {
                        const int32_t ty = oy + p->pad_t - ky;
                        int32_t iy;
                        if (ty < 0 || ty % sh != 0) continue;
                        iy = ty / sh;
                        if (iy >= in_h) continue;
                        for (kx = 0; kx < k_w; ++kx) {
                            const int32_t tx = ox + p->pad_l - kx;
                            const int8_t* xp;
                            const int8_t* wp;
                            int32_t ix;
                            if (tx < 0 || tx % sw != 0) continue;
                            ix = tx / sw;
                            if (ix >= in_w) continue;
                            xp = img + (iy * in_w + ix) * in_c;
                            wp = p->weights + ((oc * k_h + ky) * k_w + kx) * in_c;
                            for (ic = 0; ic < in_c; ++ic) acc += ((int32_t)xp[ic] + in_off) * (int32_t)wp[ic];
                        }
                    }
                    *out++ = er_out_value(&p->out, oc, acc);
                }
            }
        }
    }
}
