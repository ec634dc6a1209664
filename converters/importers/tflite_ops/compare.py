"""Comparisons (bool outputs), LOGICAL_AND/OR/NOT and SELECT_V2, kept as they are (masks are never
quantized; SELECT_V2's two choices, activations or constants, share the output's int8 parameters);
SELECT (v1) as SELECT_V2 where their semantics agree (a condition of the values' shape, or a scalar one)."""
from __future__ import annotations

from typing import Any

import numpy as np

from converters.importers.tflite_ops.context import TFLiteContext
from converters.ir import COMPARE_KINDS, LOGICAL_KINDS


def _check_float(ctx: TFLiteContext, op: Any, k: int) -> None:
    t = ctx.sg.tensors[op.inputs[k]]
    if t.type_name != "FLOAT32":
        raise ctx.err(op, f"input {k} is {t.type_name}; only comparisons of float values are supported")


def compare(ctx: TFLiteContext, op: Any) -> None:
    """EQUAL/NOT_EQUAL/GREATER/GREATER_EQUAL/LESS/LESS_EQUAL of float values (broadcasting)."""
    for k in (0, 1):
        _check_float(ctx, op, k)
    a, b = ctx.act_in(op, 0), ctx.act_in(op, 1)
    if ctx.tensors[a].is_constant and ctx.tensors[b].is_constant:
        raise ctx.err(op, "compares two constants")
    ctx.emit(op, op.name, [a, b], ctx.name(op.outputs[0]))


def logical(ctx: TFLiteContext, op: Any) -> None:
    """LOGICAL_AND/OR/NOT of masks."""
    ins = [ctx.act_in(op, k) for k in range(len(op.inputs))]
    if any(ctx.tensors[i].is_constant for i in ins):
        raise ctx.err(op, "a constant mask is not supported here; fold it before conversion")
    ctx.emit(op, op.name, ins, ctx.name(op.outputs[0]))


def select(ctx: TFLiteContext, op: Any) -> None:
    """SELECT_V2(condition, x, y) on float values (a mask or a constant bool condition). Constant choices (both
    may be, e.g. ``select(week > 0, 1.0, 0.0)``) are inputs quantized at the output's int8 parameters; an
    all-constant selection was folded before (:mod:`.fold`)."""
    for k in (1, 2):
        _check_float(ctx, op, k)
    # (a constant choice other operators read too gets this op's own copy: it takes the output's int8 parameters)
    ins = [ctx.act_in(op, 0), ctx.joined_in(op, 1), ctx.joined_in(op, 2)]
    if ctx.tensors[ins[0]].is_constant and ctx.tensors[ins[1]].is_constant and ctx.tensors[ins[2]].is_constant:
        raise ctx.err(op, "selects between constants on a constant condition")
    ctx.emit(op, "SELECT_V2", ins, ctx.name(op.outputs[0]))


def select_v1(ctx: TFLiteContext, op: Any) -> None:
    """SELECT(condition, x, y): SELECT_V2 when the condition has the values' shape or one element (SELECT
    v1's rank-1 condition picking whole rows of higher-rank values is refused)."""
    cond, x, y = (ctx.shape(ctx.act_in(op, k)) for k in range(3))
    out = ctx.shape(ctx.name(op.outputs[0]))
    if x != y or (cond != x and int(np.prod(cond)) != 1):
        raise ctx.err(op, f"condition {list(cond)} and values {list(x)}, {list(y)}: only a condition of the "
                          "values' shape (or a scalar) is supported")
    if out != x:
        raise ctx.err(op, f"output {list(out)} differs from the values {list(x)}")
    select(ctx, op)


REGISTRY = {**{k: compare for k in COMPARE_KINDS}, **{k: logical for k in LOGICAL_KINDS}, "SELECT_V2": select,
            "SELECT": select_v1}
