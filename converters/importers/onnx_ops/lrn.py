"""LRN (local response normalization across channels, AlexNet / GoogLeNet) as int8-capable ops.

ONNX: ``y = x / (bias + alpha / size * S) ** beta`` where ``S`` sums ``x**2`` over the channels
``c - floor((size - 1) / 2) .. c + ceil((size - 1) / 2)``. TFLite's LOCAL_RESPONSE_NORMALIZATION has no
int8 kernel and TFLite Micro has none at all, so the importer writes it as: ``x * x`` (MUL); the windowed
channel sum, scaled and offset, as a 1x1 CONV_2D with a banded ``alpha / size`` weight matrix and ``bias``
as its bias; then the power ``t ** -beta`` from ``r = RSQRT(t)`` (``t ** -0.5``) and ``q = RSQRT(r)``
(``t ** 0.25``): ``beta`` 0.25 -> ``r * q``, 0.5 -> ``r``, 0.75 -> ``r * r * q``, 1 -> ``r * r``; other
exponents are refused in one line.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from converters.importers.onnx_ops.context import ImportContext

#: beta -> (power of r = t^-0.5, power of q = t^0.25) giving t^-beta
POWERS = {0.25: (1, 1), 0.5: (1, 0), 0.75: (2, 1), 1.0: (2, 0)}


def band(channels: int, size: int, scale: float) -> np.ndarray:
    """The ``[out, in]`` matrix summing each channel's LRN window, times ``scale``."""
    lo, hi = (size - 1) // 2, -(-(size - 1) // 2)
    c = np.arange(channels)
    return np.where((c[None, :] >= c[:, None] - lo) & (c[None, :] <= c[:, None] + hi), scale, 0.0).astype(np.float32)


def lrn(ctx: ImportContext, node: Any, a: dict) -> None:
    """LRN on a 4-D (NCHW) input -> MUL, CONV_2D 1x1, RSQRT, MUL (see the module docstring)."""
    src = ctx.src_shape(node, node.input[0])
    if len(src) != 4:
        raise ctx.err(node, f"LRN on a {len(src)}-D input is not supported (4-D NCHW only)")
    size = int(a["size"])
    alpha, beta, bias = float(a.get("alpha", 1e-4)), float(a.get("beta", 0.75)), float(a.get("bias", 1.0))
    powers = next((p for b, p in POWERS.items() if abs(beta - b) < 1e-6), None)
    if powers is None:
        raise ctx.err(node, f"LRN with beta={beta:g} is not supported (0.25, 0.5, 0.75 and 1 are)")
    if size < 1 or bias <= 0 or alpha < 0:
        raise ctx.err(node, f"LRN with size={size}, alpha={alpha:g}, bias={bias:g} is not supported "
                            f"(size >= 1, alpha >= 0, bias > 0)")
    x, out = ctx.act(node, node.input[0]), node.output[0]
    shape = ctx.ir_shape(x)
    c = shape[3]

    def tmp(tag: str) -> str:
        return ctx.tmp(f"{out}/{tag}", shape)

    sq = ctx.emit("MUL", [x, x], tmp("square"), {"act": "NONE"}, node, shape=shape)
    w = band(c, size, alpha / size).reshape(c, 1, 1, c)  # [out, kh, kw, in]
    t = ctx.emit("CONV_2D", [sq, ctx.add_const(f"{out}/window", w), ctx.add_const(f"{out}/bias", np.full(c, bias))],
                 tmp("denominator"), {"stride": (1, 1), "dilation": (1, 1), "pads": (0, 0, 0, 0), "act": "NONE"},
                 node, shape=shape)
    r = ctx.emit("RSQRT", [t], tmp("rsqrt"), {}, node, shape=shape)
    factors = [r] * powers[0]
    if powers[1]:
        factors.append(ctx.emit("RSQRT", [r], tmp("fourth_root"), {}, node, shape=shape))
    cur = x
    for k, f in enumerate(factors):
        last = k == len(factors) - 1
        cur = ctx.emit("MUL", [cur, f], out if last else tmp(f"scaled{k}"), {"act": "NONE"}, node,
                       shape=None if last else shape)


REGISTRY = {"LRN": lrn}
