"""Comparisons (bool outputs), LOGICAL_AND/OR/NOT and SELECT_V2, kept as they are (masks are never
quantized; SELECT_V2's two choices share the output's int8 parameters)."""
from __future__ import annotations

from typing import Any

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
    """SELECT_V2(condition, x, y) on float values (a mask or a constant bool condition)."""
    for k in (1, 2):
        _check_float(ctx, op, k)
    ins = [ctx.act_in(op, k) for k in range(3)]
    if ctx.tensors[ins[1]].is_constant and ctx.tensors[ins[2]].is_constant:
        raise ctx.err(op, "selects between two constants")
    ctx.emit(op, "SELECT_V2", ins, ctx.name(op.outputs[0]))


REGISTRY = {**{k: compare for k in COMPARE_KINDS}, **{k: logical for k in LOGICAL_KINDS}, "SELECT_V2": select}
