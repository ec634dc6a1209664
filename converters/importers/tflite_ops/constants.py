"""Ops whose result is known at conversion time, folded into constants: SHAPE (static shapes),
ZEROS_LIKE, FILL and BROADCAST_ARGS (of constant shapes), RANGE (of constant bounds); and FLOOR_DIV /
FLOOR_MOD of float values, written as DIV and a FLOOR float island (``a - b * floor(a / b)`` for FLOOR_MOD)."""
from __future__ import annotations

from typing import Any

import numpy as np

from converters.importers.tflite_ops.context import TFLiteContext


def _fold(ctx: TFLiteContext, op: Any, value: np.ndarray) -> None:
    out = ctx.name(op.outputs[0])
    t = ctx.tensors[out]
    t.data = np.ascontiguousarray(value)
    t.shape = tuple(int(d) for d in t.data.shape)


def shape(ctx: TFLiteContext, op: Any) -> None:
    """SHAPE of a tensor (shapes are static): an int32 constant."""
    _fold(ctx, op, np.array(ctx.shape(ctx.act_in(op, 0)), np.int32))


def zeros_like(ctx: TFLiteContext, op: Any) -> None:
    """ZEROS_LIKE: a zero constant of the input's shape (float zeros for float inputs)."""
    t = ctx.sg.tensors[op.inputs[0]]
    dtype = np.float32 if t.type_name == "FLOAT32" else np.int32
    _fold(ctx, op, np.zeros(ctx.shape(ctx.act_in(op, 0)), dtype))


def fill(ctx: TFLiteContext, op: Any) -> None:
    """FILL(dims, value) with both constant."""
    dims = [int(d) for d in np.asarray(ctx.value(op, 0)).reshape(-1)]
    value = np.asarray(ctx.value(op, 1)).reshape(-1)
    if value.size != 1:
        raise ctx.err(op, f"the fill value must be a scalar, got {value.size} values")
    _fold(ctx, op, np.full(dims, value[0], np.float32 if value.dtype.kind == "f" else np.int32))


def broadcast_args(ctx: TFLiteContext, op: Any) -> None:
    """BROADCAST_ARGS of two constant shapes."""
    a, b = (tuple(int(d) for d in np.asarray(ctx.value(op, k)).reshape(-1)) for k in (0, 1))
    try:
        out = np.broadcast_shapes(a, b)
    except ValueError:
        raise ctx.err(op, f"shapes {a} and {b} do not broadcast") from None
    _fold(ctx, op, np.array(out, np.int32))


def range_(ctx: TFLiteContext, op: Any) -> None:
    """RANGE(start, limit, delta) with all three constant."""
    start, limit, delta = (np.asarray(ctx.value(op, k)).reshape(-1) for k in range(3))
    if start.size != 1 or limit.size != 1 or delta.size != 1:
        raise ctx.err(op, "start, limit and delta must be scalars")
    if delta[0] == 0:
        raise ctx.err(op, "delta is 0")
    kind = ctx.sg.tensors[op.outputs[0]].type_name
    _fold(ctx, op, np.arange(start[0], limit[0], delta[0]).astype(np.float32 if kind == "FLOAT32" else np.int32))


def floor_div_mod(ctx: TFLiteContext, op: Any) -> None:
    """FLOOR_DIV / FLOOR_MOD of float values (DIV, FLOOR; FLOOR_MOD then ``a - b * q``)."""
    for k in (0, 1):
        if ctx.sg.tensors[op.inputs[k]].type_name != "FLOAT32":
            raise ctx.err(op, f"input {k} is {ctx.sg.tensors[op.inputs[k]].type_name}; only float values are supported")
    a, b, out = ctx.act_in(op, 0), ctx.act_in(op, 1), ctx.name(op.outputs[0])
    if ctx.tensors[a].is_constant and ctx.tensors[b].is_constant:
        raise ctx.err(op, "operates on constants only")
    shape_ = ctx.shape(out)
    quot = ctx.emit(op, "DIV", [a, b], ctx.tmp(f"{out}/quotient", shape_), {"act": "NONE"})
    if op.name == "FLOOR_DIV":
        ctx.emit(op, "FLOOR", [quot], out)
        return
    q = ctx.emit(op, "FLOOR", [quot], ctx.tmp(f"{out}/floor", shape_))
    bq = ctx.emit(op, "MUL", [q, b], ctx.tmp(f"{out}/multiple", shape_), {"act": "NONE"})
    ctx.emit(op, "SUB", [a, bq], out, {"act": "NONE"})


#: ops folded into constants (their outputs may be integer tensors)
FOLDED = ("SHAPE", "ZEROS_LIKE", "FILL", "BROADCAST_ARGS", "RANGE")
REGISTRY = {"SHAPE": shape, "ZEROS_LIKE": zeros_like, "FILL": fill, "BROADCAST_ARGS": broadcast_args,
            "RANGE": range_,
            "FLOOR_DIV": floor_div_mod, "FLOOR_MOD": floor_div_mod}
