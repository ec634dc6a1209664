"""ARG_MAX / ARG_MIN: an int32 index output over one constant axis (an int64 output type becomes int32,
the type TFLite Micro's int8 kernel writes)."""
from __future__ import annotations

from typing import Any

import numpy as np

from converters.importers.tflite_ops.context import TFLiteContext


def arg_extreme(ctx: TFLiteContext, op: Any) -> None:
    """ARG_MAX/ARG_MIN (inputs: data, axis constant)."""
    x, out = ctx.act_in(op, 0), ctx.name(op.outputs[0])
    axis = np.asarray(ctx.value(op, 1)).reshape(-1)
    rank = len(ctx.shape(x))
    if axis.size != 1:
        raise ctx.err(op, f"axis {axis.tolist()} must be a single value")
    ctx.emit(op, op.name, [x], out, {"axis": int(axis[0]) % rank})


REGISTRY = {"ARG_MAX": arg_extreme, "ARG_MIN": arg_extreme}
