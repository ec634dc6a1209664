"""A constant matrix applied along one axis of an activation: the int8 form of every fixed-size linear map
(DFT/STFT bases, cubic and antialiased Resize weights).

The axis is moved last (TRANSPOSE), the rest flattened (RESHAPE), and a FULLY_CONNECTED with the constant
``[k_out, k_in]`` weights (per-channel quantizable: one row per output) maps it; RESHAPE and TRANSPOSE put
the result back. Shapes here are raw IR shapes (no NCHW/NHWC meaning): callers move layouts themselves.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from converters.importers.onnx_ops.context import ImportContext


def matmul_last(ctx: ImportContext, node: Any, x: str, w: np.ndarray, out: str | None = None,
                bias: np.ndarray | None = None) -> str:
    """``x @ w.T (+ bias)`` over the last axis of IR activation ``x`` (any rank), as FULLY_CONNECTED; the
    result keeps ``x``'s leading axes and is written to ``out`` (a fresh tensor when None)."""
    shape = ctx.ir_shape(x)
    k_out, k_in = w.shape
    if shape[-1] != k_in:
        raise ctx.err(node, f"internal: a [{k_out}, {k_in}] map does not fit an axis of size {shape[-1]}")
    base = out or f"{node.output[0]}/map"
    rows = int(np.prod(shape[:-1], dtype=np.int64))
    flat = x
    if len(shape) != 2:
        flat = ctx.emit("RESHAPE", [x], ctx.tmp(f"{base}/rows", (rows, k_in)), {}, node, shape=(rows, k_in))
    b = np.zeros(k_out, np.float32) if bias is None else np.asarray(bias, np.float32)
    consts = [ctx.add_const(f"{base}/weights", np.asarray(w, np.float32)), ctx.add_const(f"{base}/bias", b)]
    new_shape = tuple(shape[:-1]) + (k_out,)
    if len(shape) == 2:
        dst = out or ctx.tmp(base, new_shape)
        return ctx.emit("FULLY_CONNECTED", [flat] + consts, dst, {"act": "NONE"}, node, shape=new_shape)
    y = ctx.emit("FULLY_CONNECTED", [flat] + consts, ctx.tmp(f"{base}/flat", (rows, k_out)), {"act": "NONE"},
                 node, shape=(rows, k_out))
    return ctx.emit("RESHAPE", [y], out or ctx.tmp(base, new_shape), {}, node, shape=new_shape)


def apply_along_axis(ctx: ImportContext, node: Any, x: str, axis: int, w: np.ndarray,
                     out: str | None = None) -> str:
    """Map axis ``axis`` of IR activation ``x`` (size ``k_in``) to ``k_out`` values with constant ``w``
    ``[k_out, k_in]``; the other axes keep their places."""
    shape = ctx.ir_shape(x)
    rank = len(shape)
    axis %= rank
    if axis == rank - 1:
        return matmul_last(ctx, node, x, w, out)
    perm = tuple(d for d in range(rank) if d != axis) + (axis,)
    moved = ctx.transpose(x, perm, node=node)
    y = matmul_last(ctx, node, moved, w)
    back = tuple(int(np.argsort(perm)[d]) for d in range(rank))
    return ctx.transpose(y, back, out, node)
