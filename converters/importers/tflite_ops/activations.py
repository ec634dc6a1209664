"""LiteRT activations TFLite Micro has no kernel for, in ops it has: RELU_0_TO_1 (RELU, then MINIMUM with 1),
SIGN (two comparisons and two SELECT_V2, the ONNX importer's form of Sign) and LOCAL_RESPONSE_NORMALIZATION
(the ONNX importer's LRN form, :mod:`converters.importers.onnx_ops.lrn`: ``x * x``, the windowed channel
sum as a 1x1 CONV_2D with a banded weight matrix, then RSQRT and MULs for the power ``-beta``)."""
from __future__ import annotations

from typing import Any

import numpy as np

from converters.importers.onnx_ops.lrn import POWERS, band
from converters.importers.tflite_ops.context import TFLiteContext


def relu_0_to_1(ctx: TFLiteContext, op: Any) -> None:
    """RELU_0_TO_1: ``min(max(x, 0), 1)``."""
    x, out = ctx.act_in(op, 0), ctx.name(op.outputs[0])
    r = ctx.emit(op, "RELU", [x], ctx.tmp(f"{out}/relu", ctx.shape(x)))
    ctx.emit(op, "MINIMUM", [r, ctx.add_const(f"{out}/one", np.array([1.0]))], out)


def sign(ctx: TFLiteContext, op: Any) -> None:
    """SIGN: SELECT_V2(x > 0, 1, SELECT_V2(x < 0, -1, 0))."""
    x, out = ctx.act_in(op, 0), ctx.name(op.outputs[0])
    if ctx.sg.tensors[op.inputs[0]].type_name != "FLOAT32":
        raise ctx.err(op, f"input is {ctx.sg.tensors[op.inputs[0]].type_name}; only float values are supported")
    shape = ctx.shape(x)
    zero = ctx.add_const(f"{out}/zero", np.array([0.0]))
    pos = ctx.emit(op, "GREATER", [x, zero], ctx.tmp(f"{out}/positive", shape))
    neg = ctx.emit(op, "LESS", [x, zero], ctx.tmp(f"{out}/negative", shape))
    low = ctx.emit(op, "SELECT_V2", [neg, ctx.add_const(f"{out}/minus_one", np.array([-1.0])), zero],
                   ctx.tmp(f"{out}/non_positive", shape))
    ctx.emit(op, "SELECT_V2", [pos, ctx.add_const(f"{out}/one", np.array([1.0])), low], out)


def lrn(ctx: TFLiteContext, op: Any) -> None:
    """LOCAL_RESPONSE_NORMALIZATION (radius, bias, alpha, beta) over the channels of a 4-D NHWC input:
    ``x / (bias + alpha * sum(x**2 over c-radius..c+radius)) ** beta``."""
    x, out = ctx.act_in(op, 0), ctx.name(op.outputs[0])
    shape = ctx.shape(x)
    if len(shape) != 4:
        raise ctx.err(op, f"input of rank {len(shape)}; a 4-D NHWC input is required")
    radius = int(ctx.option(op, 0, "i", 0))
    bias, alpha, beta = (float(ctx.option(op, k, "f", 0.0)) for k in (1, 2, 3))  # the schema's defaults
    powers = next((p for b, p in POWERS.items() if abs(beta - b) < 1e-6), None)
    if powers is None:
        raise ctx.err(op, f"beta={beta:g} is not supported (0.25, 0.5, 0.75 and 1 are)")
    if radius < 0 or bias <= 0 or alpha < 0:
        raise ctx.err(op, f"radius={radius}, alpha={alpha:g}, bias={bias:g} are not supported "
                          "(radius >= 0, alpha >= 0, bias > 0)")
    c = shape[3]

    def tmp(tag: str) -> str:
        return ctx.tmp(f"{out}/{tag}", shape)

    sq = ctx.emit(op, "MUL", [x, x], tmp("square"), {"act": "NONE"})
    w = band(c, 2 * radius + 1, alpha).reshape(c, 1, 1, c)  # [out, kh, kw, in]
    t = ctx.emit(op, "CONV_2D", [sq, ctx.add_const(f"{out}/window", w), ctx.add_const(f"{out}/bias", np.full(c, bias))],
                 tmp("denominator"), {"stride": (1, 1), "dilation": (1, 1), "pads": (0, 0, 0, 0), "act": "NONE"})
    r = ctx.emit(op, "RSQRT", [t], tmp("rsqrt"))
    factors = [r] * powers[0]
    if powers[1]:
        factors.append(ctx.emit(op, "RSQRT", [r], tmp("fourth_root")))
    cur = x
    for k, f in enumerate(factors):
        cur = ctx.emit(op, "MUL", [cur, f], out if k == len(factors) - 1 else tmp(f"scaled{k}"), {"act": "NONE"})


REGISTRY = {"RELU_0_TO_1": relu_0_to_1, "SIGN": sign, "LOCAL_RESPONSE_NORMALIZATION": lrn}
