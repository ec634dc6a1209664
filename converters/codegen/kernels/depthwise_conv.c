/* DEPTHWISE_CONV_2D, int8 per-channel (TFLM reference DepthwiseConvPerChannel semantics).
 * Output bytes are produced one at a time in linear order (reversed when it runs in place
 * backward, see er_fixedpoint.h); parameters are copied to locals (see conv.c). */
#include "er_kernels.h"
#include "er_fixedpoint.h"

void er_depthwise_conv_s8(const er_conv_params* p, const int8_t* in, int8_t* out, int8_t* ring) {
    const int32_t in_h = p->in_h, in_w = p->in_w, in_c = p->in_c;
    const int32_t out_h = p->out_h, out_w = p->out_w, out_c = p->out_c;
    const int32_t k_h = p->k_h, k_w = p->k_w, sh = p->stride_h, sw = p->stride_w, dh = p->dil_h, dw = p->dil_w;
    const int32_t pad_t = p->pad_t, pad_l = p->pad_l, mult_d = p->depth_mult, in_off = p->in_offset;
    const int32_t out_off = p->out_offset, act_min = p->act_min, act_max = p->act_max;
    const int32_t ring_n = p->ring_n, ring_dir = p->ring_dir;
    const int8_t* const weights = p->weights;
    const int32_t* const bias = p->bias;
    const int32_t* const mult = p->mult;
    const int8_t* const shift = p->shift;
    const int32_t in_bytes = p->batches * in_h * in_w * in_c;
    const int32_t total = p->batches * out_h * out_w * out_c;
    int32_t t, ky, kx;
    for (t = 0; t < total; ++t) {
        const int32_t o = ring_dir < 0 ? total - 1 - t : t;
        const int32_t oc = o % out_c;
        const int32_t ic = oc / mult_d;
        const int32_t pix = o / out_c;
        const int32_t ox = pix % out_w;
        const int32_t oy = (pix / out_w) % out_h;
        const int32_t in_base = (pix / (out_w * out_h)) * in_h * in_w * in_c;
        const int32_t y0 = oy * sh - pad_t, x0 = ox * sw - pad_l;
        const int8_t* rg = 0;
        int32_t ky_lo, ky_hi, kx_lo, kx_hi, acc = 0;
        er_tap_range(y0, dh, k_h, in_h, &ky_lo, &ky_hi);
        er_tap_range(x0, dw, k_w, in_w, &kx_lo, &kx_hi);
        if (ring != 0 && ky_lo < ky_hi && kx_lo < kx_hi) {
            const int32_t lo_b = in_base + ((y0 + ky_lo * dh) * in_w + x0 + kx_lo * dw) * in_c + ic;
            const int32_t hi_b = in_base + ((y0 + (ky_hi - 1) * dh) * in_w + x0 + (kx_hi - 1) * dw) * in_c + ic;
            if (ring_dir > 0 ? lo_b < o : hi_b > o) rg = ring;
        }
        for (ky = ky_lo; ky < ky_hi; ++ky) {
            const int32_t row = in_base + (y0 + ky * dh) * in_w * in_c + ic;
            const int8_t* const wrow = weights + ky * k_w * out_c + oc;
            if (rg == 0) {
                for (kx = kx_lo; kx < kx_hi; ++kx)
                    acc += (int32_t)wrow[kx * out_c] * ((int32_t)in[row + (x0 + kx * dw) * in_c] + in_off);
            } else {
                for (kx = kx_lo; kx < kx_hi; ++kx)
                    acc += (int32_t)wrow[kx * out_c]
                           * ((int32_t)er_in(in, row + (x0 + kx * dw) * in_c, o, rg, ring_n, ring_dir) + in_off);
            }
        }
        if (bias != 0) acc += bias[oc];
        acc = er_mbqm(acc, mult[oc], shift[oc]) + out_off;
        er_out(out, o, (int8_t)er_clamp(acc, act_min, act_max), ring, ring_n, in_bytes);
    }
}
