/* Shared by CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED: the per-channel output stage (bias,
 * requantization, output offset, clamp) and, for the two convolutions, the parameter prologue and
 * the window of one output element. */
#ifndef ER_LAYER_H
#define ER_LAYER_H
#include "er_kernels.h"
#include "er_fixedpoint.h"

/* ER_RQ_SCALE: channel c's multiplier (and *sh += its shift offset), recomputed with integers from its
 * weight scale's mantissa and exponent offset (requant_scale.py; equal to TFLM's, checked at export). */
static inline int32_t er_scale_multiplier(const er_out_stage* s, int32_t c, int32_t* sh) {
    const uint8_t* const q = (const uint8_t*)s->rq;
    const int32_t bit = c * (23 + s->channels);
    const uint8_t* const f = q + 3 + (bit >> 3);
    const uint32_t v = ((uint32_t)f[0] | ((uint32_t)f[1] << 8) | ((uint32_t)f[2] << 16) | ((uint32_t)f[3] << 24))
                       >> (bit & 7);
    const uint32_t mw = (v & 0x7FFFFFu) | 0x800000u;
    const uint32_t c_lo = (uint32_t)q[0] | ((uint32_t)q[1] << 8) | ((uint32_t)q[2] << 16);
    const uint64_t p = (uint64_t)mw * (uint32_t)s->mult + (((uint64_t)mw * c_lo) >> 24);
    const uint32_t hi = (uint32_t)(p >> 24);
    uint32_t mm;
    *sh += (int32_t)((v >> 23) & ((1u << s->channels) - 1u));
    if (hi >> 31) {
        mm = (hi >> 1) + (hi & 1u);
        *sh += 1;
    } else {
        mm = hi + ((uint32_t)(p >> 23) & 1u);
    }
    if (mm == 0x80000000u) {
        mm = 0x40000000u;
        *sh += 1;
    }
    return (int32_t)mm;
}

/* The int8 output of channel c for accumulator acc (TFLM: bias, MultiplyByQuantizedMultiplier,
 * output offset, activation clamp), reading the bias and (multiplier, shift) in their stored layout. */
static inline int8_t er_out_value(const er_out_stage* s, int32_t c, int32_t acc) {
    int32_t m = s->mult, sh = s->shift;
    if (ER_BIAS32_USED && s->bias_bytes == 4) acc += ((const int32_t*)s->bias)[c];
    else if (ER_BIAS_PACKED_USED && (s->bias_bytes & ER_BIAS_PACKED)) { /* fields of (bias_bytes & 31) bits */
        const int32_t bits = s->bias_bytes & 31, bit = c * bits;
        const uint8_t* const f = (const uint8_t*)s->bias + (bit >> 3);
        const uint32_t v = (uint32_t)f[0] | ((uint32_t)f[1] << 8) | ((uint32_t)f[2] << 16);
        acc += (int32_t)(v << (32 - bits - (bit & 7))) >> (32 - bits);
    }
    if (ER_RQ_PACKED_USED && s->rq_kind == ER_RQ_PACKED) {
        const uint32_t w = ((const uint32_t*)s->rq)[c];
        m = (int32_t)((w & 0x3FFFFFFFu) | 0x40000000u);
        sh -= (int32_t)(w >> 30);
    } else if (ER_RQ_SPLIT_USED && s->rq_kind == ER_RQ_SPLIT) {
        const int32_t* const mults = (const int32_t*)s->rq;
        m = mults[c];
        sh = ((const int8_t*)(mults + s->channels))[c];
    } else if (ER_RQ_SCALE_USED && s->rq_kind == ER_RQ_SCALE) {
        m = er_scale_multiplier(s, c, &sh);
    }
    return (int8_t)er_clamp(er_mbqm(acc, m, sh) + s->out_offset, ER_ACT_MIN(s), ER_ACT_MAX(s));
}

/* er_conv_params copied to locals: stores through int8_t pointers may alias anything, which would
 * otherwise reload every field after each output byte. */
