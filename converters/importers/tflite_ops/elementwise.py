"""Elementwise TFLite ops and activations (constant operands and broadcasting allowed)."""
from __future__ import annotations

from typing import Any

import numpy as np

from converters.importers.tflite_ops.context import TFLiteContext

#: ops with a fused-activation option at field 0
FUSED = ("ADD", "SUB", "MUL", "DIV")
PLAIN_BINARY = ("MAXIMUM", "MINIMUM", "SQUARED_DIFFERENCE")
PLAIN_UNARY = ("RELU", "RELU6", "RELU_N1_TO_1", "LOGISTIC", "TANH", "HARD_SWISH", "EXP", "LOG", "SQRT", "RSQRT",
               "ABS")


def binary(ctx: TFLiteContext, op: Any) -> None:
    """ADD/SUB/MUL/DIV (with fused activation), MAXIMUM/MINIMUM/SQUARED_DIFFERENCE."""
    a, b = ctx.act_in(op, 0), ctx.act_in(op, 1)
    if ctx.tensors[a].is_constant and ctx.tensors[b].is_constant:
        raise ctx.err(op, "operates on constants only")
    attrs = {"act": ctx.act(op.options, 0)} if op.name in FUSED else {}
    ctx.emit(op, op.name, [a, b], ctx.name(op.outputs[0]), attrs)


def unary(ctx: TFLiteContext, op: Any) -> None:
    """One-input activations and math functions; NEG and SQUARE become MULs."""
    x, out = ctx.act_in(op, 0), ctx.name(op.outputs[0])
    if op.name == "NEG":
        ctx.emit(op, "MUL", [x, ctx.add_const(f"{out}/minus_one", np.array([-1.0]))], out, {"act": "NONE"})
    elif op.name == "SQUARE":
        ctx.emit(op, "MUL", [x, x], out, {"act": "NONE"})
    elif op.name == "LEAKY_RELU":
        ctx.emit(op, "LEAKY_RELU", [x], out, {"alpha": float(ctx.option(op, 0, "f", 0.2))})
    elif op.name == "GELU":
        ctx.emit(op, "GELU", [x], out, {"approximate": bool(ctx.option(op, 0, "b", False))})
    elif op.name == "PRELU":
        ctx.value(op, 1)
        ctx.emit(op, "PRELU", [x, ctx.act_in(op, 1)], out)
    else:
        ctx.emit(op, op.name, [x], out)


def softmax(ctx: TFLiteContext, op: Any) -> None:
    """SOFTMAX (beta) and LOG_SOFTMAX over the last axis."""
    attrs = {"beta": float(ctx.option(op, 0, "f", 1.0))} if op.name == "SOFTMAX" else {}
    ctx.emit(op, op.name, [ctx.act_in(op, 0)], ctx.name(op.outputs[0]), attrs)


REGISTRY = {
    **{k: binary for k in FUSED + PLAIN_BINARY},
    **{k: unary for k in PLAIN_UNARY + ("NEG", "SQUARE", "LEAKY_RELU", "GELU", "PRELU")},
    "SOFTMAX": softmax, "LOG_SOFTMAX": softmax,
}
