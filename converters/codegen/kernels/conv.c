/* CONV_2D, int8 per-channel (TFLM reference ConvPerChannel semantics), grouped and dilated.
 * Output bytes are produced one at a time in linear order (reversed when it runs in place
 * backward, see er_fixedpoint.h); the prologue and output stage are shared (er_layer.h). */
#include "er_layer.h"

/* The output elements are produced pixel by pixel, for output channels [r0, r1) at a time: all of
 * them at once (r0 = 0, r1 = out_c: linear order), or, for weights decoded by the kernel (er_wchunk),
 * one chunk of decoded filters at a time (each decoded once per inference). */
void er_conv_s8(const er_conv_params* p, const int8_t* in, int8_t* out, int8_t* ring) {
    er_conv_geom g;
    const er_wchunk* d = 0;
    int32_t ky, kx, per_group, pixels, r0, step, row0 = 0;
    er_conv_load(p, &g);
    per_group = g.out_c / (g.in_c / g.group);
    pixels = g.total / g.out_c;
    step = g.out_c;
    if (p->w_split == 2) { /* out of place: the input copied out first when it was planned in place */
        int32_t i;
        d = (const er_wchunk*)(const void*)p->weights;
        if (d->copy != 0) {
            for (i = 0; i < g.in_bytes; ++i) d->copy[i] = in[i];
            in = d->copy;
        }
        ring = 0;
        g.ring_dir = 1;
        g.weights = d->buf;
        step = d->rows;
    }
    for (r0 = 0; r0 < g.out_c; r0 += step) {
        const int32_t r1 = r0 + step < g.out_c ? r0 + step : g.out_c;
        int32_t pix, oc;
        if (d != 0) {
            d->decode(d->buf, (r1 - r0) * g.row_len);
            row0 = r0;
        }
        for (pix = 0; pix < pixels; ++pix) {
            for (oc = r0; oc < r1; ++oc) {
                er_conv_site s;
                int32_t ic0, row, acc = 0;
                const int8_t* w;
                const int8_t* rg;
                er_conv_site_at(&g, pix * g.out_c + oc, &s);
                row = g.rows != 0 ? g.rows[s.oc] : s.oc;
                if (row < 0) { /* all-zero filter (not stored): no taps, the accumulator is the bias alone */
                    row = 0;
                    s.ky_hi = s.ky_lo;
                }
                ic0 = (s.oc / per_group) * g.group;
                w = row < g.split ? g.weights + (row - row0) * g.row_len : g.weights_hi + (row - g.split) * g.row_len;
                rg = er_conv_ring(&g, &s, ic0, g.group, ring);
                for (ky = s.ky_lo; ky < s.ky_hi; ++ky) {
                    const int32_t base = s.in_base + (s.y0 + ky * g.dh) * g.in_w * g.in_c + ic0;
                    for (kx = s.kx_lo; kx < s.kx_hi; ++kx) {
                        const int8_t* const wk = w + (ky * g.k_w + kx) * g.group;
                        const int32_t b = base + (s.x0 + kx * g.dw) * g.in_c;
                        if (g.group == 1 && rg == 0) acc += (int32_t)wk[0] * ((int32_t)in[b] + g.in_off);
                        else acc += er_dot(wk, in, b, g.group, s.o, rg, g.ring_n, g.ring_dir, 0, g.in_off);
                    }
                }
                er_out(out, s.o, er_out_value(&g.out, s.oc, acc), ring, g.ring_n, g.in_bytes);
            }
        }
    }
}
