/* MAX_POOL_2D, int8 (TFLM reference MaxPool: padding ignored). */
#include "er_pool.h"

void er_max_pool_s8(const er_pool_params* p, const int8_t* in, int8_t* out) { er_pool_s8(p, in, out, 1); }
