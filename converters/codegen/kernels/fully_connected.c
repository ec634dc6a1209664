/* FULLY_CONNECTED, int8 (TFLM reference FullyConnected semantics, per-tensor or per-channel).
 * Output bytes are produced in linear order (reversed when it runs in place backward). */
#include "er_kernels.h"
#include "er_fixedpoint.h"

void er_fully_connected_s8(const er_fc_params* p, const int8_t* in, int8_t* out, int8_t* ring) {
    const int32_t in_bytes = p->batches * p->accum;
    const int32_t total = p->batches * p->units;
    int32_t t;
    for (t = 0; t < total; ++t) {
        const int32_t o = p->ring_dir < 0 ? total - 1 - t : t;
        const int32_t u = o % p->units;
        const int32_t b = (o / p->units) * p->accum;
        const int8_t* w = p->weights + u * p->accum;
        const int32_t c = p->per_channel ? u : 0;
        int32_t acc;
        acc = er_dot(w, in, b, p->accum, o, ring, p->ring_n, p->ring_dir, p->filter_offset, p->in_offset);
        if (p->bias != 0) acc += p->bias[u];
        acc = er_mbqm(acc, p->mult[c], p->shift[c]) + p->out_offset;
        er_out(out, o, (int8_t)er_clamp(acc, p->act_min, p->act_max), ring, p->ring_n, in_bytes);
    }
}
