/* CONV_2D, int8 per-channel (TFLM reference ConvPerChannel semantics), grouped and dilated.
 * Output bytes are produced one at a time in linear order (reversed when it runs in place
 * backward, see er_fixedpoint.h). */
#include "er_kernels.h"
#include "er_fixedpoint.h"

void er_conv_s8(const er_conv_params* p, const int8_t* in, int8_t* out, int8_t* ring) {
    const int32_t in_bytes = p->batches * p->in_h * p->in_w * p->in_c;
    const int32_t total = p->batches * p->out_h * p->out_w * p->out_c;
    const int32_t fic = p->filter_in_c;
    const int32_t per_group = p->out_c / (p->in_c / fic);
    int32_t t, ky, kx, ic;
    for (t = 0; t < total; ++t) {
        const int32_t o = p->ring_dir < 0 ? total - 1 - t : t;
        const int32_t oc = o % p->out_c;
        const int32_t pix = o / p->out_c;
        const int32_t ox = pix % p->out_w;
        const int32_t oy = (pix / p->out_w) % p->out_h;
        const int32_t n = pix / (p->out_w * p->out_h);
        const int32_t in_base = n * p->in_h * p->in_w * p->in_c;
        const int32_t y0 = oy * p->stride_h - p->pad_t;
        const int32_t x0 = ox * p->stride_w - p->pad_l;
        const int32_t ic0 = (oc / per_group) * fic;
        const int8_t* w = p->weights + oc * p->k_h * p->k_w * fic;
        /* the ring only matters when this element's window reaches overwritten bytes */
        const int32_t lo_b = in_base + ((y0 < 0 ? 0 : y0) * p->in_w + (x0 < 0 ? 0 : x0)) * p->in_c + ic0;
        const int32_t y1 = y0 + (p->k_h - 1) * p->dil_h, x1 = x0 + (p->k_w - 1) * p->dil_w;
        const int32_t hi_b = in_base + ((y1 >= p->in_h ? p->in_h - 1 : y1) * p->in_w
                                        + (x1 >= p->in_w ? p->in_w - 1 : x1)) * p->in_c + ic0 + fic - 1;
        int8_t* const rg = (ring != 0 && (p->ring_dir > 0 ? lo_b < o : hi_b > o)) ? ring : 0;
        int32_t acc = 0;
        for (ky = 0; ky < p->k_h; ++ky) {
            const int32_t iy = y0 + ky * p->dil_h;
            if (iy < 0 || iy >= p->in_h) continue;
            for (kx = 0; kx < p->k_w; ++kx) {
                const int32_t ix = x0 + kx * p->dil_w;
                const int8_t* wk;
                int32_t b;
                if (ix < 0 || ix >= p->in_w) continue;
                wk = w + (ky * p->k_w + kx) * fic;
                b = in_base + (iy * p->in_w + ix) * p->in_c + ic0;
                if (rg == 0) {
                    const int8_t* x = in + b;
                    for (ic = 0; ic < fic; ++ic) acc += (int32_t)wk[ic] * ((int32_t)x[ic] + p->in_offset);
                } else {
                    for (ic = 0; ic < fic; ++ic)
                        acc += (int32_t)wk[ic]
                               * ((int32_t)er_in(in, b + ic, o, rg, p->ring_n, p->ring_dir) + p->in_offset);
                }
            }
        }
        if (p->bias != 0) acc += p->bias[oc];
        acc = er_mbqm(acc, p->mult[oc], p->shift[oc]) + p->out_offset;
        er_out(out, o, (int8_t)er_clamp(acc, p->act_min, p->act_max), ring, p->ring_n, in_bytes);
    }
}
