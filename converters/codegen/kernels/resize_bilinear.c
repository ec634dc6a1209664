/* RESIZE_BILINEAR, int8 (see er_resize_bilinear.h). The output has its own buffer. */
#include "er_resize_bilinear.h"

void er_resize_bilinear_s8(const er_resize_bilinear_params* p, const int8_t* in, int8_t* out) {
    const int32_t in_w = p->in_w, ch = p->channels, one = 1 << 10;
    int32_t n, oy, ox, c;
    for (n = 0; n < p->batches; ++n) {
        const int8_t* img = in + n * p->in_h * in_w * ch;
        for (oy = 0; oy < p->out_h; ++oy) {
            const int32_t fy = p->rows[3 * oy + 2];
            const int8_t* r0 = img + p->rows[3 * oy] * in_w * ch;
            const int8_t* r1 = img + p->rows[3 * oy + 1] * in_w * ch;
            for (ox = 0; ox < p->out_w; ++ox) {
                const int32_t fx = p->cols[3 * ox + 2];
                const int32_t c0 = p->cols[3 * ox] * ch, c1 = p->cols[3 * ox + 1] * ch;
                const int32_t w00 = (one - fy) * (one - fx), w01 = (one - fy) * fx;
                const int32_t w10 = fy * (one - fx), w11 = fy * fx;
                for (c = 0; c < ch; ++c) {
                    const int32_t acc = r0[c0 + c] * w00 + r0[c1 + c] * w01 + r1[c0 + c] * w10 + r1[c1 + c] * w11;
                    const int32_t half = acc >= 0 ? (1 << 19) : -(1 << 19);
                    *out++ = (int8_t)((acc + half) / (1 << 20));
                }
            }
        }
    }
}
