/* Fixed-point helpers of TFLite Micro's integer reference kernels (int8), in portable C99.
 * Written for edge-runtime's C generator; results are bit-exact with TFLM's common.h and
 * gemmlowp's fixedpoint.h (double rounding, TFLITE_SINGLE_ROUNDING off). */
#ifndef ER_FIXEDPOINT_H
#define ER_FIXEDPOINT_H
#include <stdint.h>

#define ER_INT32_MIN ((int32_t)(-2147483647 - 1))
#define ER_INT32_MAX ((int32_t)2147483647)

static inline int32_t er_wrap32(int64_t v) { return (int32_t)(uint32_t)(uint64_t)v; }

/* SaturatingRoundingDoublingHighMul. */
static inline int32_t er_srdhm(int32_t a, int32_t b) {
    int64_t ab;
    int64_t nudge;
    if (a == b && a == ER_INT32_MIN) return ER_INT32_MAX;
    ab = (int64_t)a * (int64_t)b;
    nudge = ab >= 0 ? ((int64_t)1 << 30) : (1 - ((int64_t)1 << 30));
    return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}

/* RoundingDivideByPOT: x / 2**e rounded half away from zero (0 <= e <= 31). */
static inline int32_t er_rdpot(int32_t x, int e) {
    int32_t mask = (int32_t)((((int64_t)1) << e) - 1);
    int32_t rem = x & mask;
    int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> e) + (rem > threshold ? 1 : 0);
}

/* MultiplyByQuantizedMultiplier: x * m * 2**(shift - 31), TFLM's double rounding. */
static inline int32_t er_mbqm(int32_t x, int32_t m, int32_t shift) {
    int left = shift > 0 ? shift : 0;
    int right = shift > 0 ? 0 : -shift;
    return er_rdpot(er_srdhm(er_wrap32((int64_t)x * ((int64_t)1 << left)), m), right);
}

/* Filter taps k in [*lo, *hi) keep origin + k * dil inside [0, size). */
static inline void er_tap_range(int32_t origin, int32_t dil, int32_t k, int32_t size, int32_t* lo, int32_t* hi) {
    int32_t a = origin < 0 ? (-origin + dil - 1) / dil : 0;
    int32_t b = size - origin <= 0 ? 0 : (size - origin + dil - 1) / dil;
    *lo = a;
    *hi = b < k ? b : k;
}

static inline int32_t er_clamp(int32_t v, int32_t lo, int32_t hi) {
    return v < lo ? lo : (v > hi ? hi : v);
}

/* In-place runs: when an op's output overwrites its dying input (same start), output bytes are
 * produced in increasing (ring_dir > 0) or decreasing (ring_dir < 0) order. Just before output
 * byte `o` is written, the input byte at `o` is saved at ring[o % ring_n]; input bytes already
 * overwritten (below `o` going forward, above it going backward) are read back from the ring. */
static inline int8_t er_in(const int8_t* in, int32_t b, int32_t o, const int8_t* ring, int32_t ring_n,
                           int32_t ring_dir) {
    if (ring != 0 && (ring_dir > 0 ? b < o : b > o)) return ring[b % ring_n];
    return in[b];
}

/* sum_i (w[i] + w_off) * (x[b + i] + x_off) for i < n, with x read through the ring where those
 * bytes are already overwritten: one split of the run into ring and direct parts, no per-byte tests. */
static inline int32_t er_dot(const int8_t* w, const int8_t* in, int32_t b, int32_t n, int32_t o,
                             const int8_t* ring, int32_t ring_n, int32_t ring_dir, int32_t w_off, int32_t x_off) {
    int32_t acc = 0, i, lo = 0, hi = n, r0, r1;
    if (ring == 0) {
        for (i = 0; i < n; ++i) acc += ((int32_t)w[i] + w_off) * ((int32_t)in[b + i] + x_off);
        return acc;
    }
    if (ring_dir > 0) { r0 = 0; r1 = o - b; }    /* bytes below o come from the ring */
    else { r0 = o - b + 1; r1 = n; }             /* bytes above o come from the ring */
    r0 = r0 < 0 ? 0 : (r0 > n ? n : r0);
    r1 = r1 < 0 ? 0 : (r1 > n ? n : r1);
    if (r1 > r0) {
        int32_t ri = (b + r0) % ring_n, k = r0;
        while (k < r1) { /* at most two contiguous pieces of the ring */
            const int32_t run = (ring_n - ri) < (r1 - k) ? (ring_n - ri) : (r1 - k);
            const int8_t* const rp = ring + ri;
            const int8_t* const wp = w + k;
            for (i = 0; i < run; ++i) acc += ((int32_t)wp[i] + w_off) * ((int32_t)rp[i] + x_off);
            k += run;
            ri = 0;
        }
        if (ring_dir > 0) lo = r1; else hi = r0;
    }
    for (i = lo; i < hi; ++i) acc += ((int32_t)w[i] + w_off) * ((int32_t)in[b + i] + x_off);
    return acc;
}

/* Index of the next element of an input broadcast to the output shape (odometer over the dims). */
static inline void er_bcast_step(int32_t rank, const int32_t* dims, const int32_t* a_strides, const int32_t* b_strides,
                                 int32_t* idx, int32_t* ia, int32_t* ib) {
    int32_t d;
    for (d = rank - 1; d >= 0; --d) {
        ++idx[d];
        *ia += a_strides[d];
        *ib += b_strides[d];
        if (idx[d] < dims[d]) return;
        *ia -= a_strides[d] * dims[d];
        *ib -= b_strides[d] * dims[d];
        idx[d] = 0;
    }
}

static inline void er_out(int8_t* out, int32_t o, int8_t v, int8_t* ring, int32_t ring_n, int32_t in_bytes) {
    if (ring != 0 && o < in_bytes) ring[o % ring_n] = out[o];
    out[o] = v;
}

#endif
