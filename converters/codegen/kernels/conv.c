/* CONV_2D, int8 per-channel (TFLM reference ConvPerChannel semantics), grouped and dilated.
 * Output bytes are produced one at a time in linear order (reversed when it runs in place
 * backward, see er_fixedpoint.h); the prologue and output stage are shared (er_layer.h). */
#include "er_layer.h"

#if ER_WSTREAM
/* One output of a 1x1 filter w (n taps) at the input pixel x, channel oc. */
ER_NOINLINE static int8_t er_conv_pixel(const er_conv_params* p, const int8_t* w, const int8_t* x, int32_t n,
                                        int32_t oc) {
    const int32_t in_off = -p->in_zp;
    int32_t k, acc = 0;
    for (k = 0; k < n; ++k) acc += (int32_t)w[k] * ((int32_t)x[k] + in_off);
    return er_out_value(&p->out, oc, acc);
}

/* er_wstream (1x1, exactly in place, forward): per block of pixels, the outputs of the streamed
 * filters (decoded once per block) are kept aside, then each pixel's outputs are gathered in one
 * row and written over its input, which no later pixel reads. */
ER_NOINLINE static void er_conv_stream(const er_conv_params* prm, int8_t* io) {
    const er_wstream* const d = (const er_wstream*)(const void*)prm->weights;
    const er_conv_shape* const q = &er_conv_shapes[prm->shape];
    const int32_t n = q->in_c, oc_n = q->out_c, res = d->rows, streamed = oc_n - res;
    const int32_t pixels = ER_BATCHES(q) * q->out_h * q->out_w;
    int8_t* const row = d->buf + res * n;
    int8_t* const kept = row + oc_n;
    int8_t* const mark = kept + d->block * streamed; /* the decoder's state before the streamed rows */
    int32_t p0, p, r;
    for (p0 = 0; p0 < pixels; p0 += d->block) {
        const int32_t p1 = p0 + d->block < pixels ? p0 + d->block : pixels;
        for (r = 0; r < streamed; ++r) {
            d->decode(row, n, mark, r != 0 ? 2 : p0 != 0);
            for (p = p0; p < p1; ++p) kept[(p - p0) * streamed + r] = er_conv_pixel(prm, row, io + p * n, n, res + r);
        }
        for (p = p0; p < p1; ++p) {
            int8_t* const x = io + p * n;
            for (r = 0; r < oc_n; ++r)
                row[r] = r < res ? er_conv_pixel(prm, d->buf + r * n, x, n, r) : kept[(p - p0) * streamed + r - res];
            for (r = 0; r < oc_n; ++r) x[r] = row[r];
        }
    }
}
#endif

/* The output elements are produced pixel by pixel, for output channels [r0, r1) at a time: all of
 * them at once (r0 = 0, r1 = out_c: linear order), or, for weights decoded by the kernel (er_wchunk),
 * one chunk of decoded filters at a time (each decoded once per inference). A function of its own:
 * er_conv_s8's frame stays small on the streaming path (stack), and GCC 12 -O2 compiles this loop
 * about 10% faster (IC's instructions) than inlined into er_conv_s8. */
ER_NOINLINE static void er_conv_all(const er_conv_params* p, const int8_t* in, int8_t* out, int8_t* ring) {
    er_conv_geom g;
    const er_wchunk* d = 0;
    int32_t ky, kx, per_group, pixels, r0, step, row0 = 0;
    er_conv_load(p, &g);
    per_group = g.out_c / (g.in_c / g.group);
    pixels = g.total / g.out_c;
    step = g.out_c;
    if (ER_WCHUNK && p->w_split == 2) { /* out of place: the input copied out first when it was planned in place */
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

void er_conv_s8(const er_conv_params* p, const int8_t* in, int8_t* out, int8_t* ring) {
#if ER_WSTREAM
    if (p->w_split == 3) {
        er_conv_stream(p, out);
        return;
    }
#endif
    er_conv_all(p, in, out, ring);
}
