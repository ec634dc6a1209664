/* The field widths and optional fields of the parameter blocks. The generator writes each project's
 * own er_config.h (converters/codegen/fields.py) with the narrowest widths its model allows; this
 * default has the widest, every field present. */
#ifndef ER_CONFIG_H
#define ER_CONFIG_H
#include <stdint.h>

typedef int32_t er_dim_t;   /* dimensions and counts */
typedef int32_t er_ring_t;  /* in-place ring bytes (signed) */
#define ER_ACT_FIELDS 1     /* act_min / act_max stored (else -128 / 127 for every layer) */
#define ER_BATCH_FIELD 1    /* batches stored in conv geometries and pool blocks (else 1) */
#define ER_DIL_FIELDS 1     /* dil_h / dil_w stored in conv geometries (else 1) */
#define ER_ROWS_FIELD 1     /* the row index pointer stored in conv geometries (else none) */

#endif
