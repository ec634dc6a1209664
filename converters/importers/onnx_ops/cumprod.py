"""CumProd (ONNX opset 26) along a constant axis, ``exclusive`` and ``reverse`` too. TFLite has no cumulative
product, and products are where int8 loses most: a factor near 1 held in a tensor whose range reaches the
largest product is off by up to half that tensor's step, and the error multiplies every later product.

- Axes up to :data:`SEQUENTIAL_MAX` long: one running product per position (``p_k = p_(k-1) * x_k``, each an
  int8 MUL with its own range), the factors sliced from the input (which keeps its parameters), and each
  output position a separate MUL (or a copy) into the CONCATENATION, whose inputs all share the output's
  parameters: the running products never take the output's coarser step. About 3n ops.
- Longer axes: a parallel prefix product (Hillis-Steele) in ``ceil(log2 n)`` levels, each multiplying the
  running products by themselves shifted ``1, 2, 4, ...`` steps along the axis with ones shifted in
  (STRIDED_SLICE, CONCATENATION with a constant of ones, MUL); ``exclusive`` first shifts the input one step.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from converters.importers.onnx_ops.context import ImportContext
from converters.importers.onnx_ops.reduce_prod import _slice

#: longest axis given one running product per position (longer ones take the log-depth scan)
SEQUENTIAL_MAX = 16


def _shifted(ctx: ImportContext, node: Any, y: str, d: int, step: int, reverse: bool, tag: str) -> str:
    """``y`` moved ``step`` places along IR axis ``d`` (towards the end, or the start when ``reverse``), the
    places left empty holding 1."""
    shape = ctx.ir_shape(y)
    n = shape[d]
    ones_shape = tuple(step if k == d else s for k, s in enumerate(shape))
    ones = ctx.add_const(f"{node.output[0]}/{tag}_ones", np.ones(ones_shape, np.float32))
    kept = _slice(ctx, node, y, d, step, n, f"{node.output[0]}/{tag}_kept") if reverse else \
        _slice(ctx, node, y, d, 0, n - step, f"{node.output[0]}/{tag}_kept")
    parts = [kept, ones] if reverse else [ones, kept]
    return ctx.emit("CONCATENATION", parts, ctx.tmp(f"{node.output[0]}/{tag}", shape), {"axis": d, "act": "NONE"},
                    node, shape=shape)


def _sequential(ctx: ImportContext, node: Any, x: str, d: int, exclusive: bool, reverse: bool) -> None:
    """CumProd with one running product per position along IR axis ``d`` (see the module docstring)."""
    out = node.output[0]
    n = ctx.ir_shape(x)[d]
    order = list(range(n))[::-1] if reverse else list(range(n))
    step = tuple(1 if k == d else s for k, s in enumerate(ctx.ir_shape(x)))

    def mul(a: str, b: str, tag: str) -> str:
        return ctx.emit("MUL", [a, b], ctx.tmp(f"{out}/{tag}", step), {"act": "NONE"}, node, shape=step)

    def copy(a: str, tag: str) -> str:
        """``a + 0``: a requantizing copy (a MUL by 1 is simplified away), so ``a`` keeps its own parameters."""
        zero = ctx.add_const(f"{out}/zero", np.zeros((1,), np.float32))
        return ctx.emit("ADD", [a, zero], ctx.tmp(f"{out}/{tag}", step), {"act": "NONE"}, node, shape=step)

    parts: dict[int, str] = {}
    running = before = last_factor = None  # (the running product, and the previous position's and factor)
    for j, k in enumerate(order):
        factor = _slice(ctx, node, x, d, k, k + 1, f"{out}/factor{k}")
        if exclusive:  # position k holds the product before it: 1, then the running products (copied)
            parts[k] = (ctx.add_const(f"{out}/ones", np.ones(step, np.float32)) if j == 0
                        else copy(last_factor, f"out{k}") if j == 1 else mul(before, last_factor, f"out{k}"))
        else:  # position k holds the running product through it, as its own op (a copy for the first)
            parts[k] = copy(factor, f"out{k}") if running is None else mul(running, factor, f"out{k}")
        before, last_factor = running, factor
        if j < n - 1 - int(exclusive):  # the running product a later position reads
            running = factor if running is None else mul(running, factor, f"running{k}")
    ctx.emit("CONCATENATION", [parts[k] for k in range(n)], out, {"axis": d, "act": "NONE"}, node)


def cumprod(ctx: ImportContext, node: Any, a: dict) -> None:
    """CumProd(x, axis) with ``exclusive`` / ``reverse``."""
    x = ctx.act(node, node.input[0])
    shape = ctx.src_shape(node, node.input[0])
    rank = len(shape)
    axis = np.asarray(ctx.const(node, node.input[1])).reshape(-1)
    if rank == 0 or axis.size != 1 or not -rank <= int(axis[0]) < rank:
        raise ctx.err(node, f"axis {axis.tolist()} must be one value in [{-rank}, {rank - 1}]")
    d = ctx.ir_axis(rank, int(axis[0]))
    n = ctx.ir_shape(x)[d]
    exclusive, reverse = bool(a.get("exclusive", 0)), bool(a.get("reverse", 0))
    out = node.output[0]
    if n == 1:
        if exclusive:
            raise ctx.err(node, "an exclusive CumProd over an axis of length 1 is the constant 1; fold it before "
                                "conversion")
        ctx.transpose(x, tuple(range(len(ctx.ir_shape(x)))), out, node)
        return
    if n <= SEQUENTIAL_MAX:
        _sequential(ctx, node, x, d, exclusive, reverse)
        return
    y = _shifted(ctx, node, x, d, 1, reverse, "exclusive") if exclusive else x
    step = 1
    while step < n:
        last = 2 * step >= n
        y = ctx.emit("MUL", [y, _shifted(ctx, node, y, d, step, reverse, f"shift{step}")],
                     out if last else ctx.tmp(f"{out}/prefix{step}", ctx.ir_shape(x)), {"act": "NONE"}, node,
                     shape=None if last else ctx.ir_shape(x))
        step *= 2


REGISTRY = {"CumProd": cumprod}
