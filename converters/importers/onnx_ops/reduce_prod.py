"""ReduceProd: TFLite Micro has no REDUCE_PROD, so each reduced axis is halved repeatedly: the first half of
the axis (STRIDED_SLICE) times the second (MUL), an odd last element carried along (CONCATENATION), until
one element is left. That is about log2(n) levels of int8 MULs per axis, each with its own calibrated
output range."""
from __future__ import annotations

from typing import Any

import numpy as np

from converters.importers.onnx_ops.context import ImportContext
from converters.importers.onnx_ops.reduce import reduce_axes

#: Most values one output element may be the product of: the graph grows with log2 of it, but an int8
#: product of more values than this has no precision left (|x| < 1 shrinks to 0, |x| > 1 overflows).
MAX_REDUCED = 1024


def _slice(ctx: ImportContext, node: Any, x: str, d: int, begin: int, end: int, out: str) -> str:
    """``x[..., begin:end, ...]`` on IR axis ``d``."""
    shape = list(ctx.ir_shape(x))
    b = [0] * len(shape)
    e = list(shape)
    b[d], e[d] = begin, end
    shape[d] = end - begin
    return ctx.emit("STRIDED_SLICE", [x], ctx.tmp(out, tuple(shape)),
                    {"begin": tuple(b), "end": tuple(e), "strides": (1,) * len(shape), "end_mask": 0}, node,
                    shape=tuple(shape))


def product_along(ctx: ImportContext, node: Any, x: str, d: int, base: str) -> str:
    """The product of IR activation ``x`` along IR axis ``d``, kept as a size-1 axis."""
    n = ctx.ir_shape(x)[d]
    level = 0
    while n > 1:
        h = n // 2
        lo = _slice(ctx, node, x, d, 0, h, f"{base}/a{d}_{level}_lo")
        hi = _slice(ctx, node, x, d, h, 2 * h, f"{base}/a{d}_{level}_hi")
        y = ctx.emit("MUL", [lo, hi], ctx.tmp(f"{base}/a{d}_{level}_prod", ctx.ir_shape(lo)), {"act": "NONE"},
                     node, shape=ctx.ir_shape(lo))
        if n % 2:
            rest = _slice(ctx, node, x, d, 2 * h, n, f"{base}/a{d}_{level}_odd")
            shape = list(ctx.ir_shape(y))
            shape[d] += 1
            y = ctx.emit("CONCATENATION", [y, rest], ctx.tmp(f"{base}/a{d}_{level}_carried", tuple(shape)),
                         {"axis": d, "act": "NONE"}, node, shape=tuple(shape))
        x, n, level = y, h + n % 2, level + 1
    return x


def reduce_prod(ctx: ImportContext, node: Any, a: dict) -> None:
    """ReduceProd over any axes (attribute, or input 1 from opset 18), ``keepdims`` 0 or 1,
    ``noop_with_empty_axes``; refused when one output element multiplies more than :data:`MAX_REDUCED`
    values."""
    x = ctx.act(node, node.input[0])
    shape = ctx.src_shape(node, node.input[0])
    rank = len(shape)
    out = node.output[0]
    axes = reduce_axes(ctx, node, a, rank) if rank else None
    if axes is None:
        ctx.transpose(x, tuple(range(len(ctx.ir_shape(x)))), out, node)
        return
    count = int(np.prod([shape[ax] for ax in axes], dtype=np.int64))
    if count > MAX_REDUCED:
        raise ctx.err(node, f"ReduceProd of {count} values per output element is not supported (at most "
                            f"{MAX_REDUCED}: an int8 product of more has no precision left)")
    y = x
    for ax in axes:
        y = product_along(ctx, node, y, ctx.ir_axis(rank, ax), out)
    if bool(a.get("keepdims", 1)):
        ctx.transpose(y, tuple(range(rank)), out, node)
    else:
        ctx.reshape(y, ctx.src_shape(node, out), out, node)


REGISTRY = {"ReduceProd": reduce_prod}
