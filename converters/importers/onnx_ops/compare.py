"""Comparisons, logical ops and Where (masks): bool tensors, never quantized.

Equal/Greater/Less/GreaterOrEqual/LessOrEqual compare two float values (activations or constants, with
broadcasting) into a bool mask; Not/And/Or combine masks; Where selects between two float values (TFLite's
SELECT_V2; both choices share the output's int8 parameters). ThresholdedRelu, Sign and Shrink are written
with them. A comparison of indices or masks (ArgMax outputs, other comparisons) is refused with one line.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from converters.importers.onnx_ops.context import ImportContext, const_to_ir
from converters.ir import RAW_OUTPUT_KINDS

COMPARE = {"Equal": "EQUAL", "Greater": "GREATER", "Less": "LESS", "GreaterOrEqual": "GREATER_EQUAL",
           "LessOrEqual": "LESS_EQUAL"}
LOGICAL = {"And": "LOGICAL_AND", "Or": "LOGICAL_OR", "Not": "LOGICAL_NOT"}


def _raw(ctx: ImportContext, x: str) -> bool:
    """True when IR tensor ``x`` holds indices or a mask (the output of such an op, through RESHAPEs)."""
    op = ctx.producer(x)
    while op is not None and op.kind == "RESHAPE":
        op = ctx.producer(op.inputs[0])
    return op is not None and op.kind in RAW_OUTPUT_KINDS


def _rank(ctx: ImportContext, node: Any) -> int:
    return len(ctx.src_shape(node, node.output[0]))


def compare(ctx: ImportContext, node: Any, a: dict) -> None:
    """Equal/Greater/Less/GreaterOrEqual/LessOrEqual on float values -> a bool mask."""
    rank = _rank(ctx, node)
    ins = []
    for n in node.input[:2]:
        if ctx.is_const(n) and np.asarray(ctx.const(node, n)).dtype.kind not in "fiu":
            raise ctx.err(node, f"comparison of the {np.asarray(ctx.const(node, n)).dtype} constant '{n}' is not "
                                "supported; compare float values")
        ir = ctx.broadcast_operand(node, n, rank)
        if not ctx.tensors[ir].is_constant and _raw(ctx, ir):
            raise ctx.err(node, f"comparison of '{n}', which holds indices or a mask, is not supported; compare the "
                                "float values they come from")
        ins.append(ir)
    if all(ctx.tensors[i].is_constant for i in ins):
        raise ctx.err(node, "compares two constants; fold it before conversion")
    ctx.emit(COMPARE[node.op_type], ins, node.output[0], {}, node)


def logical(ctx: ImportContext, node: Any, a: dict) -> None:
    """Not/And/Or on masks produced by comparisons (same shapes, or broadcast)."""
    rank = _rank(ctx, node)
    ins = []
    for n in node.input:
        if ctx.is_const(n):
            raise ctx.err(node, f"a constant mask '{n}' is not supported here; fold it before conversion")
        x = ctx.lift(node, ctx.act(node, n), ctx.src_shape(node, n), rank)
        if not _raw(ctx, x):
            raise ctx.err(node, f"input '{n}' is not a mask made by a comparison")
        ins.append(x)
    ctx.emit(LOGICAL[node.op_type], ins, node.output[0], {}, node)


def where(ctx: ImportContext, node: Any, a: dict) -> None:
    """Where(condition, x, y) -> SELECT_V2 (the condition a mask or a bool constant)."""
    rank = _rank(ctx, node)
    c = node.input[0]
    if ctx.is_const(c):
        cond = ctx.add_const(f"{c}/ir", const_to_ir(np.asarray(ctx.const(node, c)).astype(np.bool_), rank), np.bool_)
    else:
        cond = ctx.lift(node, ctx.act(node, c), ctx.src_shape(node, c), rank)
        if not _raw(ctx, cond):
            raise ctx.err(node, f"condition '{c}' is not a mask made by a comparison")
    values = [ctx.broadcast_operand(node, n, rank) for n in node.input[1:3]]
    if any(not ctx.tensors[v].is_constant and _raw(ctx, v) for v in values):
        raise ctx.err(node, "selecting between indices or masks is not supported; select float values")
    if ctx.tensors[cond].is_constant and all(ctx.tensors[v].is_constant for v in values):
        raise ctx.err(node, "selects between two constants on a constant condition; fold it before conversion")
    # two constant choices on a run-time mask (a 0/1 weight, a -inf/0 attention mask) are quantized at the
    # output's parameters, as int8 SELECT_V2 copies bytes
    ctx.emit("SELECT_V2", [cond] + values, node.output[0], {}, node)


def thresholded_relu(ctx: ImportContext, node: Any, a: dict) -> None:
    """ThresholdedRelu: ``x if x > alpha else 0`` -> SELECT_V2(GREATER(x, alpha), x, 0)."""
    x, out = ctx.act(node, node.input[0]), node.output[0]
    shape = ctx.ir_shape(x)
    alpha = ctx.add_const(f"{out}/alpha", np.array([float(a.get("alpha", 1.0))]))
    mask = ctx.emit("GREATER", [x, alpha], ctx.tmp(f"{out}/above", shape), {}, node, shape=shape)
    ctx.emit("SELECT_V2", [mask, x, ctx.add_const(f"{out}/zero", np.array([0.0]))], out, {}, node)


def sign(ctx: ImportContext, node: Any, a: dict) -> None:
    """Sign: SELECT_V2(x > 0, 1, SELECT_V2(x < 0, -1, 0))."""
    x, out = ctx.act(node, node.input[0]), node.output[0]
    shape = ctx.ir_shape(x)
    zero = ctx.add_const(f"{out}/zero", np.array([0.0]))
    pos = ctx.emit("GREATER", [x, zero], ctx.tmp(f"{out}/positive", shape), {}, node, shape=shape)
    neg = ctx.emit("LESS", [x, zero], ctx.tmp(f"{out}/negative", shape), {}, node, shape=shape)
    low = ctx.emit("SELECT_V2", [neg, ctx.add_const(f"{out}/minus_one", np.array([-1.0])), zero],
                   ctx.tmp(f"{out}/non_positive", shape), {}, node, shape=shape)
    ctx.emit("SELECT_V2", [pos, ctx.add_const(f"{out}/one", np.array([1.0])), low], out, {}, node)


def shrink(ctx: ImportContext, node: Any, a: dict) -> None:
    """Shrink: ``x + bias`` below ``-lambd``, ``x - bias`` above ``lambd``, 0 between ->
    SELECT_V2(x > lambd, x - bias, SELECT_V2(x < -lambd, x + bias, 0))."""
    x, out = ctx.act(node, node.input[0]), node.output[0]
    shape = ctx.ir_shape(x)
    lambd, bias = float(a.get("lambd", 0.5)), float(a.get("bias", 0.0))
    if lambd < 0:
        raise ctx.err(node, f"Shrink with a negative lambd ({lambd:g}) is not supported")

    def shifted(delta: float, tag: str) -> str:
        if delta == 0.0:
            return x
        return ctx.emit("ADD", [x, ctx.add_const(f"{out}/{tag}", np.array([delta]))], ctx.tmp(f"{out}/{tag}_x", shape),
                        {"act": "NONE"}, node, shape=shape)

    above = ctx.emit("GREATER", [x, ctx.add_const(f"{out}/lambd", np.array([lambd]))], ctx.tmp(f"{out}/above", shape),
                     {}, node, shape=shape)
    below = ctx.emit("LESS", [x, ctx.add_const(f"{out}/minus_lambd", np.array([-lambd]))],
                     ctx.tmp(f"{out}/below", shape), {}, node, shape=shape)
    low = ctx.emit("SELECT_V2", [below, shifted(bias, "plus_bias"), ctx.add_const(f"{out}/zero", np.array([0.0]))],
                   ctx.tmp(f"{out}/low", shape), {}, node, shape=shape)
    ctx.emit("SELECT_V2", [above, shifted(-bias, "minus_bias"), low], out, {}, node)


REGISTRY = {**{t: compare for t in COMPARE}, **{t: logical for t in LOGICAL}, "Where": where,
            "ThresholdedRelu": thresholded_relu, "Sign": sign, "Shrink": shrink}
