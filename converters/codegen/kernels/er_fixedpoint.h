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

static inline void er_out(int8_t* out, int32_t o, int8_t v, int8_t* ring, int32_t ring_n, int32_t in_bytes) {
    if (ring != 0 && o < in_bytes) ring[o % ring_n] = out[o];
    out[o] = v;
}

#endif
