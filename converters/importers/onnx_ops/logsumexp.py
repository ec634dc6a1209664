"""ReduceLogSumExp (``max + log(sum(exp(x - max)))``, stable for large inputs) and ReduceLogSum
(``log(sum(x))``); EXP and LOG run as float islands."""
from __future__ import annotations

from typing import Any


from converters.importers.onnx_ops.context import ImportContext
from converters.importers.onnx_ops.reduce import reduce_axes


def _axes(ctx: ImportContext, node: Any, a: dict, rank: int) -> tuple[int, ...]:
    axes = reduce_axes(ctx, node, a, rank)
    if axes is None:
        raise ctx.err(node, "noop_with_empty_axes=1 with no axes is not supported; give the axes")
    return tuple(sorted(ctx.ir_axis(rank, ax) for ax in axes))


def log_reduce(ctx: ImportContext, node: Any, a: dict) -> None:
    """ReduceLogSumExp / ReduceLogSum over constant axes, keepdims or not."""
    x = ctx.act(node, node.input[0])
    rank = len(ctx.src_shape(node, node.input[0]))
    axes = _axes(ctx, node, a, rank)
    keep = bool(a.get("keepdims", 1))
    out = node.output[0]
    shape = ctx.ir_shape(x)
    kept = tuple(1 if d in axes else s for d, s in enumerate(shape))
    red = {"axes": axes, "keep_dims": True}

    def tmp(name: str, s: tuple[int, ...]) -> str:
        return ctx.tmp(f"{out}/{name}", s)
    dst = out if keep else tmp("kept", kept)
    if node.op_type == "ReduceLogSum":
        s = ctx.emit("SUM", [x], tmp("sum", kept), red, node, shape=kept)
        y = ctx.emit("LOG", [s], dst, {}, node, shape=kept)
    else:
        m = ctx.emit("REDUCE_MAX", [x], tmp("max", kept), red, node, shape=kept)
        d = ctx.emit("SUB", [x, m], tmp("shifted", shape), {"act": "NONE"}, node, shape=shape)
        e = ctx.emit("EXP", [d], tmp("exp", shape), {}, node, shape=shape)
        s = ctx.emit("SUM", [e], tmp("sum", kept), red, node, shape=kept)
        lg = ctx.emit("LOG", [s], tmp("log", kept), {}, node, shape=kept)
        y = ctx.emit("ADD", [lg, m], dst, {"act": "NONE"}, node, shape=kept)
    if not keep:
        ctx.reshape(y, ctx.src_shape(node, out), out, node)


REGISTRY = {"ReduceLogSumExp": log_reduce, "ReduceLogSum": log_reduce}
