"""Elementwise TFLite ops and activations (constant operands and broadcasting allowed), ADD_N,
L2_NORMALIZATION and L2_POOL_2D (rewritten to MUL/SUM/RSQRT, MUL/AVERAGE_POOL_2D/SQRT)."""
from __future__ import annotations

from typing import Any

import numpy as np

from converters.importers.onnx_ops.gelu import expand_gelu
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
    out = ctx.name(op.outputs[0])
    if op.name in ("MINIMUM", "MAXIMUM"):
        x = _unbounded_clip_input(ctx, op.name, a, b, out)
        if x is not None:  # MINIMUM(x, +inf) / MAXIMUM(x, -inf): x itself (the constant never enters the graph)
            ctx.emit(op, "RESHAPE", [x], out)
            return
        a, b = ctx.joined_in(op, 0), ctx.joined_in(op, 1)
    attrs = {"act": ctx.act(op.options, 0)} if op.name in FUSED else {}
    ctx.emit(op, op.name, [a, b], out, attrs)


def _unbounded_clip_input(ctx: TFLiteContext, kind: str, a: str, b: str, out: str) -> str | None:
    """The non-constant operand of ``MINIMUM(x, +inf)`` or ``MAXIMUM(x, -inf)`` (either order), the open
    side of TF's ``clip_by_value(x, lo, inf)``: an identity when ``x`` already has the output's shape.
    None otherwise."""
    bound = np.inf if kind == "MINIMUM" else -np.inf
    for x, c in ((a, b), (b, a)):
        data = ctx.tensors[c].data
        if (data is not None and not ctx.tensors[x].is_constant and np.asarray(data).size
                and np.all(np.asarray(data) == bound) and ctx.shape(x) == ctx.shape(out)):
            return x
    return None


def unary(ctx: TFLiteContext, op: Any) -> None:
    """One-input activations and math functions; NEG and SQUARE become MULs."""
    x, out = ctx.act_in(op, 0), ctx.name(op.outputs[0])
    if op.name == "NEG":
        ctx.emit(op, "MUL", [x, ctx.add_const(f"{out}/minus_one", np.array([-1.0]))], out, {"act": "NONE"})
    elif op.name == "SQUARE":
        ctx.emit(op, "MUL", [x, x], out, {"act": "NONE"})
    elif op.name == "LEAKY_RELU":
        ctx.emit(op, "LEAKY_RELU", [x], out, {"alpha": float(ctx.option(op, 0, "f", 0.2))})
    elif op.name == "GELU":  # both forms as the tanh form in int8 ops TFLite Micro runs (onnx_ops.gelu)
        shape = ctx.shape(x)
        expand_gelu(lambda kind, ins, dst: ctx.emit(op, kind, ins, dst, {} if kind == "LOGISTIC" else {"act": "NONE"}),
                    lambda suffix: ctx.tmp(f"{out}/{suffix}", shape),
                    lambda suffix, v: ctx.add_const(f"{out}/{suffix}", np.array([v])), x, out)
    elif op.name == "PRELU":
        ctx.value(op, 1)
        ctx.emit(op, "PRELU", [x, ctx.act_in(op, 1)], out)
    else:
        ctx.emit(op, op.name, [x], out)


def softmax(ctx: TFLiteContext, op: Any) -> None:
    """SOFTMAX (beta) and LOG_SOFTMAX over the last axis."""
    attrs = {"beta": float(ctx.option(op, 0, "f", 1.0))} if op.name == "SOFTMAX" else {}
    ctx.emit(op, op.name, [ctx.act_in(op, 0)], ctx.name(op.outputs[0]), attrs)



def add_n(ctx: TFLiteContext, op: Any) -> None:
    """ADD_N: a chain of ADDs."""
    out = ctx.name(op.outputs[0])
    cur = ctx.act_in(op, 0)
    for k in range(1, len(op.inputs)):
        dst = out if k == len(op.inputs) - 1 else ctx.tmp(f"{out}/partial", ctx.shape(out))
        cur = ctx.emit(op, "ADD", [cur, ctx.act_in(op, k)], dst, {"act": "NONE"})


def l2_norm(ctx: TFLiteContext, op: Any) -> None:
    """L2_NORMALIZATION over the last axis: ``x * rsqrt(max(sum(x^2), 1e-6))``."""
    x, out = ctx.act_in(op, 0), ctx.name(op.outputs[0])
    shape = ctx.shape(x)
    kept = tuple(shape[:-1]) + (1,)
    sq = ctx.emit(op, "MUL", [x, x], ctx.tmp(f"{out}/squared", shape), {"act": "NONE"})
    ss = ctx.emit(op, "SUM", [sq], ctx.tmp(f"{out}/sum", kept), {"axes": (len(shape) - 1,), "keep_dims": True})
    ss = ctx.emit(op, "MAXIMUM", [ss, ctx.add_const(f"{out}/eps", np.array([1e-6]))], ctx.tmp(f"{out}/sum_eps", kept))
    r = ctx.emit(op, "RSQRT", [ss], ctx.tmp(f"{out}/rnorm", kept))
    ctx.emit(op, "MUL", [x, r], out, {"act": "NONE"})


def l2_pool(ctx: TFLiteContext, op: Any) -> None:
    """L2_POOL_2D: ``sqrt(avg_pool(x^2))`` (same window options as the other pools)."""
    from converters.ir import same_pads

    x, out = ctx.act_in(op, 0), ctx.name(op.outputs[0])
    padding, sw, sh = int(ctx.option(op, 0, "b", 0)), int(ctx.option(op, 1, "i", 1)), int(ctx.option(op, 2, "i", 1))
    fw, fh = int(ctx.option(op, 3, "i", 1)), int(ctx.option(op, 4, "i", 1))
    pads = same_pads(ctx.shape(x)[1:3], (fh, fw), (sh, sw)) if padding == 0 else (0, 0, 0, 0)
    sq = ctx.emit(op, "MUL", [x, x], ctx.tmp(f"{out}/squared", ctx.shape(x)), {"act": "NONE"})
    avg = ctx.emit(op, "AVERAGE_POOL_2D", [sq], ctx.tmp(f"{out}/mean_sq", ctx.shape(out)),
                   {"kernel": (fh, fw), "stride": (sh, sw), "pads": pads, "act": "NONE", "count_include_pad": False})
    ctx.emit(op, "SQRT", [avg], out)


REGISTRY = {
    **{k: binary for k in FUSED + PLAIN_BINARY},
    **{k: unary for k in PLAIN_UNARY + ("NEG", "SQUARE", "LEAKY_RELU", "GELU", "PRELU")},
    "SOFTMAX": softmax, "LOG_SOFTMAX": softmax,
    "ADD_N": add_n, "L2_NORMALIZATION": l2_norm, "L2_POOL_2D": l2_pool, "ELU": unary,
}
