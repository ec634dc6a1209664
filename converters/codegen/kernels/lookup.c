/* int8 -> int8 elementwise ops (RELU, RELU6, LOGISTIC, TANH, QUANTIZE, LEAKY_RELU, HARD_SWISH, ABS,
 * NEG, ELU, ...): the op's TFLM integer arithmetic has one result per input value, so the generator
 * evaluates it (through the micro backend's kernel, bit-exact with tflite-micro) on all 256 values
 * and the op becomes a 256-byte table in flash. Safe in place. */
#include "er_kernels.h"

void er_lookup_s8(const int8_t* table, const int8_t* in, int8_t* out, int32_t count) {
    int32_t i;
    for (i = 0; i < count; ++i) out[i] = table[(int32_t)in[i] + 128];
}
