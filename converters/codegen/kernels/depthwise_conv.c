/* DEPTHWISE_CONV_2D, int8 per-channel (TFLM reference DepthwiseConvPerChannel semantics).
 * Output bytes are produced one at a time in linear order (reversed when it runs in place
 * backward, see er_fixedpoint.h); the prologue and output stage are shared (er_layer.h). */
#include "er_layer.h"

void er_depthwise_conv_s8(const er_conv_params* p, const int8_t* in, int8_t* out, int8_t* ring) {
    er_conv_geom g;
    int32_t t, ky, kx;
    er_conv_load(p, &g);
    for (t = 0; t < g.total; ++t) {
        er_conv_site s;
        int32_t ic, acc = 0;
        const int8_t* rg;
        er_conv_site_at(&g, t, &s);
        ic = s.oc / g.group;
        rg = er_conv_ring(&g, &s, ic, 1, ring);
        for (ky = s.ky_lo; ky < s.ky_hi; ++ky) {
            const int32_t row = s.in_base + (s.y0 + ky * g.dh) * g.in_w * g.in_c + ic;
            const int8_t* const wrow = g.weights + ky * g.k_w * g.out_c + s.oc;
            if (rg == 0) {
                for (kx = s.kx_lo; kx < s.kx_hi; ++kx)
                    acc += (int32_t)wrow[kx * g.out_c] * ((int32_t)in[row + (s.x0 + kx * g.dw) * g.in_c] + g.in_off);
            } else {
                for (kx = s.kx_lo; kx < s.kx_hi; ++kx)
                    acc += (int32_t)wrow[kx * g.out_c]
                           * ((int32_t)er_in(in, row + (s.x0 + kx * g.dw) * g.in_c, s.o, rg, g.ring_n, g.ring_dir)
                              + g.in_off);
            }
        }
        er_out(out, s.o, er_out_value(&g.out, s.oc, acc), ring, g.ring_n, g.in_bytes);
    }
}
