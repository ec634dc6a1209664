"""ArgMax / ArgMin (segmentation heads, classifiers): an int32 index output (ONNX's int64 values)."""
from __future__ import annotations

from typing import Any

from converters.importers.onnx_ops.context import ImportContext, nhwc


def arg_extreme(ctx: ImportContext, node: Any, a: dict) -> None:
    """ArgMax/ArgMin over one axis, ``keepdims`` 0 or 1; ``select_last_index=1`` is refused (TFLite
    returns the first index of a tie).

    The IR's ARG_MAX/ARG_MIN drop the axis. On a 4-D (NHWC) input: with ``keepdims`` the result is
    reshaped to the kept shape (the dropped axis has size 1, so element order is unchanged); without
    it, a channel reduction leaves ``[N, H, W]`` (ONNX's order), and a spatial one is computed on the
    input transposed back to NCHW so that the remaining axes keep ONNX's order.
    """
    if int(a.get("select_last_index", 0)):
        raise ctx.err(node, "select_last_index=1 is not supported (TFLite returns the first index of a tie); "
                            "export with select_last_index=0")
    kind = "ARG_MAX" if node.op_type == "ArgMax" else "ARG_MIN"
    x = ctx.act(node, node.input[0])
    shape = ctx.src_shape(node, node.input[0])
    rank = len(shape)
    axis = int(a.get("axis", 0)) % rank
    keep = bool(a.get("keepdims", 1))
    out = node.output[0]
    dropped = tuple(s for d, s in enumerate(shape) if d != axis)
    if rank == 4 and not keep and axis != 1:
        xs = ctx.to_src(x)
        ctx.emit(kind, [xs], out, {"axis": axis}, node, shape=dropped)
        return
    ir_axis = ctx.ir_axis(rank, axis)
    in_ir = ctx.ir_shape(x)
    flat = tuple(s for d, s in enumerate(in_ir) if d != ir_axis)
    if not keep:
        ctx.emit(kind, [x], out, {"axis": ir_axis}, node, shape=flat)
        return
    idx = ctx.tmp(f"{out}/index", flat)
    ctx.emit(kind, [x], idx, {"axis": ir_axis}, node, shape=flat)
    kept = tuple(1 if d == axis else s for d, s in enumerate(shape))
    ctx.emit("RESHAPE", [idx], out, {}, node, shape=nhwc(kept))


REGISTRY = {"ArgMax": arg_extreme, "ArgMin": arg_extreme}