typedef struct {
    er_out_stage out;
    const int8_t* weights;
    const int8_t* weights_hi; /* rows >= split (er_wsplit) */
    const int16_t* rows;
    int32_t split, row_len;
    int32_t in_h, in_w, in_c, out_h, out_w, out_c, k_h, k_w, sh, sw, dh, dw, pad_t, pad_l;
    int32_t group, in_off, ring_n, ring_dir, in_bytes, total;
} er_conv_geom;

static inline void er_conv_load(const er_conv_params* p, er_conv_geom* g) {
    const er_conv_shape* const q = &er_conv_shapes[p->shape];
    g->out = p->out;
    g->weights = p->weights;
    g->weights_hi = p->weights;
    g->split = 0x7FFFFFFF;
    if (ER_WSPLIT && p->w_split == 1) {
        const er_wsplit* const d = (const er_wsplit*)(const void*)p->weights;
        g->weights = d->ram;
        g->weights_hi = d->flash;
        g->split = d->rows;
    }
    g->rows = ER_ROWS(q);
    g->in_h = q->in_h; g->in_w = q->in_w; g->in_c = q->in_c;
    g->out_h = q->out_h; g->out_w = q->out_w; g->out_c = q->out_c;
    g->k_h = q->k_h; g->k_w = q->k_w; g->sh = q->stride_h; g->sw = q->stride_w; g->dh = ER_DIL_H(q); g->dw = ER_DIL_W(q);
    g->pad_t = q->pad_t; g->pad_l = q->pad_l; g->group = q->group; g->in_off = -p->in_zp;
    g->ring_n = q->ring_n < 0 ? -q->ring_n : q->ring_n; g->ring_dir = q->ring_n < 0 ? -1 : 1;
    g->row_len = g->k_h * g->k_w * g->group;
    g->in_bytes = ER_BATCHES(q) * g->in_h * g->in_w * g->in_c;
    g->total = ER_BATCHES(q) * g->out_h * g->out_w * g->out_c;
}

/* Output element o (the t-th produced: in linear order, reversed when running in place backward):
 * its channel, the offset of its image in the input, its window's origin and the taps inside. */
typedef struct {
    int32_t o, oc, in_base, y0, x0, ky_lo, ky_hi, kx_lo, kx_hi;
} er_conv_site;

static inline void er_conv_site_at(const er_conv_geom* g, int32_t t, er_conv_site* s) {
    const int32_t o = g->ring_dir < 0 ? g->total - 1 - t : t;
    const int32_t pix = o / g->out_c;
    s->o = o;
    s->oc = o % g->out_c;
    s->in_base = (pix / (g->out_w * g->out_h)) * g->in_h * g->in_w * g->in_c;
    s->y0 = ((pix / g->out_w) % g->out_h) * g->sh - g->pad_t;
    s->x0 = (pix % g->out_w) * g->sw - g->pad_l;
    er_tap_range(s->y0, g->dh, g->k_h, g->in_h, &s->ky_lo, &s->ky_hi);
    er_tap_range(s->x0, g->dw, g->k_w, g->in_w, &s->kx_lo, &s->kx_hi);
}

/* The ring to read input channels [ic, ic + n) of site s through, or 0 when its window reaches no
 * byte the in-place run has already overwritten (or the op is not in place). */
static inline const int8_t* er_conv_ring(const er_conv_geom* g, const er_conv_site* s, int32_t ic, int32_t n,
                                         const int8_t* ring) {
    int32_t lo_b, hi_b;
    if (ring == 0 || s->ky_lo >= s->ky_hi || s->kx_lo >= s->kx_hi) return 0;
    lo_b = s->in_base + ((s->y0 + s->ky_lo * g->dh) * g->in_w + s->x0 + s->kx_lo * g->dw) * g->in_c + ic;
    hi_b = s->in_base + ((s->y0 + (s->ky_hi - 1) * g->dh) * g->in_w + s->x0 + (s->kx_hi - 1) * g->dw) * g->in_c
           + ic + n - 1;
    return (g->ring_dir > 0 ? lo_b < s->o : hi_b > s->o) ? ring : 0;
}

#endif
