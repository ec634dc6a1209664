/* Parameter blocks and entry points of edge-runtime's generated-C int8 kernels (one op per .c file). */
#ifndef ER_KERNELS_H
#define ER_KERNELS_H
#include <stdint.h>

/* CONV_2D (NHWC input, OHWI filter, groups = in_c / filter_in_c) and DEPTHWISE_CONV_2D (1HWC filter). */
typedef struct {
    int32_t batches, in_h, in_w, in_c, out_h, out_w, out_c;
    int32_t k_h, k_w, stride_h, stride_w, dil_h, dil_w, pad_t, pad_l;
    int32_t filter_in_c;   /* CONV_2D: input channels per filter */
    int32_t depth_mult;    /* DEPTHWISE_CONV_2D */
    int32_t in_offset, out_offset, act_min, act_max;
    const int8_t* weights;
    const int32_t* bias;   /* may be 0 */
    const int32_t* mult;   /* one per output channel */
    const int8_t* shift;
    int32_t ring_n;        /* in-place ring bytes, 0 when the op has its own output buffer */
    int32_t ring_dir;      /* in place: +1 forward, -1 backward over the output bytes */
} er_conv_params;

typedef struct {
    int32_t batches, accum, units;
    int32_t in_offset, filter_offset, out_offset, act_min, act_max;
    const int8_t* weights; /* units x accum */
    const int32_t* bias;   /* may be 0 */
    const int32_t* mult;   /* per unit, or one when per_channel is 0 */
    const int8_t* shift;
    int32_t per_channel;
    int32_t ring_n, ring_dir;
} er_fc_params;

typedef struct {
    int32_t batches, in_h, in_w, channels, out_h, out_w;
    int32_t k_h, k_w, stride_h, stride_w, pad_t, pad_l;
    int32_t act_min, act_max;
} er_pool_params;

#define ER_MAX_RANK 6
/* ADD / SUB / MUL (int8, broadcasting up to rank 6). */
typedef struct {
    int32_t count;                  /* output elements */
    int32_t rank;
    int32_t dims[ER_MAX_RANK];      /* output shape */
    int32_t a_strides[ER_MAX_RANK]; /* element strides, 0 along broadcast axes */
    int32_t b_strides[ER_MAX_RANK];
    int32_t broadcast;              /* 0: both inputs have the output's shape */
    int32_t a_offset, b_offset, left_shift;
    int32_t a_mult, a_shift, b_mult, b_shift, out_mult, out_shift;
    int32_t out_offset, act_min, act_max;
} er_add_params;

typedef struct {
    int32_t rows, depth;
    int32_t beta_mult, beta_left_shift, diff_min;
} er_softmax_params;

void er_conv_s8(const er_conv_params* p, const int8_t* in, int8_t* out, int8_t* ring);
void er_depthwise_conv_s8(const er_conv_params* p, const int8_t* in, int8_t* out, int8_t* ring);
void er_fully_connected_s8(const er_fc_params* p, const int8_t* in, int8_t* out, int8_t* ring);
void er_average_pool_s8(const er_pool_params* p, const int8_t* in, int8_t* out);
void er_max_pool_s8(const er_pool_params* p, const int8_t* in, int8_t* out);
void er_add_s8(const er_add_params* p, const int8_t* a, const int8_t* b, int8_t* out);
/* SUB uses er_add_params as ADD does; MUL uses its offsets, output multiplier/shift and clamp. */
void er_sub_s8(const er_add_params* p, const int8_t* a, const int8_t* b, int8_t* out);
void er_mul_s8(const er_add_params* p, const int8_t* a, const int8_t* b, int8_t* out);
/* table[x + 128] is the op's output for input x (int8 elementwise ops, see lookup.c). */
void er_lookup_s8(const int8_t* table, const int8_t* in, int8_t* out, int32_t count);
void er_softmax_s8(const er_softmax_params* p, const int8_t* in, int8_t* out);

#endif
