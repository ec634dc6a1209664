"""LpPool with p = 1 or 2: the window sum of ``|x|^p`` as an AVERAGE_POOL_2D that counts the padding,
times the window area, then (p = 2) its square root.

ONNX LpPool sums ``|x|^p`` over each window (zero padding adds nothing) and takes the p-th root. For
p = 2 that is ``sqrt(area * average_with_padding(x * x))``; for p = 1 ``area * average_with_padding(|x|)``.
Other p are refused: a general root (``exp(log(s) / p)``) is undefined at a zero window, and int8 cannot
hold the range of ``|x|^p`` (p = 4 through SQRT twice measured ~9 dB against the onnx reference).
The average pool is :func:`converters.importers.onnx_ops.pool.pool` with ``count_include_pad=1``, so
explicit, SAME and 1-D pooling behave as AveragePool does.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from converters.importers.onnx_ops.context import ImportContext
from converters.importers.onnx_ops.pool import pool


def lp_pool(ctx: ImportContext, node: Any, a: dict) -> None:
    """LpPool (p = 1 or 2; no dilations) -> ABS or MUL, AVERAGE_POOL_2D, MUL by the window area (, SQRT)."""
    from onnx import helper

    p = int(a.get("p", 2))
    if p not in (1, 2):
        raise ctx.err(node, f"LpPool with p={p} is not supported (p=1 and p=2 are; int8 cannot hold |x|^{p})")
    if any(int(d) != 1 for d in a.get("dilations", [])):
        raise ctx.err(node, "dilated LpPool is not supported")
    x = ctx.act(node, node.input[0])
    out = node.output[0]
    src, pooled = f"{out}/lp_power", f"{out}/lp_mean"
    ctx.shapes[src] = ctx.src_shape(node, node.input[0])
    ctx.shapes[pooled] = ctx.src_shape(node, out)
    shape = ctx.ir_shape(x)
    if p == 1:
        ctx.emit("ABS", [x], src, {}, node, shape=shape)
    else:
        ctx.emit("MUL", [x, x], src, {"act": "NONE"}, node, shape=shape)
    attrs = {k: v for k, v in a.items() if k not in ("p", "dilations")}
    avg = helper.make_node("AveragePool", [src], [pooled], name=node.name or out)
    pool(ctx, avg, dict(attrs, count_include_pad=1))
    area = float(np.prod([int(k) for k in a["kernel_shape"]]))
    total = ctx.name(pooled)
    area_c = ctx.add_const(f"{out}/window_area", np.array([area], np.float32))
    if p == 1:
        ctx.emit("MUL", [total, area_c], out, {"act": "NONE"}, node)
        return
    shape = ctx.tensors[total].shape
    y = ctx.emit("MUL", [total, area_c], ctx.tmp(f"{out}/lp_sum", shape), {"act": "NONE"}, node, shape=shape)
    ctx.emit("SQRT", [y], out, {}, node)


REGISTRY = {"LpPool": lp_pool}
