/* FULLY_CONNECTED, int8 (TFLM reference FullyConnected semantics, per-tensor or per-channel).
 * Output bytes are produced in linear order (reversed when it runs in place backward). */
#include "er_layer.h"

void er_fully_connected_s8(const er_fc_params* p, const int8_t* in, int8_t* out, int8_t* ring) {
    const er_out_stage st = p->out;
    const int32_t accum = p->accum, units = p->units, in_off = -p->in_zp;
    const int32_t ring_n = p->ring_n, ring_dir = p->ring_dir;
    const er_wsplit* const d = (const er_wsplit*)(const void*)p->weights;
    const int32_t w_split = ER_WSPLIT && p->w_split;
    const int8_t* const weights = w_split ? d->ram : p->weights;
    const int8_t* const weights_hi = w_split ? d->flash : p->weights;
    const int32_t split = w_split ? d->rows : units;
    const int32_t in_bytes = p->batches * accum;
    const int32_t total = p->batches * units;
    int32_t t;
    for (t = 0; t < total; ++t) {
        const int32_t o = ring_dir < 0 ? total - 1 - t : t;
        const int32_t u = o % units;
        const int8_t* const w = u < split ? weights + u * accum : weights_hi + (u - split) * accum;
        const int32_t acc = er_dot(w, in, (o / units) * accum, accum, o, ring, ring_n, ring_dir,
                                   0, in_off);
        er_out(out, o, er_out_value(&st, u, acc), ring, ring_n, in_bytes);
    }
}
