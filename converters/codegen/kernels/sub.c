/* SUB, int8 (TFLM reference integer Sub: inputs rescaled to a common scale, then to the output). */
#include "er_binary.h"

static int8_t er_sub_one(const er_add_params* p, int32_t a, int32_t b) { return er_add_sub_one(p, a, b, -1); }

void er_sub_s8(const er_add_params* p, const int8_t* a, const int8_t* b, int8_t* out) {
    er_binary_s8(p, a, b, out, er_sub_one);
}
