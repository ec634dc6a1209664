"""Reductions (ReduceMean/Max/Sum) and Softmax/LogSoftmax on any axis."""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from converters.importers.onnx_ops.context import ImportContext, nhwc

KINDS = {"ReduceMean": "MEAN", "ReduceMax": "REDUCE_MAX", "ReduceSum": "SUM", "ReduceMin": "REDUCE_MAX",
         "ReduceSumSquare": "SUM", "ReduceL1": "SUM", "ReduceL2": "SUM"}


def reduce(ctx: ImportContext, node: Any, a: dict) -> None:
    """ReduceMean/ReduceMax/ReduceSum/ReduceMin over any axes, keepdims or not.

    A max over the height and width of a 4-D tensor becomes MAX_POOL_2D; results with dropped axes
    are reshaped in ONNX element order. ReduceMin is
    ``-max(-x)``; ReduceSumSquare/L1/L2 square (or take the absolute value) first, L2 ends in SQRT.
    """
    x = ctx.act(node, node.input[0])
    if node.op_type == "ReduceMin":
        neg = ctx.emit("MUL", [x, ctx.add_const(f"{node.output[0]}/minus_one", np.array([-1.0]))],
                       ctx.tmp(f"{node.output[0]}/negated", ctx.ir_shape(x)), {"act": "NONE"}, node,
                       shape=ctx.ir_shape(x))
        inner = ctx.tmp(f"{node.output[0]}/max_of_negated", nhwc(ctx.src_shape(node, node.output[0])))
        _reduce(ctx, node, a, neg, "REDUCE_MAX", inner)
        ctx.emit("MUL", [inner, ctx.add_const(f"{node.output[0]}/minus_one", np.array([-1.0]))], node.output[0],
                 {"act": "NONE"}, node)
        return
    if node.op_type in ("ReduceSumSquare", "ReduceL1", "ReduceL2"):
        shape = ctx.ir_shape(x)
        if node.op_type == "ReduceL1":
            x = ctx.emit("ABS", [x], ctx.tmp(f"{node.output[0]}/abs", shape), {}, node, shape=shape)
        else:
            x = ctx.emit("MUL", [x, x], ctx.tmp(f"{node.output[0]}/square", shape), {"act": "NONE"}, node,
                         shape=shape)
        if node.op_type == "ReduceL2":
            summed = ctx.tmp(f"{node.output[0]}/sum_sq", nhwc(ctx.src_shape(node, node.output[0])))
            _reduce(ctx, node, a, x, "SUM", summed)
            ctx.emit("SQRT", [summed], node.output[0], {}, node)
            return
    _reduce(ctx, node, a, x, KINDS[node.op_type], node.output[0])


def reduce_axes(ctx: ImportContext, node: Any, a: dict, rank: int) -> Optional[list[int]]:
    """A Reduce node's source axes (from input 1 or the ``axes`` attribute, sorted, non-negative); all axes
    when none are given, or None for ``noop_with_empty_axes=1`` with no axes (the node is an identity)."""
    if len(node.input) > 1 and node.input[1]:
        axes = [int(v) for v in np.asarray(ctx.const(node, node.input[1])).reshape(-1)]
    else:
        axes = [int(v) for v in a.get("axes", [])]
    if not axes:
        if a.get("noop_with_empty_axes", 0):
            return None
        axes = list(range(rank))
    return sorted({ax % rank for ax in axes})


def _reduce(ctx: ImportContext, node: Any, a: dict, x: str, kind: str, out: str) -> None:
    """Reduce IR activation ``x`` (ONNX input 0 of ``node``) with ``kind`` into ``out``."""
    shape = ctx.src_shape(node, node.input[0])
    rank = len(shape)
    axes = reduce_axes(ctx, node, a, rank)
    if axes is None:
        ctx.transpose(x, tuple(range(rank)), out, node)
        return
    keep = bool(a.get("keepdims", 1))
    ir_axes = tuple(sorted(ctx.ir_axis(rank, ax) for ax in axes))
    in_ir = ctx.ir_shape(x)
    kept_shape = tuple(1 if d in ir_axes else s for d, s in enumerate(in_ir))
    direct = keep or rank != 4
    dst = out if direct else ctx.tmp(f"{out}/kept", kept_shape)
    if rank == 4 and ir_axes == (1, 2) and kind == "REDUCE_MAX":
        y = ctx.emit("MAX_POOL_2D", [x], out if keep else ctx.tmp(f"{out}/pooled", kept_shape),
                     {"kernel": in_ir[1:3], "stride": in_ir[1:3], "pads": (0, 0, 0, 0), "act": "NONE"}, node,
                     shape=kept_shape)
        if not keep:
            ctx.reshape(y, ctx.src_shape(node, node.output[0]), out, node)
        return
    if direct and not keep:
        ctx.emit(kind, [x], out, {"axes": ir_axes, "keep_dims": False}, node)
        return
    y = ctx.emit(kind, [x], dst, {"axes": ir_axes, "keep_dims": True}, node, shape=kept_shape)
    if not direct:
        ctx.reshape(y, ctx.src_shape(node, node.output[0]), out, node)


def softmax(ctx: ImportContext, node: Any, a: dict) -> None:
    """Softmax/LogSoftmax on any axis: transposed so the axis is last when it is not already.

    Below opset 13 the op normalises over all axes from ``axis`` on (flattened), as ONNX defined it then.
    """
    x = ctx.act(node, node.input[0])
    shape = ctx.src_shape(node, node.input[0])
    rank = len(shape)
    kind = "SOFTMAX" if node.op_type == "Softmax" else "LOG_SOFTMAX"
    attrs = {"beta": 1.0} if kind == "SOFTMAX" else {}
    out = node.output[0]
    if ctx.opset < 13:
        axis = int(a.get("axis", 1)) % rank
        if axis != rank - 1:
            flat = (int(np.prod(shape[:axis])), int(np.prod(shape[axis:])))
            f = ctx.reshape(x, flat, node=node)
            s = ctx.emit(kind, [f], ctx.tmp(f"{out}/flat", flat), attrs, node, shape=flat)
            ctx.reshape(s, shape, out, node)
            return
    axis = int(a.get("axis", -1)) % rank
    last = rank - 1
    if rank == 4 and axis != 1:
        # work in ONNX layout (a 4-D attention map is not an image); the TRANSPOSEs around it cancel
        # against the ones that brought it into NHWC
        xs = ctx.to_src(x)
        perm = list(range(rank))
        perm[axis], perm[last] = perm[last], perm[axis]
        t = ctx.transpose(xs, tuple(perm))
        s = ctx.emit(kind, [t], ctx.tmp(f"{out}/src", ctx.ir_shape(t)), attrs, node, shape=ctx.ir_shape(t))
        back = ctx.transpose(s, tuple(perm))
        ctx.from_src(back, out, node)
        return
    axis = ctx.ir_axis(rank, axis)
    if axis == last:
        ctx.emit(kind, [x], out, attrs, node)
        return
    perm = list(range(rank))
    perm[axis], perm[last] = perm[last], perm[axis]
    t = ctx.transpose(x, tuple(perm))
    s = ctx.emit(kind, [t], ctx.tmp(f"{out}/moved", ctx.ir_shape(t)), attrs, node, shape=ctx.ir_shape(t))
    ctx.transpose(s, tuple(perm), out, node)


REGISTRY = {**{t: reduce for t in KINDS}, "Softmax": softmax, "LogSoftmax": softmax}
