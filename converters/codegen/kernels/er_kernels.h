/* Parameter blocks and entry points of edge-runtime's generated-C int8 kernels (one op per .c file).
 * The blocks live in flash, so every field has the narrowest type its values need (the generator
 * checks the ranges); per-channel data is stored in the smallest of a few layouts (er_out_stage). */
#ifndef ER_KERNELS_H
#define ER_KERNELS_H
#include <stdint.h>
/* The model's field widths and optional fields (the generator writes each project's own er_config.h). */
#include "er_config.h"

/* Optional code paths, all compiled unless the build leaves one out (-DER_X=0: the generated
 * Makefile does for those its model does not use, converters/codegen/features.py). */
#ifndef ER_WSTREAM
#define ER_WSTREAM 1
#endif
#ifndef ER_WCHUNK
#define ER_WCHUNK 1
#endif
#ifndef ER_WSPLIT
#define ER_WSPLIT 1
#endif
#ifndef ER_RQ_PACKED_USED
#define ER_RQ_PACKED_USED 1
#endif
#ifndef ER_RQ_SPLIT_USED
#define ER_RQ_SPLIT_USED 1
#endif
#ifndef ER_RQ_SCALE_USED
#define ER_RQ_SCALE_USED 1
#endif
#ifndef ER_BIAS32_USED
#define ER_BIAS32_USED 1
#endif
#ifndef ER_BIAS_PACKED_USED
#define ER_BIAS_PACKED_USED 1
#endif

/* Byte arrays of model.c: GCC word-aligns arrays on ARM at -O2 unless told their alignment, which
 * pads the odd-sized packed biases and weight-scale blobs in flash. */
#if defined(__GNUC__)
#define ER_BYTES __attribute__((aligned(1)))
#else
#define ER_BYTES
#endif

/* Parameter blocks without alignment padding: the kernels copy or read their fields once per op, and
 * the Cortex-M3/M4/M7 load words from any byte address. */
#if defined(__GNUC__)
#define ER_PACKED __attribute__((packed))
#else
#define ER_PACKED
#endif

/* Fields a model may leave out of its parameter blocks when every layer has the default value
 * (er_config.h: ER_ACT_FIELDS, ER_BATCH_FIELD, ER_DIL_FIELDS, ER_ROWS_FIELD): read through these. */
#if ER_ACT_FIELDS
#define ER_ACT_MIN(p) ((p)->act_min)
#define ER_ACT_MAX(p) ((p)->act_max)
#else
#define ER_ACT_MIN(p) (-128)
#define ER_ACT_MAX(p) 127
#endif
#if ER_BATCH_FIELD
#define ER_BATCHES(p) ((p)->batches)
#else
#define ER_BATCHES(p) 1
#endif
#if ER_DIL_FIELDS
#define ER_DIL_H(p) ((p)->dil_h)
#define ER_DIL_W(p) ((p)->dil_w)
#else
#define ER_DIL_H(p) 1
#define ER_DIL_W(p) 1
#endif
#if ER_ROWS_FIELD
#define ER_ROWS(p) ((p)->rows)
#else
#define ER_ROWS(p) ((const int16_t*)0)
#endif

/* Keeps a rarely used helper out of its caller (code size), where the compiler understands it. */
#if defined(__GNUC__)
#define ER_NOINLINE __attribute__((noinline))
#else
#define ER_NOINLINE
#endif

/* Layouts of the requantization (multiplier, shift) pairs of an op's output channels. */
#define ER_BIAS_PACKED 0x80 /* er_out_stage.bias_bytes: bit-packed biases (outstage.py), width in bits 0-4 */
#define ER_RQ_ONE 0    /* one pair for all channels: er_out_stage.mult / .shift */
#define ER_RQ_PACKED 1 /* uint32 per channel: bits 0-29 = multiplier - 2**30, bits 30-31 = .shift - shift */
#define ER_RQ_SPLIT 2  /* int32 multiplier per channel, then int8 shift per channel (.channels of each) */
#define ER_RQ_SCALE 3  /* recomputed from the float32 weight scales' bits (requant_scale.py): uint8 blob =
                 * C_lo (3 bytes), then 23 + .channels bits per channel (mantissa, exponent offset);
                 * .mult = C_hi, .shift = the base shift */

