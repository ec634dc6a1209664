/* The window walk shared by AVERAGE_POOL_2D and MAX_POOL_2D (TFLM reference pooling: windows are
 * clipped to the input, padding is not counted). Each kernel calls it with a constant is_max, so
 * the compiler keeps one specialised copy per op. */
#ifndef ER_POOL_H
#define ER_POOL_H
#include "er_kernels.h"
#include "er_fixedpoint.h"

static inline void er_pool_s8(const er_pool_params* p, const int8_t* in, int8_t* out, int is_max) {
    const int32_t in_h = p->in_h, in_w = p->in_w, ch = p->channels, out_h = p->out_h, out_w = p->out_w;
    const int32_t k_h = p->k_h, k_w = p->k_w, act_min = ER_ACT_MIN(p), act_max = ER_ACT_MAX(p);
    int32_t n, oy, ox, c, iy, ix;
    for (n = 0; n < ER_BATCHES(p); ++n) {
        const int8_t* img = in + n * in_h * in_w * ch;
        int8_t* dst = out + n * out_h * out_w * ch;
        for (oy = 0; oy < out_h; ++oy) {
            const int32_t y0 = oy * p->stride_h - p->pad_t;
            const int32_t ys = y0 < 0 ? 0 : y0;
            const int32_t ye = (y0 + k_h) > in_h ? in_h : (y0 + k_h);
            for (ox = 0; ox < out_w; ++ox) {
                const int32_t x0 = ox * p->stride_w - p->pad_l;
                const int32_t xs = x0 < 0 ? 0 : x0;
                const int32_t xe = (x0 + k_w) > in_w ? in_w : (x0 + k_w);
                const int32_t count = (ye - ys) * (xe - xs);
                for (c = 0; c < ch; ++c) {
                    int32_t acc = is_max ? -128 : 0;
                    for (iy = ys; iy < ye; ++iy)
                        for (ix = xs; ix < xe; ++ix) {
                            const int32_t v = img[(iy * in_w + ix) * ch + c];
                            if (!is_max) acc += v;
                            else if (v > acc) acc = v;
                        }
                    if (!is_max && count > 0) /* rounding half away from zero */
                        acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
                    dst[(oy * out_w + ox) * ch + c] = (int8_t)er_clamp(acc, act_min, act_max);
                }
            }
        }
    }
}

#endif
