"""Mod on float values: ``fmod=1`` (C's fmod, the remainder takes the dividend's sign) and ``fmod=0``
(the remainder takes the divisor's sign, as numpy's ``mod``), written as

``q = x / y``, ``r = y * (q - k)`` with ``k = floor(q)`` (``fmod=0``) or ``trunc(q)`` (``fmod=1``:
``SELECT_V2(q < 0, CEIL(q), FLOOR(q))``).

The graph has no FLOOR_MOD (tflite-micro's kernel is float32 only); FLOOR and CEIL are float islands
between int8 tensors. ``q - k`` is computed from the one int8 ``q``, so it stays in [0, 1) (or (-1, 1)) and
the remainder's error is ``|y|`` times ``q``'s quantization step, and ``|y|`` where ``q`` rounds across an
integer. Mod of int32 indices is FLOOR_MOD on int32 (:mod:`converters.importers.onnx_ops.int_arith`); Mod of
a float activation by an integer constant is refused in one line.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from converters.importers.onnx_ops.context import ImportContext, const_to_ir, nhwc
from converters.importers.onnx_ops.int_arith import integer_binary, reads_integers


def _check_float(ctx: ImportContext, node: Any, n: str) -> None:
    """Refuse an integer constant operand of float Mod in one line."""
    if ctx.is_const(n):
        kind = np.asarray(ctx.const(node, n)).dtype.kind
        if kind != "f":
            raise ctx.err(node, f"Mod of the integer constant '{n}' is not supported; only float Mod converts "
                                "(int8 models compute float values)")


def mod(ctx: ImportContext, node: Any, a: dict) -> None:
    """Mod(x, y) with broadcasting; either operand may be a constant (a constant ``y`` is multiplied by its
    reciprocal, and refused when it holds a zero); of int32 indices: :mod:`converters.importers.onnx_ops.int_arith`."""
    if reads_integers(ctx, node):
        integer_binary(ctx, node, a)
        return
    for n in node.input[:2]:
        _check_float(ctx, node, n)
    x_in, y_in = node.input[0], node.input[1]
    if ctx.is_const(x_in) and ctx.is_const(y_in):
        raise ctx.err(node, "Mod of two constants; fold it before conversion")
    fmod = int(a.get("fmod", 0))
    out = node.output[0]
    rank = len(ctx.src_shape(node, out))
    shape = nhwc(ctx.src_shape(node, out))
    x = ctx.broadcast_operand(node, x_in, rank)
    y = ctx.broadcast_operand(node, y_in, rank)

    def tmp(tag: str) -> str:
        return ctx.tmp(f"{out}/{tag}", shape)

    if ctx.is_const(y_in):
        yv = np.asarray(ctx.const(node, y_in), np.float64)
        if np.any(yv == 0):
            raise ctx.err(node, f"the divisor '{y_in}' holds a zero (Mod by zero is undefined)")
        inv = ctx.add_const(f"{out}/reciprocal", const_to_ir((1.0 / yv).astype(np.float32), rank))
        q = ctx.emit("MUL", [x, inv], tmp("quotient"), {"act": "NONE"}, node, shape=shape)
    else:
        q = ctx.emit("DIV", [x, y], tmp("quotient"), {"act": "NONE"}, node, shape=shape)
    k = ctx.emit("FLOOR", [q], tmp("floor"), {}, node, shape=shape)
    if fmod:
        neg = ctx.emit("LESS", [q, ctx.add_const(f"{out}/zero", np.array([0.0]))], tmp("negative"), {}, node,
                       shape=shape)
        up = ctx.emit("CEIL", [q], tmp("ceil"), {}, node, shape=shape)
        k = ctx.emit("SELECT_V2", [neg, up, k], tmp("trunc"), {}, node, shape=shape)
    frac = ctx.emit("SUB", [q, k], tmp("fraction"), {"act": "NONE"}, node, shape=shape)
    ctx.emit("MUL", [frac, y], out, {"act": "NONE"}, node)


REGISTRY = {"Mod": mod}
