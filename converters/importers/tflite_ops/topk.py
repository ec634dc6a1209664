"""TOPK_V2 (the k largest values along the last axis and their int32 indices) of a float .tflite.

k = 1 is written in ops TFLite Micro has (REDUCE_MAX and ARG_MAX; ties: the lowest index, as TOPK_V2);
k > 1 stays one TOPK_V2 (LiteRT runs it; TFLite Micro has no kernel, so the converter keeps it for
LiteRT profiles: :data:`converters.ir.LITERT_ONLY_KINDS`).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from converters.importers.tflite_ops.context import TFLiteContext
from converters.ir import Op


def topk(ctx: TFLiteContext, op: Any) -> None:
    """TOPK_V2(x, k) with a constant k in ``[1, depth]``: values and int32 indices on the last axis."""
    x = ctx.act_in(op, 0)
    k = np.asarray(ctx.value(op, 1)).reshape(-1)
    shape = ctx.shape(x)
    if not shape:
        raise ctx.err(op, "the input is a scalar; TOPK_V2 needs at least one axis")
    depth = int(shape[-1])
    if k.size != 1 or not 1 <= int(k[0]) <= depth:
        raise ctx.err(op, f"k={k.tolist()} must be one value in [1, {depth}] (the last axis' size)")
    axis = len(shape) - 1
    values, indices = (ctx.name(o) for o in op.outputs)
    if int(k[0]) == 1:
        ctx.emit(op, "REDUCE_MAX", [x], values, {"axes": (axis,), "keep_dims": True})
        idx = ctx.emit(op, "ARG_MAX", [x], ctx.tmp(f"{indices}/argmax", tuple(shape[:-1])), {"axis": axis})
        ctx.emit(op, "RESHAPE", [idx], indices)
        return
    ctx.ops.append(Op("TOPK_V2", [x], [values, indices], {"k": int(k[0])}, name=f"op{op.index}:{op.name}"))


#: ops here with an integer output (TOPK_V2's indices)
INDEX_OUTPUTS = ("TOPK_V2",)
REGISTRY = {"TOPK_V2": topk}
