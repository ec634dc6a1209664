"""TopK (detector post-processing keeps the top-k candidates): TFLite's TOPK_V2 along the last axis, values
and int32 indices (ONNX's int64 values), ties broken by the lower index as both ONNX and LiteRT do.

k = 1 is written as REDUCE_MAX and ARG_MAX (TFLite Micro runs both); k > 1 as TOPK_V2, which only LiteRT
runs (the converter refuses it on TFLite Micro profiles: :data:`converters.ir.LITERT_ONLY_KINDS`)."""
from __future__ import annotations

from typing import Any

import numpy as np

from converters.importers.onnx_ops.context import ImportContext, nhwc
from converters.ir import TO_NHWC, Op, inverse_perm, perm_keeps_order


def topk_k(ctx: ImportContext, node: Any, a: dict, depth: int) -> int:
    """The constant ``k`` (attribute before opset 10, input 1 from then), in ``[1, depth]``."""
    if len(node.input) > 1 and node.input[1]:
        k = np.asarray(ctx.const(node, node.input[1])).reshape(-1)
        if k.size != 1:
            raise ctx.err(node, f"k must hold one value, got {k.tolist()}")
        value = int(k[0])
    elif "k" in a:
        value = int(a["k"])
    else:
        raise ctx.err(node, "k is missing (neither an input nor an attribute)")
    if not 1 <= value <= depth:
        raise ctx.err(node, f"k={value} must be in [1, {depth}] (the size of the TopK axis)")
    return value


def topk(ctx: ImportContext, node: Any, a: dict) -> None:
    """TopK with ``largest=1`` over any axis; ``sorted=0`` gives the sorted order too (ONNX then allows any).

    TOPK_V2 works on the last axis of the ONNX-layout tensor; another axis is moved last by a TRANSPOSE and
    the values moved back. The int32 indices are only reshaped (never transposed), so when they are read and
    moving the axis back changes their element order, the node is refused in one line."""
    if not int(a.get("largest", 1)):
        raise ctx.err(node, "largest=0 (the k smallest values) is not supported; export with largest=1")
    x = ctx.act(node, node.input[0])
    shape = ctx.src_shape(node, node.input[0])
    rank = len(shape)
    if rank == 0:
        raise ctx.err(node, "the input is a scalar; TopK needs at least one axis")
    axis = int(a.get("axis", -1)) % rank
    k = topk_k(ctx, node, a, int(shape[axis]))
    perm = tuple(d for d in range(rank) if d != axis) + (axis,)
    moved = tuple(shape[p] for p in perm[:-1]) + (k,)
    back = inverse_perm(perm)
    to_ir = tuple(back[t] for t in TO_NHWC) if rank == 4 else back  # moved layout -> the IR's (NHWC for 4-D)
    values_out = node.output[0]
    indices_out = node.output[1] if len(node.output) > 1 and ctx.uses.get(node.output[1], 0) else ""  # read?
    if indices_out and not perm_keeps_order(moved, to_ir):
        raise ctx.err(node, f"TopK along axis {axis} of shape {list(shape)} needs a transpose of its int32 indices, "
                            "which the converter does not write; give TopK the last axis")
    xs = ctx.transpose(ctx.to_src(x), perm)
    label = node.name or node.output[0]
    vals, idx = ctx.tmp(f"{values_out}/topk_values", moved), ctx.tmp(f"{values_out}/topk_indices", moved)
    if k == 1:  # ops TFLite Micro has: REDUCE_MAX and ARG_MAX (ties: the lowest index, as TopK)
        ctx.emit("REDUCE_MAX", [xs], vals, {"axes": (rank - 1,), "keep_dims": True}, node, shape=moved)
        first = ctx.emit("ARG_MAX", [xs], ctx.tmp(f"{values_out}/argmax", moved[:-1]), {"axis": rank - 1}, node,
                         shape=moved[:-1])
        ctx.emit("RESHAPE", [first], idx, {}, node, shape=moved)
    else:
        ctx.ops.append(Op("TOPK_V2", [xs], [vals, idx], {"k": k}, name=label))
    ir_out = nhwc(tuple(k if d == axis else s for d, s in enumerate(shape)))
    ctx.transpose(vals, to_ir, values_out, node)
    if indices_out:
        ctx.emit("RESHAPE", [idx], indices_out, {}, node, shape=ir_out)


REGISTRY = {"TopK": topk}
