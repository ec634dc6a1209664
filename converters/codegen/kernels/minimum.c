/* MINIMUM, int8 (TFLM: the raw values compared, no rescaling; broadcasting as ADD). Safe in place. */
#include "er_binary.h"
#include "er_minmax.h"

static int8_t er_min_one(const er_add_params* p, int32_t a, int32_t b) {
    (void)p;
    return (int8_t)(a < b ? a : b);
}

void er_minimum_s8(const er_add_params* p, const int8_t* a, const int8_t* b, int8_t* out) {
    er_binary_s8(p, a, b, out, er_min_one);
}
