/* Decoder of the generator's entropy-coded weights (converters/codegen/wcoder.py): an adaptive binary
 * range decoder, each weight's zigzag code read MSB first down a bit tree of 255 adaptive 12-bit
 * probabilities. One stream per model; the state lives in RAM (no table in flash). Included by
 * model.c only when it codes weights: er_rc_init at the start of an inference, then er_rc_decode of
 * each coded part, in the order the generator wrote them. */
#ifndef ER_RC_H
#define ER_RC_H
#include <stdint.h>
#include <string.h>

#define ER_RC_PROB_BITS 12
#define ER_RC_MOVE_BITS 7
#define ER_RC_TOP (1u << 24)

typedef struct {
    const uint8_t* p;
    uint32_t range, code;
    uint16_t prob[256];
} er_rc_state;

static er_rc_state er_rc;

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
/* Rows a kernel decodes several times per inference (er_wstream), coded adaptively like the rest:
 * mode 0 saves the decoder's whole state (stream position and probabilities) at `mark` (RAM of the
 * op's decode region, ER_RC_MARK_BYTES) and decodes, 1 goes back to that state and decodes, 2
 * decodes on. */
#ifndef ER_RC_MARK_BYTES
#define ER_RC_MARK_BYTES 528 /* as er_kernels.h */
#endif
typedef char er_rc_mark_fits[sizeof(er_rc_state) <= ER_RC_MARK_BYTES ? 1 : -1];

static void er_rc_stream(int8_t* dst, int32_t n, int8_t* mark, int32_t mode) {
    if (mode == 0) memcpy(mark, &er_rc, sizeof er_rc);
    else if (mode == 1) memcpy(&er_rc, mark, sizeof er_rc);
    er_rc_decode(dst, n);
}
#endif

#endif
