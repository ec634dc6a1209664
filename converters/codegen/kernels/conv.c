/* CONV_2D, int8 per-channel (TFLM reference ConvPerChannel semantics), grouped and dilated.
 * Output bytes are produced one at a time in linear order (reversed when it runs in place
 * backward, see er_fixedpoint.h); the prologue and output stage are shared (er_layer.h). */
#include "er_layer.h"

void er_conv_s8(const er_conv_params* p, const int8_t* in, int8_t* out, int8_t* ring) {
    er_conv_geom g;
    int32_t t, ky, kx, per_group;
    er_conv_load(p, &g);
    per_group = g.out_c / (g.in_c / g.group);
    for (t = 0; t < g.total; ++t) {
        er_conv_site s;
        int32_t ic0, row, acc = 0;
        const int8_t* w;
        const int8_t* rg;
        er_conv_site_at(&g, t, &s);
        row = g.rows != 0 ? g.rows[s.oc] : s.oc;
        if (row < 0) { /* all-zero filter (not stored): no taps, the accumulator is the bias alone */
            row = 0;
            s.ky_hi = s.ky_lo;
        }
        ic0 = (s.oc / per_group) * g.group;
        w = g.weights + row * g.k_h * g.k_w * g.group;
        rg = er_conv_ring(&g, &s, ic0, g.group, ring);
        for (ky = s.ky_lo; ky < s.ky_hi; ++ky) {
            const int32_t row = s.in_base + (s.y0 + ky * g.dh) * g.in_w * g.in_c + ic0;
            for (kx = s.kx_lo; kx < s.kx_hi; ++kx) {
                const int8_t* const wk = w + (ky * g.k_w + kx) * g.group;
                const int32_t b = row + (s.x0 + kx * g.dw) * g.in_c;
                if (g.group == 1 && rg == 0) acc += (int32_t)wk[0] * ((int32_t)in[b] + g.in_off);
                else acc += er_dot(wk, in, b, g.group, s.o, rg, g.ring_n, g.ring_dir, 0, g.in_off);
            }
        }
        er_out(out, s.o, er_out_value(&g.out, s.oc, acc), ring, g.ring_n, g.in_bytes);
    }
}
