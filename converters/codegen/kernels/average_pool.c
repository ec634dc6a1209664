/* AVERAGE_POOL_2D, int8 (TFLM reference AveragePool: padding not counted, rounding half away from zero). */
#include "er_pool.h"

void er_average_pool_s8(const er_pool_params* p, const int8_t* in, int8_t* out) { er_pool_s8(p, in, out, 0); }
