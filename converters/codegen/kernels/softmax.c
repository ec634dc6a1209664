/* SOFTMAX, int8 in and out (TFLM reference integer Softmax: gemmlowp exp_on_negative_values on the
 * rescaled differences, sums in Q12.19, one reciprocal per row). Safe in place: each output
 * element is written after the row's max and sum are known, from its own input element only. */
#include "er_kernels.h"
#include "er_fixedpoint.h"

#define ER_SCALED_DIFF_INT_BITS 5
#define ER_ACCUM_INT_BITS 12

static int32_t sat_mul_pot(int32_t x, int e) { /* SaturatingRoundingMultiplyByPOT */
    int32_t threshold;
    if (e == 0) return x;
    if (e < 0) return er_rdpot(x, -e);
    threshold = (int32_t)((((int64_t)1) << (31 - e)) - 1);
    if (x > threshold) return ER_INT32_MAX;
    if (x < -threshold) return ER_INT32_MIN;
    return (int32_t)((uint32_t)x << e);
}

static int32_t add32(int32_t a, int32_t b) { return er_wrap32((int64_t)a + b); }

/* exp(x) for x in [-1/4, 0), Q0.31 in and out. */
static int32_t exp_quarter(int32_t a) {
    const int32_t constant_term = 1895147668;
    const int32_t constant_1_over_3 = 715827883;
    const int32_t x = add32(a, 1 << 28);
    const int32_t x2 = er_srdhm(x, x);
    const int32_t x3 = er_srdhm(x2, x);
    const int32_t x4 = er_srdhm(x2, x2);
    const int32_t x4_over_4 = sat_mul_pot(x4, -2);
    const int32_t t = add32(er_srdhm(add32(x4_over_4, x3), constant_1_over_3), x2);
    const int32_t poly = sat_mul_pot(t, -1);
    return add32(constant_term, er_srdhm(constant_term, add32(x, poly)));
}

/* gemmlowp exp_on_negative_values for a Q(ER_SCALED_DIFF_INT_BITS) input; Q0.31 result. */
static int32_t exp_on_negative_values(int32_t a) {
    static const int32_t mults[7] = {1672461947, 1302514674, 790015084, 290630308, 39332535, 720401, 242};
    const int int_bits = ER_SCALED_DIFF_INT_BITS;
    const int frac = 31 - int_bits;
    const int32_t one_quarter = (int32_t)1 << (frac - 2);
    const int32_t mask = one_quarter - 1;
    const int32_t a_mod = add32(a & mask, -one_quarter);
    int32_t result = exp_quarter(sat_mul_pot(a_mod, int_bits));
    const int32_t remainder = er_wrap32((int64_t)a_mod - a);
    int e;
    for (e = -2; e <= 4; ++e) {
        if (int_bits > e) {
            const int shift = frac + e;
            if (remainder & ((int32_t)1 << shift)) result = er_srdhm(result, mults[e + 2]);
        }
    }
    if (a == 0) return ER_INT32_MAX;
    return result;
}

/* gemmlowp one_over_one_plus_x_for_x_in_0_1, Q0.31 in and out. */
static int32_t one_over_one_plus_x(int32_t a) {
    const int64_t s = (int64_t)a + ER_INT32_MAX;
    const int32_t half_den = (int32_t)((s + (s >= 0 ? 1 : -1)) / 2);
    int32_t x = add32(1515870810, er_srdhm(half_den, -1010580540));
    const int32_t one_q2 = (int32_t)1 << 29;
    int i;
    for (i = 0; i < 3; ++i) {
        const int32_t one_minus = er_wrap32((int64_t)one_q2 - er_srdhm(half_den, x));
        x = add32(x, sat_mul_pot(er_srdhm(x, one_minus), 2));
    }
    return sat_mul_pot(x, 1);
}

static int count_leading_zeros(uint32_t v) {
    int n = 0;
    if (v == 0) return 32;
    while (!(v & 0x80000000u)) { v <<= 1; ++n; }
    return n;
}

void er_softmax_s8(const er_softmax_params* p, const int8_t* in, int8_t* out) {
    int32_t r, c;
    for (r = 0; r < p->rows; ++r) {
        const int8_t* x = in + r * p->depth;
        int8_t* y = out + r * p->depth;
        int32_t max_v = -128, sum = 0, scale, exponent, headroom;
        for (c = 0; c < p->depth; ++c) if (x[c] > max_v) max_v = x[c];
        for (c = 0; c < p->depth; ++c) {
            const int32_t diff = (int32_t)x[c] - max_v;
            if (diff >= p->diff_min) {
                const int32_t rescaled = er_srdhm(diff * (1 << p->beta_left_shift), p->beta_mult);
                sum = add32(sum, er_rdpot(exp_on_negative_values(rescaled), ER_ACCUM_INT_BITS));
            }
        }
        headroom = count_leading_zeros((uint32_t)sum);
        scale = one_over_one_plus_x((int32_t)(((uint32_t)sum << headroom) - ((uint32_t)1 << 31)));
        exponent = (ER_ACCUM_INT_BITS - headroom) + 31 - 8;
        for (c = 0; c < p->depth; ++c) {
            const int32_t diff = (int32_t)x[c] - max_v;
            int32_t v = -128;
            if (diff >= p->diff_min) {
                const int32_t rescaled = er_srdhm(diff * (1 << p->beta_left_shift), p->beta_mult);
                v = er_srdhm(scale, exp_on_negative_values(rescaled));
                if (exponent > 0) v = er_rdpot(v, exponent);
                v = er_clamp(v - 128, -128, 127);
            }
            y[c] = (int8_t)v;
        }
    }
}
