/* MAX_POOL_2D, int8 (TFLM reference MaxPool: padding ignored). */
#include "er_kernels.h"
#include "er_fixedpoint.h"

void er_max_pool_s8(const er_pool_params* p, const int8_t* in, int8_t* out) {
    int32_t n, oy, ox, c, iy, ix;
    for (n = 0; n < p->batches; ++n) {
        const int8_t* img = in + n * p->in_h * p->in_w * p->channels;
        int8_t* dst = out + n * p->out_h * p->out_w * p->channels;
        for (oy = 0; oy < p->out_h; ++oy) {
            const int32_t y0 = oy * p->stride_h - p->pad_t;
            const int32_t ys = y0 < 0 ? 0 : y0;
            const int32_t ye = (y0 + p->k_h) > p->in_h ? p->in_h : (y0 + p->k_h);
            for (ox = 0; ox < p->out_w; ++ox) {
                const int32_t x0 = ox * p->stride_w - p->pad_l;
                const int32_t xs = x0 < 0 ? 0 : x0;
                const int32_t xe = (x0 + p->k_w) > p->in_w ? p->in_w : (x0 + p->k_w);
                for (c = 0; c < p->channels; ++c) {
                    int32_t best = -128;
                    for (iy = ys; iy < ye; ++iy)
                        for (ix = xs; ix < xe; ++ix) {
                            const int32_t v = img[(iy * p->in_w + ix) * p->channels + c];
                            if (v > best) best = v;
                        }
                    dst[(oy * p->out_w + ox) * p->channels + c] = (int8_t)er_clamp(best, p->act_min, p->act_max);
                }
            }
        }
    }
}
