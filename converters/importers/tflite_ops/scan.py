"""CUMSUM (constant axis) and GATHER_ND (constant indices, or run-time integer indices into a constant table)."""
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
    """GATHER_ND with constant int32 indices, or from a constant float table with run-time integer index tuples
    (token ids, selected from an integer input)."""
    x = ctx.act_in(op, 0)
    ind = ctx.name(op.inputs[1])
    if ind in ctx.int_names:
        table = ctx.tensors[x]
        if table.data is None or table.data.dtype.kind != "f":
            raise ctx.err(op, "GATHER_ND with run-time indices needs a constant float table (an embedding)")
        ctx.emit(op, "GATHER_ND", [x, ind], ctx.name(op.outputs[0]))
        return
    idx = np.asarray(ctx.value(op, 1))
    if idx.dtype.kind not in "iu":
        raise ctx.err(op, f"indices must be integers, got {idx.dtype}")
    ctx.emit(op, "GATHER_ND", [x, ctx.name(op.inputs[1])], ctx.name(op.outputs[0]))


REGISTRY = {"CUMSUM": cumsum, "GATHER_ND": gather_nd}
