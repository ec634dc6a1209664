"""Hardmax: a one-hot of the first maximum along an axis, written as ARG_MAX (TFLite returns the first
index of a tie, as ONNX does) and a GATHER of the rows of a constant identity matrix (0/1 values, exact in
int8)."""
from __future__ import annotations

from typing import Any

import numpy as np

from converters.importers.onnx_ops.context import ImportContext


def _one_hot_rows(ctx: ImportContext, node: Any, x_src: str, rows: int, depth: int, out: str) -> str:
    """ARG_MAX of ONNX-layout ``x_src`` (``[rows, depth]``) along its last axis, then one identity row per
    index: a ``[rows, depth]`` tensor named ``out``."""
    idx = ctx.tmp(f"{out}/index", (rows,))
    ctx.emit("ARG_MAX", [x_src], idx, {"axis": 1}, node, shape=(rows,))
    eye = ctx.add_const(f"{out}/identity", np.eye(depth, dtype=np.float32))
    return ctx.emit("GATHER", [eye, idx], out, {"axis": 0}, node, shape=(rows, depth))


def hardmax(ctx: ImportContext, node: Any, a: dict) -> None:
    """Hardmax over ``axis`` (opset 13's form: that axis alone). The input is moved (in ONNX layout) so the
    axis is last and flattened to ``[rows, depth]``; the one-hot result is moved back.

    Models below opset 13 arrive upgraded by :func:`converters.importers.prepare.upgrade_opset`; onnx's version
    converter relabels their Hardmax without the Flatten its older meaning (every axis from ``axis`` on, as one
    row) needs, so such a model's Hardmax over a non-last axis is read with opset 13's meaning."""
    x = ctx.act(node, node.input[0])
    shape = ctx.src_shape(node, node.input[0])
    rank = len(shape)
    out = node.output[0]
    if rank == 0:
        raise ctx.err(node, "Hardmax of a 0-d tensor is not supported (give the input at least one axis)")
    axis = int(a.get("axis", -1))
    if not -rank <= axis < rank:
        raise ctx.err(node, f"axis {axis} is out of range for a rank-{rank} input")
    axis %= rank
    perm = tuple(d for d in range(rank) if d != axis) + (axis,)
    moved_shape = tuple(shape[p] for p in perm)
    xs = ctx.transpose(ctx.to_src(x), perm)  # ONNX layout, the axis last
    rows, depth = int(np.prod(moved_shape[:-1], dtype=np.int64)), int(shape[axis])
    flat = xs if rank == 2 else ctx.emit("RESHAPE", [xs], ctx.tmp(f"{out}/rows", (rows, depth)), {}, node,
                                         shape=(rows, depth))
    direct = rank != 4 and axis == rank - 1  # no layout change: the last op writes the output
    if direct and rank == 2:
        _one_hot_rows(ctx, node, flat, rows, depth, ctx.output(node, out))
        return
    y = _one_hot_rows(ctx, node, flat, rows, depth, ctx.tmp(f"{out}/flat", (rows, depth)))
    if direct:
        ctx.emit("RESHAPE", [y], out, {}, node, shape=moved_shape)
        return
    if rank != 2:
        y = ctx.emit("RESHAPE", [y], ctx.tmp(f"{out}/moved", moved_shape), {}, node, shape=moved_shape)
    back = tuple(int(np.argsort(perm)[d]) for d in range(rank))
    ctx.from_src(ctx.transpose(y, back), out, node)


REGISTRY = {"Hardmax": hardmax}
