/* MUL, int8 (TFLM reference integer Mul: product of the offset inputs, rescaled to the output). */
#include "er_binary.h"

static int8_t er_mul_one(const er_add_params* p, int32_t a, int32_t b) {
    const int32_t raw = er_mbqm((a + p->a_offset) * (b + p->b_offset), p->out_mult, p->out_shift) + p->out_offset;
    return (int8_t)er_clamp(raw, p->act_min, p->act_max);
}

void er_mul_s8(const er_add_params* p, const int8_t* a, const int8_t* b, int8_t* out) {
    er_binary_s8(p, a, b, out, er_mul_one);
}