/* Bias, requantization, output offset and clamp of CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED. */
typedef struct ER_PACKED {
    const void* bias;  /* bias_bytes (4: int32; ER_BIAS_PACKED | n: n-bit fields) per channel, or 0: no
                          bias or all zero */
    const void* rq;    /* per-channel requantization (rq_kind), 0 for ER_RQ_ONE */
    int32_t mult;      /* ER_RQ_ONE: the multiplier */
    er_dim_t channels; /* ER_RQ_SPLIT: the number of multipliers before the shifts */
    int8_t shift;      /* ER_RQ_ONE: the shift; ER_RQ_PACKED: the largest shift */
    uint8_t rq_kind;   /* ER_RQ_ONE, ER_RQ_PACKED or ER_RQ_SPLIT */
    uint8_t bias_bytes;
    int8_t out_offset;
#if ER_ACT_FIELDS
    int8_t act_min, act_max;
#endif
} er_out_stage;

/* The geometry of a CONV_2D (NHWC input, OHWI filter, groups = in_c / group) or DEPTHWISE_CONV_2D (1HWC
 * filter), in one table of model.c that layers of the same shape share (er_conv_params.shape). */
typedef struct ER_PACKED {
#if ER_ROWS_FIELD
    const int16_t* rows;   /* CONV_2D: the stored filter of each output channel, -1 for an all-zero
                              filter (not stored); 0: every filter stored in channel order */
#endif
    er_ring_t ring_n;      /* in-place ring bytes, negative when the op runs in place backward over its
                              output bytes, 0 when it has its own output buffer */
#if ER_BATCH_FIELD
    er_dim_t batches;
#endif
    er_dim_t in_h, in_w, in_c, out_h, out_w, out_c;
    er_dim_t group;        /* CONV_2D: input channels per filter; DEPTHWISE_CONV_2D: depth multiplier */
    uint8_t k_h, k_w, stride_h, stride_w, pad_t, pad_l;
#if ER_DIL_FIELDS
    uint8_t dil_h, dil_w;
#endif
} er_conv_shape;

/* model.c: the distinct geometries of its convolutions */
extern const er_conv_shape er_conv_shapes[];

/* CONV_2D and DEPTHWISE_CONV_2D: the layer's own constants, and the index of its geometry. */
typedef struct ER_PACKED {
    er_out_stage out;
    const int8_t* weights;
    int8_t in_zp;          /* the input's zero point (the kernel adds -in_zp) */
    uint8_t shape;         /* er_conv_shapes[shape] */
    uint8_t w_split;       /* 1: .weights points to an er_wsplit (CONV_2D), 2: to an er_wchunk (CONV_2D),
                              3: to an er_wstream (CONV_2D), 0: to the filters */
} er_conv_params;

/* Weights whose first rows are entropy-coded (er_rc.h, decoded into RAM before the op) and whose
 * other rows are stored as they are: a row r < rows is at ram + r * len, the others at
 * flash + (r - rows) * len. */
typedef struct {
    const int8_t* ram;
    const int8_t* flash;
    int32_t rows;
} er_wsplit;

/* CONV_2D weights entropy-coded whole and decoded by the kernel itself, `rows` filters at a time
 * into `buf`, each chunk once per inference (output channels outer, pixels inner). The op runs out of
 * place: with `copy` set, its input is first copied there (the op was planned in place). */
typedef struct {
    int8_t* copy;
    int8_t* buf;
    void (*decode)(int8_t* dst, int32_t n);
    int32_t rows;
} er_wchunk;

