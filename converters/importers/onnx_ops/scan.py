"""CumSum (along any axis, exclusive / reverse), GatherND and GatherElements with constant indices
(GatherElements becomes a GATHER_ND of the full index tuples), and both by run-time integer indices (token ids,
TopK/ArgMax results) on run-time data or a constant table (:mod:`converters.importers.onnx_ops.runtime_gather`)."""
from __future__ import annotations

from typing import Any

import numpy as np

from converters.importers.onnx_ops import runtime_gather
from converters.importers.onnx_ops.context import ImportContext


def cumsum(ctx: ImportContext, node: Any, a: dict) -> None:
    """CumSum with a constant axis -> CUMSUM on the IR axis."""
    x = ctx.act(node, node.input[0])
    rank = len(ctx.src_shape(node, node.input[0]))
    axis = np.asarray(ctx.const(node, node.input[1])).reshape(-1)
    if axis.size != 1:
        raise ctx.err(node, f"axis {axis.tolist()} must be a single value")
    ctx.emit("CUMSUM", [x], node.output[0], {"axis": ctx.ir_axis(rank, int(axis[0])),
                                             "exclusive": bool(a.get("exclusive", 0)),
                                             "reverse": bool(a.get("reverse", 0))}, node)


#: Deepest index tuple tflite-micro's GATHER_ND takes; deeper constant tuples index a flattened view of the data.
MAX_INDEX_DEPTH = runtime_gather.MAX_INDEX_DEPTH


def _emit_gather_nd(ctx: ImportContext, node: Any, data_shape: tuple[int, ...], idx: np.ndarray) -> None:
    """GATHER_ND of ``node``'s data (ONNX layout) by constant index tuples ``idx`` (last axis: the tuple,
    non-negative). Tuples deeper than :data:`MAX_INDEX_DEPTH` become one index into the data with its
    leading axes flattened (a RESHAPE), which selects the same elements."""
    depth = idx.shape[-1]
    out_shape = tuple(idx.shape[:-1]) + tuple(data_shape[depth:])
    x = ctx.act(node, node.input[0])
    if depth > MAX_INDEX_DEPTH:
        strides = np.cumprod((list(data_shape[1:depth]) + [1])[::-1])[::-1]
        idx = (idx * strides).sum(axis=-1, keepdims=True)
        flat = (int(np.prod(data_shape[:depth])),) + tuple(data_shape[depth:])
        x = ctx.reshape(x, flat, node=node)
    x = ctx.to_src(x)
    ind = ctx.add_const(f"{node.output[0]}/indices", idx.astype(np.int32), np.int32)
    runtime_gather.emit_gather(ctx, node, "GATHER_ND", [x, ind], {}, out_shape)


def gather_nd(ctx: ImportContext, node: Any, a: dict) -> None:
    """GatherND (batch_dims 0) with constant indices, on the ONNX layout of the data; with run-time integer index
    tuples (token ids, TopK/ArgMax results) on run-time data or a constant float table -> GATHER_ND(data, indices)
    (:func:`converters.importers.onnx_ops.runtime_gather.gather_nd`)."""
    if int(a.get("batch_dims", 0)):
        raise ctx.err(node, "batch_dims > 0 is not supported; gather with batch_dims=0")
    if runtime_gather.runtime_indices(ctx, node):
        runtime_gather.gather_nd(ctx, node)
        return
    data_shape = ctx.src_shape(node, node.input[0])
    idx = np.asarray(ctx.const(node, node.input[1])).astype(np.int64)
    if idx.ndim < 1 or idx.shape[-1] > len(data_shape):
        raise ctx.err(node, f"indices of shape {idx.shape} do not fit data of shape {data_shape}")
    depth = idx.shape[-1]
    idx = np.where(idx < 0, idx + np.array(data_shape[:depth]), idx)
    _emit_gather_nd(ctx, node, tuple(data_shape), idx)


def gather_elements(ctx: ImportContext, node: Any, a: dict) -> None:
    """GatherElements with constant indices -> GATHER_ND with one full index tuple per output element; with
    run-time integer indices (token ids, TopK/ArgMax results) on run-time data or a constant float table, the same
    tuples built at run time (:func:`converters.importers.onnx_ops.runtime_gather.gather_elements`)."""
    data_shape = ctx.src_shape(node, node.input[0])
    rank = len(data_shape)
    axis = int(a.get("axis", 0)) % rank
    if runtime_gather.runtime_indices(ctx, node):
        runtime_gather.gather_elements(ctx, node, axis)
        return
    idx = np.asarray(ctx.const(node, node.input[1])).astype(np.int64)
    if idx.ndim != rank:
        raise ctx.err(node, f"indices of rank {idx.ndim} do not match data of rank {rank}")
    idx = np.where(idx < 0, idx + data_shape[axis], idx)
    grids = list(np.meshgrid(*[np.arange(s) for s in idx.shape], indexing="ij"))
    grids[axis] = idx
    _emit_gather_nd(ctx, node, tuple(data_shape), np.stack(grids, axis=-1))  # [*out_shape, rank]


REGISTRY = {"CumSum": cumsum, "GatherND": gather_nd, "GatherElements": gather_elements}
