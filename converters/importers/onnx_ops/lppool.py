"""LpPool and GlobalLpPool with p = 1 to 4: the window sum of ``|x|^p`` as an AVERAGE_POOL_2D that counts the
padding, times the window area, then its p-th root.

ONNX LpPool sums ``|x|^p`` over each window (zero padding adds nothing) and takes the p-th root. The power is a
POW-free chain: ``|x|`` (ABS, p = 1), ``x * x`` (p = 2), ``x * x * |x|`` (p = 3), ``(x * x) * (x * x)``
(p = 4); the root is none (p = 1), SQRT (p = 2), SQRT twice (p = 4) or ``exp(log(max(s, 1e-18)) / 3)``
(p = 3; the floor keeps a zero window, after a ReLU, from LOG(0) = -inf, which calibration refuses). Other p
are refused in one line. For p = 3 and 4 int8 cannot hold the range of ``|x|^p``: every op of the chain
carries :data:`LP_POOL_ATTR`, and the default precision policy (:mod:`converters.quality.default_precision`)
makes the chain a float island on profiles with an OS (int8 on microcontrollers).
The average pool is :func:`converters.importers.onnx_ops.pool3d.pool_any` with ``count_include_pad=1``, so
explicit, SAME, dilated, 1-D and 3-D pooling behave as AveragePool does.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from converters.importers.onnx_ops.context import ImportContext
from converters.importers.onnx_ops.pool3d import pool_any

#: IR op attribute naming p on every op of an LpPool chain with p >= 3 (read by the default precision policy).
LP_POOL_ATTR = "lp_pool_p"
SUPPORTED_P = (1, 2, 3, 4)
#: p = 3: the window sums are at least this before their LOG (a zero window's root is then 1e-6, not exp(-inf))
LOG_FLOOR = 1e-18


def _power(ctx: ImportContext, node: Any, x: str, p: int, out: str, shape: tuple[int, ...]) -> str:
    """``|x|^p`` elementwise into ``out``: ABS and MUL only."""
    if p == 1:
        return ctx.emit("ABS", [x], out, {}, node, shape=shape)
    if p == 2:
        return ctx.emit("MUL", [x, x], out, {"act": "NONE"}, node, shape=shape)
    sq = ctx.emit("MUL", [x, x], ctx.tmp(f"{out}/square", shape), {"act": "NONE"}, node, shape=shape)
    if p == 4:
        return ctx.emit("MUL", [sq, sq], out, {"act": "NONE"}, node, shape=shape)
    mag = ctx.emit("ABS", [x], ctx.tmp(f"{out}/abs", shape), {}, node, shape=shape)
    return ctx.emit("MUL", [sq, mag], out, {"act": "NONE"}, node, shape=shape)


def _root(ctx: ImportContext, node: Any, s: str, p: int, out: str) -> None:
    """The p-th root (p = 2, 3, 4) of the window sums ``s`` into ``out``."""
    shape = ctx.tensors[s].shape
    if p == 2:
        ctx.emit("SQRT", [s], out, {}, node)
    elif p == 4:
        half = ctx.emit("SQRT", [s], ctx.tmp(f"{out}/lp_sqrt", shape), {}, node, shape=shape)
        ctx.emit("SQRT", [half], out, {}, node)
    else:  # a zero window: LOG(0) = -inf, which calibration refuses; the floor's cube root is 1e-6
        floor = ctx.add_const(f"{out}/lp_floor", np.array([LOG_FLOOR], np.float32))
        s = ctx.emit("MAXIMUM", [s, floor], ctx.tmp(f"{out}/lp_floored", shape), {}, node, shape=shape)
        log = ctx.emit("LOG", [s], ctx.tmp(f"{out}/lp_log", shape), {}, node, shape=shape)
        third = ctx.add_const(f"{out}/one_third", np.array([1.0 / 3.0], np.float32))
        scaled = ctx.emit("MUL", [log, third], ctx.tmp(f"{out}/lp_log3", shape), {"act": "NONE"}, node, shape=shape)
        ctx.emit("EXP", [scaled], out, {}, node)


def lp_pool(ctx: ImportContext, node: Any, a: dict) -> None:
    """LpPool (p = 1 to 4) -> ABS/MUL power, AVERAGE_POOL_2D, MUL by the window area, p-th root."""
    from onnx import helper

    p = int(a.get("p", 2))
    if p not in SUPPORTED_P:
        raise ctx.err(node, f"LpPool with p={p} is not supported (p=1 to p=4 are; int8 cannot hold |x|^{p})")
    x = ctx.act(node, node.input[0])
    first = len(ctx.ops)
    out = node.output[0]
    src, pooled = f"{out}/lp_power", f"{out}/lp_mean"
    ctx.shapes[src] = ctx.src_shape(node, node.input[0])
    ctx.shapes[pooled] = ctx.src_shape(node, out)
    _power(ctx, node, x, p, src, ctx.ir_shape(x))
    attrs = {k: v for k, v in a.items() if k != "p"}
    avg = helper.make_node("AveragePool", [src], [pooled], name=node.name or out)
    pool_any(ctx, avg, dict(attrs, count_include_pad=1))
    area = float(np.prod([int(k) for k in a["kernel_shape"]]))
    total = ctx.name(pooled)
    area_c = ctx.add_const(f"{out}/window_area", np.array([area], np.float32))
    if p == 1:
        ctx.emit("MUL", [total, area_c], out, {"act": "NONE"}, node)
    else:
        shape = ctx.tensors[total].shape
        y = ctx.emit("MUL", [total, area_c], ctx.tmp(f"{out}/lp_sum", shape), {"act": "NONE"}, node, shape=shape)
        _root(ctx, node, y, p, out)
    if p >= 3:
        for op in ctx.ops[first:]:
            op.attrs[LP_POOL_ATTR] = p


def global_lp_pool(ctx: ImportContext, node: Any, a: dict) -> None:
    """GlobalLpPool (p = 1 to 4; 1-D, 2-D or 3-D): :func:`lp_pool` with one window over every spatial axis."""
    shape = ctx.src_shape(node, node.input[0])
    if len(shape) not in (3, 4, 5):
        raise ctx.err(node, f"global pooling on a {len(shape)}-D input {shape} is not supported (3-D to 5-D)")
    lp_pool(ctx, node, {"p": a.get("p", 2), "kernel_shape": list(shape[2:])})


REGISTRY = {"LpPool": lp_pool, "GlobalLpPool": global_lp_pool}
