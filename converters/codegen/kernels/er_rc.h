/* Decoder of the generator's entropy-coded weights (converters/codegen/wcoder.py): an adaptive binary
 * range decoder, each weight's zigzag code read MSB first down a bit tree of 255 adaptive 11-bit
 * probabilities. One stream per model; the state lives in RAM (no table in flash). Included by
 * model.c only when it codes weights: er_rc_init at the start of an inference, then er_rc_decode of
 * each coded part, in the order the generator wrote them. */
#ifndef ER_RC_H
#define ER_RC_H
#include <stdint.h>

#define ER_RC_PROB_BITS 11
#define ER_RC_MOVE_BITS 6
#define ER_RC_TOP (1u << 24)

static struct {
    const uint8_t* p;
    uint32_t range, code;
    uint16_t prob[256];
#ifdef ER_RC_STREAM
    const uint8_t* mark_p; /* er_rc_frozen: where the rows decoded again start */
    uint32_t mark_range, mark_code;
#endif
} er_rc;

static void er_rc_init(const uint8_t* stream) {
    int32_t i;
    er_rc.p = stream + 5;
    er_rc.range = 0xFFFFFFFFu;
    er_rc.code = ((uint32_t)stream[1] << 24) | ((uint32_t)stream[2] << 16) | ((uint32_t)stream[3] << 8) | stream[4];
    for (i = 0; i < 256; ++i) er_rc.prob[i] = 1u << (ER_RC_PROB_BITS - 1);
}

static void er_rc_decode(int8_t* dst, int32_t n) {
    const uint8_t* p = er_rc.p;
    uint32_t range = er_rc.range, code = er_rc.code;
    uint16_t* const prob = er_rc.prob;
    int32_t i, k;
    for (i = 0; i < n; ++i) {
        uint32_t node = 1, z;
        for (k = 0; k < 8; ++k) {
            const uint32_t q = prob[node];
            const uint32_t bound = (range >> ER_RC_PROB_BITS) * q;
            if (code < bound) {
                range = bound;
                prob[node] = (uint16_t)(q + (((1u << ER_RC_PROB_BITS) - q) >> ER_RC_MOVE_BITS));
                node <<= 1;
            } else {
                range -= bound;
                code -= bound;
                prob[node] = (uint16_t)(q - (q >> ER_RC_MOVE_BITS));
                node = (node << 1) | 1u;
            }
            if (range < ER_RC_TOP) {
                range <<= 8;
                code = (code << 8) | *p++;
            }
        }
        z = node - 256u;
        dst[i] = (int8_t)((z & 1u) ? -(int32_t)((z + 1u) >> 1) : (int32_t)(z >> 1));
    }
    er_rc.p = p;
    er_rc.range = range;
    er_rc.code = code;
}

#ifdef ER_RC_STREAM
/* Rows coded with the probabilities frozen (wcoder.py, adapt=False), which a kernel decodes several
 * times per inference (er_wstream): mode 0 marks the stream position and decodes, 1 goes back to the
 * mark and decodes, 2 decodes on. The probabilities are only read, so the mark is three words. */
static void er_rc_frozen(int8_t* dst, int32_t n, int32_t mode) {
    const uint16_t* const prob = er_rc.prob;
    const uint8_t* p;
    uint32_t range, code;
    int32_t i, k;
    if (mode == 0) {
        er_rc.mark_p = er_rc.p;
        er_rc.mark_range = er_rc.range;
        er_rc.mark_code = er_rc.code;
    }
    p = mode == 1 ? er_rc.mark_p : er_rc.p;
    range = mode == 1 ? er_rc.mark_range : er_rc.range;
    code = mode == 1 ? er_rc.mark_code : er_rc.code;
    for (i = 0; i < n; ++i) {
        uint32_t node = 1;
        for (k = 0; k < 8; ++k) {
            const uint32_t bound = (range >> ER_RC_PROB_BITS) * prob[node];
            node <<= 1;
            if (code < bound) {
                range = bound;
            } else {
                range -= bound;
                code -= bound;
                node |= 1u;
            }
            if (range < ER_RC_TOP) {
                range <<= 8;
                code = (code << 8) | *p++;
            }
        }
        node -= 256u;
        dst[i] = (int8_t)((node & 1u) ? -(int32_t)((node + 1u) >> 1) : (int32_t)(node >> 1));
    }
    er_rc.p = p;
    er_rc.range = range;
    er_rc.code = code;
}
#endif

#endif
