/* Entry points of MAXIMUM, MINIMUM and PRELU (int8, two inputs broadcast as ADD's, er_add_params). */
#ifndef ER_MINMAX_H
#define ER_MINMAX_H
#include "er_kernels.h"

void er_maximum_s8(const er_add_params* p, const int8_t* a, const int8_t* b, int8_t* out);
void er_minimum_s8(const er_add_params* p, const int8_t* a, const int8_t* b, int8_t* out);
void er_prelu_s8(const er_add_params* p, const int8_t* x, const int8_t* alpha, int8_t* out);

#endif
