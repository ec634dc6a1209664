/* The copy of the data-movement ops (PAD, CONCATENATION, STRIDED_SLICE, SLICE, SPLIT, TRANSPOSE,
 * GATHER, RESIZE_NEAREST_NEIGHBOR, ...): every output element in a box of the output is one input
 * element, at src_base plus, per dimension, tab[d][i] (or i * src_strides[d] where tab[d] is 0). */
#ifndef ER_GATHER_H
#define ER_GATHER_H
#include "er_kernels.h"

typedef struct {
    const int32_t* tab[ER_MAX_RANK]; /* per box dim: source offset of each index, or 0: affine */
    int32_t dims[ER_MAX_RANK];        /* the box, outermost dim first */
    int32_t out_strides[ER_MAX_RANK]; /* element strides of the box dims in the output */
    int32_t src_strides[ER_MAX_RANK];
    int32_t rank, src_base, out_base; /* rank 0: one element */
    int32_t out_count;                /* output elements (filled first when has_fill) */
    int8_t fill, has_fill;
} er_gather_params;

void er_gather_s8(const er_gather_params* p, const int8_t* in, int8_t* out);

#endif