/* A 1x1 CONV_2D run exactly in place (input and output at one address, in_c = out_c = row length)
 * whose filters are entropy-coded whole but do not fit RAM together: rows [0, rows) are decoded
 * into buf before the op (er_rc_decode); the others are decoded by the kernel one filter at a time
 * for each block of `block` pixels (er_rc_stream: from the decoder state saved at `mark` before the
 * first), their outputs kept after buf's resident rows and one row of out_c bytes until the block's
 * pixels are written; `mark` (ER_RC_MARK_BYTES) follows the kept outputs. */
#define ER_RC_MARK_BYTES 528 /* at least sizeof the decoder's state (er_rc.h), 64-bit hosts included */
typedef struct {
    int8_t* buf;
    void (*decode)(int8_t* dst, int32_t n, int8_t* mark, int32_t mode);
    int16_t rows, block;
} er_wstream;

typedef struct ER_PACKED {
    er_out_stage out;
    const int8_t* weights; /* units x accum */
    er_ring_t ring_n;
    er_dim_t accum, batches, units;
    int8_t in_zp;          /* the input's zero point (the kernel adds -in_zp) */
    int8_t ring_dir;
    uint8_t w_split;       /* 1: .weights points to an er_wsplit */
} er_fc_params;

typedef struct ER_PACKED {
#if ER_BATCH_FIELD
    er_dim_t batches;
#endif
    er_dim_t in_h, in_w, channels, out_h, out_w;
    uint8_t k_h, k_w, stride_h, stride_w, pad_t, pad_l;
#if ER_ACT_FIELDS
    int8_t act_min, act_max;
#endif
} er_pool_params;

#define ER_MAX_RANK 6
/* Broadcasting of ADD / SUB / MUL (absent when both inputs have the output's shape). */
typedef struct {
    int32_t rank;
    int32_t dims[ER_MAX_RANK];      /* output shape */
    int32_t a_strides[ER_MAX_RANK]; /* element strides, 0 along broadcast axes */
    int32_t b_strides[ER_MAX_RANK];
} er_bcast;

/* ADD / SUB / MUL (int8). MUL uses the offsets, the output multiplier/shift and the clamp. */
typedef struct {
    const er_bcast* bcast;          /* 0: both inputs have the output's shape */
    int32_t count;                  /* output elements */
    int32_t a_mult, b_mult, out_mult;
    int16_t a_offset, b_offset;
    int8_t left_shift, a_shift, b_shift, out_shift;
    int8_t out_offset, act_min, act_max;
} er_add_params;

typedef struct ER_PACKED {
    int32_t beta_mult, diff_min;
    er_dim_t rows, depth;
    int8_t beta_left_shift;
} er_softmax_params;

void er_conv_s8(const er_conv_params* p, const int8_t* in, int8_t* out, int8_t* ring);
void er_depthwise_conv_s8(const er_conv_params* p, const int8_t* in, int8_t* out, int8_t* ring);
void er_fully_connected_s8(const er_fc_params* p, const int8_t* in, int8_t* out, int8_t* ring);
void er_average_pool_s8(const er_pool_params* p, const int8_t* in, int8_t* out);
void er_max_pool_s8(const er_pool_params* p, const int8_t* in, int8_t* out);
void er_add_s8(const er_add_params* p, const int8_t* a, const int8_t* b, int8_t* out);
void er_sub_s8(const er_add_params* p, const int8_t* a, const int8_t* b, int8_t* out);
void er_mul_s8(const er_add_params* p, const int8_t* a, const int8_t* b, int8_t* out);
/* table[x + 128] is the op's output for input x (int8 elementwise ops, see lookup.c). */
void er_lookup_s8(const int8_t* table, const int8_t* in, int8_t* out, int32_t count);
void er_softmax_s8(const er_softmax_params* p, const int8_t* in, int8_t* out);

#endif
