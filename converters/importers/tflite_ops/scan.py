"""CUMSUM (constant axis) and GATHER_ND (constant indices)."""
from __future__ import annotations

from typing import Any

import numpy as np

from converters.importers.tflite_ops.context import TFLiteContext


def cumsum(ctx: TFLiteContext, op: Any) -> None:
    """CUMSUM (CumsumOptions: exclusive, reverse)."""
    x = ctx.act_in(op, 0)
    axis = np.asarray(ctx.value(op, 1)).reshape(-1)
    if axis.size != 1:
        raise ctx.err(op, f"axis {axis.tolist()} must be a single value")
    ctx.emit(op, "CUMSUM", [x], ctx.name(op.outputs[0]),
             {"axis": int(axis[0]) % len(ctx.shape(x)), "exclusive": bool(ctx.option(op, 0, "b", 0)),
              "reverse": bool(ctx.option(op, 1, "b", 0))})


def gather_nd(ctx: TFLiteContext, op: Any) -> None:
    """GATHER_ND with constant int32 indices."""
    x = ctx.act_in(op, 0)
    idx = np.asarray(ctx.value(op, 1))
    if idx.dtype.kind not in "iu":
        raise ctx.err(op, f"indices must be integers, got {idx.dtype}")
    ctx.emit(op, "GATHER_ND", [x, ctx.name(op.inputs[1])], ctx.name(op.outputs[0]))


REGISTRY = {"CUMSUM": cumsum, "GATHER_ND": gather_nd}
