/* Data-movement ops (see er_gather.h): optionally fill the output with a constant, then copy a box
 * of it from the input, dimension by dimension; contiguous runs go through memcpy. The output has
 * its own buffer (never the input's). */
#include <string.h>
#include "er_gather.h"

void er_gather_s8(const er_gather_params* p, const int8_t* in, int8_t* out) {
    const int32_t rank = p->rank;
    int32_t idx[ER_MAX_RANK], d, i, last, n, os, ss;
    const int32_t* tab;
    if (p->has_fill) memset(out, p->fill, (size_t)p->out_count);
    if (rank == 0) {
        out[p->out_base] = in[p->src_base];
        return;
    }
    last = rank - 1;
    n = p->dims[last];
    os = p->out_strides[last];
    ss = p->src_strides[last];
    tab = p->tab[last];
    for (d = 0; d < rank; ++d) idx[d] = 0;
    for (;;) {
        int32_t src = p->src_base, dst = p->out_base;
        for (d = 0; d < last; ++d) {
            src += p->tab[d] != 0 ? p->tab[d][idx[d]] : idx[d] * p->src_strides[d];
            dst += idx[d] * p->out_strides[d];
        }
        if (tab != 0) {
            for (i = 0; i < n; ++i) out[dst + i * os] = in[src + tab[i]];
        } else if (ss == 1 && os == 1) {
            memcpy(out + dst, in + src, (size_t)n);
        } else {
            for (i = 0; i < n; ++i) out[dst + i * os] = in[src + i * ss];
        }
        for (d = last - 1; d >= 0; --d) {
            if (++idx[d] < p->dims[d]) break;
            idx[d] = 0;
        }
        if (d < 0) return;
    }
}
