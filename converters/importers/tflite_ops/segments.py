"""Segment reductions with constant segment ids, in ops TFLite Micro has (TOPK_V2 moved to :mod:`.topk`).

- SEGMENT_SUM / UNSORTED_SEGMENT_SUM: one FULLY_CONNECTED with a constant 0/1 membership matrix (exact
  in int8) between two TRANSPOSEs; an empty segment sums to 0 as in LiteRT;
- UNSORTED_SEGMENT_MAX / MIN / PROD: per segment, a GATHER of its rows and a reduction over them
  (REDUCE_MAX; MIN as ``-max(-x)``; PROD a MUL chain), concatenated; an empty segment is refused (LiteRT
  fills it with the lowest/highest float or 1).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from converters.importers.tflite_ops.context import TFLiteContext
from converters.importers.tflite_ops.powers import MAX_FACTORS, product_along

#: the most segments a MAX/MIN/PROD reduction is written out for (one GATHER and reduction each)
MAX_SEGMENTS = 64


def _ids(ctx: TFLiteContext, op: Any, n_rows: int) -> tuple[np.ndarray, int]:
    """The constant segment ids (one per row of the data) and the number of segments."""
    ids = np.asarray(ctx.value(op, 1)).astype(np.int64).reshape(-1)
    if ids.size != n_rows:
        raise ctx.err(op, f"{ids.size} segment ids for {n_rows} rows; one id per row of the data is supported")
    if ids.size and ids.min() < 0:
        raise ctx.err(op, "negative segment ids (rows LiteRT drops) are not supported")
    if op.name == "SEGMENT_SUM":
        if np.any(np.diff(ids) < 0):
            raise ctx.err(op, "segment ids must be sorted")
        count = int(ids.max()) + 1 if ids.size else 0
    else:
        count = int(np.asarray(ctx.value(op, 2)).reshape(-1)[0])
        if ids.size and ids.max() >= count:
            raise ctx.err(op, f"segment id {int(ids.max())} is not below num_segments {count}")
    return ids, count


def segment_reduce(ctx: TFLiteContext, op: Any) -> None:
    """SEGMENT_SUM and UNSORTED_SEGMENT_SUM/MAX/MIN/PROD over the first axis of the data."""
    x, out = ctx.act_in(op, 0), ctx.name(op.outputs[0])
    shape = ctx.shape(x)
    if ctx.tensors[x].is_constant:
        raise ctx.err(op, "the data is a constant; only computed data is supported")
    ids, count = _ids(ctx, op, shape[0])
    rest = tuple(shape[1:])
    width = int(np.prod(rest, dtype=np.int64))
    if op.name.endswith("SUM"):
        member = (ids[None, :] == np.arange(count)[:, None]).astype(np.float32)  # [segments, rows]
        flat = ctx.emit(op, "RESHAPE", [x], ctx.tmp(f"{out}/rows", (shape[0], width)))
        cols = ctx.emit(op, "TRANSPOSE", [flat], ctx.tmp(f"{out}/columns", (width, shape[0])), {"perm": (1, 0)})
        s = ctx.emit(op, "FULLY_CONNECTED", [cols, ctx.add_const(f"{out}/membership", member),
                                             ctx.add_const(f"{out}/bias", np.zeros(count))],
                     ctx.tmp(f"{out}/sums", (width, count)), {"act": "NONE"})
        back = ctx.emit(op, "TRANSPOSE", [s], ctx.tmp(f"{out}/segments", (count, width)), {"perm": (1, 0)})
        ctx.emit(op, "RESHAPE", [back], out)
        return
    if count > MAX_SEGMENTS:
        raise ctx.err(op, f"{count} segments; at most {MAX_SEGMENTS} are written out")
    parts = []
    for s in range(count):
        rows = np.flatnonzero(ids == s).astype(np.int32)
        if rows.size == 0:
            raise ctx.err(op, f"segment {s} is empty (LiteRT fills it with a limit value); not supported")
        if op.name.endswith("PROD") and rows.size - 1 > MAX_FACTORS:
            raise ctx.err(op, f"segment {s} multiplies {rows.size} rows; at most {MAX_FACTORS + 1} are written out")
        g = ctx.emit(op, "GATHER", [x, ctx.add_const(f"{out}/rows{s}", rows, np.int32)],
                     ctx.tmp(f"{out}/segment{s}", (rows.size,) + rest), {"axis": 0})
        one = ctx.tmp(f"{out}/reduced{s}", (1,) + rest)
        if op.name.endswith("PROD"):
            parts.append(product_along(ctx, op, g, 0, one))
        elif op.name.endswith("MAX"):
            parts.append(ctx.emit(op, "REDUCE_MAX", [g], one, {"axes": (0,), "keep_dims": True}))
        else:
            minus = ctx.add_const(f"{out}/minus_one", np.array([-1.0]))
            neg = ctx.emit(op, "MUL", [g, minus], ctx.tmp(f"{out}/negated{s}", (rows.size,) + rest), {"act": "NONE"})
            m = ctx.emit(op, "REDUCE_MAX", [neg], ctx.tmp(f"{out}/max{s}", (1,) + rest),
                         {"axes": (0,), "keep_dims": True})
            parts.append(ctx.emit(op, "MUL", [m, minus], one, {"act": "NONE"}))
    if len(parts) == 1:
        ctx.emit(op, "RESHAPE", parts, out)
    else:
        ctx.emit(op, "CONCATENATION", parts, out, {"axis": 0, "act": "NONE"})


REGISTRY = {"SEGMENT_SUM": segment_reduce, "UNSORTED_SEGMENT_SUM": segment_reduce,
            "UNSORTED_SEGMENT_MAX": segment_reduce, "UNSORTED_SEGMENT_MIN": segment_reduce,
            "UNSORTED_SEGMENT_PROD": segment_reduce}
