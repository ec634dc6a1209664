/* PRELU, int8 input and alpha (TFLM reference: the offset input rescaled by s_in / s_out where it is
 * >= 0, else its product with the offset alpha by s_in * s_alpha / s_out; alpha broadcast to the
 * input). er_add_params: a = input, b = alpha; a_mult/a_shift and b_mult/b_shift are the two
 * multipliers. Safe in place over the input. */
#include "er_binary.h"
#include "er_minmax.h"

static int8_t er_prelu_one(const er_add_params* p, int32_t x, int32_t alpha) {
    const int32_t v = x + p->a_offset;
    const int32_t r = v >= 0 ? er_mbqm(v, p->a_mult, p->a_shift)
                             : er_mbqm(v * (alpha + p->b_offset), p->b_mult, p->b_shift);
    return (int8_t)er_clamp(r + p->out_offset, p->act_min, p->act_max);
}

void er_prelu_s8(const er_add_params* p, const int8_t* x, const int8_t* alpha, int8_t* out) {
    er_binary_s8(p, x, alpha, out, er_prelu_one);
}
