"""CumSum (along any axis, exclusive / reverse), GatherND and GatherElements with constant indices
(GatherElements becomes a GATHER_ND of the full index tuples), and both from a constant table by run-time
integer indices (token ids)."""
from __future__ import annotations

from typing import Any

import numpy as np

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


#: Deepest index tuple tflite-micro's GATHER_ND takes; deeper tuples index a flattened view of the data.
MAX_INDEX_DEPTH = 5


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
    if len(out_shape) != 4:
        ctx.emit("GATHER_ND", [x, ind], node.output[0], {}, node, shape=out_shape)
        return
    y = ctx.emit("GATHER_ND", [x, ind], ctx.tmp(f"{node.output[0]}/src", out_shape), {}, node, shape=out_shape)
    ctx.from_src(y, node.output[0], node)


def _runtime_indices(ctx: ImportContext, node: Any) -> bool:
    """True when ``node`` reads run-time integer indices (token ids) from a constant table; refuses run-time
    indices that are not integer index values, and a non-float table."""
    if ctx.is_const(node.input[1]):
        return False
    if not ctx.is_int(node.input[1]):
        raise ctx.err(node, f"{node.op_type} indices computed at run time must come from an integer model input "
                            "(token ids, bytes, indices)")
    table = np.asarray(ctx.const(node, node.input[0]))
    if table.dtype.kind != "f":
        raise ctx.err(node, f"{node.op_type} from a constant {table.dtype} table with run-time indices: only float "
                            "tables can be converted")
    return True


def _lookup_nd(ctx: ImportContext, node: Any, ind: str, depth: int) -> None:
    """GATHER_ND from the constant float table (input 0, ONNX layout) by int32 index tuples ``ind`` (an IR
    activation in ONNX layout whose last axis holds ``depth`` indices)."""
    table = np.asarray(ctx.const(node, node.input[0])).astype(np.float32)
    if depth > MAX_INDEX_DEPTH:
        raise ctx.err(node, f"run-time index tuples of {depth} values: at most {MAX_INDEX_DEPTH} are supported")
    out = node.output[0]
    out_shape = tuple(ctx.ir_shape(ind)[:-1]) + tuple(table.shape[depth:])
    name = ctx.add_const(f"{node.input[0]}/table", table)
    if len(out_shape) != 4:
        ctx.emit("GATHER_ND", [name, ind], out, {}, node, shape=out_shape)
        return
    y = ctx.emit("GATHER_ND", [name, ind], ctx.tmp(f"{out}/src", out_shape), {}, node, shape=out_shape)
    ctx.from_src(y, out, node)


def gather_nd(ctx: ImportContext, node: Any, a: dict) -> None:
    """GatherND (batch_dims 0) with constant indices, on the ONNX layout of the data; or from a constant float
    table by run-time integer index tuples (token ids) -> GATHER_ND(table, indices)."""
    if int(a.get("batch_dims", 0)):
        raise ctx.err(node, "batch_dims > 0 is not supported; gather with batch_dims=0")
    if _runtime_indices(ctx, node):
        shape = ctx.src_shape(node, node.input[1])
        if len(shape) < 1 or shape[-1] > len(ctx.src_shape(node, node.input[0])):
            raise ctx.err(node, f"indices of shape {shape} do not fit the table")
        ind = ctx.to_src(ctx.act(node, node.input[1]))
        _lookup_nd(ctx, node, ind, int(shape[-1]))
        return
    data_shape = ctx.src_shape(node, node.input[0])
    idx = np.asarray(ctx.const(node, node.input[1])).astype(np.int64)
    if idx.ndim < 1 or idx.shape[-1] > len(data_shape):
        raise ctx.err(node, f"indices of shape {idx.shape} do not fit data of shape {data_shape}")
    depth = idx.shape[-1]
    idx = np.where(idx < 0, idx + np.array(data_shape[:depth]), idx)
    _emit_gather_nd(ctx, node, tuple(data_shape), idx)


def _elements_lookup(ctx: ImportContext, node: Any, axis: int) -> None:
    """GatherElements from a constant table by run-time integer indices: one index tuple per output element,
    the run-time index (on ``axis``) concatenated with constant coordinates (the other axes), all flattened to
    ``[elements, rank]``; then GATHER_ND and a reshape to the output shape."""
    shape = tuple(ctx.src_shape(node, node.input[1]))
    rank, size = len(shape), int(np.prod(shape))
    out = node.output[0]
    idx = ctx.reshape(ctx.act(node, node.input[1]), (size, 1), node=node)
    grids = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    parts = [idx if d == axis else ctx.add_const(f"{out}/grid{d}", grids[d].reshape(size, 1), np.int32)
             for d in range(rank)]
    if rank > MAX_INDEX_DEPTH:
        raise ctx.err(node, f"run-time indices into a table of rank {rank}: at most {MAX_INDEX_DEPTH} are supported")
    ind = idx if rank == 1 else ctx.emit("CONCATENATION", parts, ctx.tmp(f"{out}/index_tuples", (size, rank)),
                                         {"axis": 1, "act": "NONE"}, node, shape=(size, rank))
    table = ctx.add_const(f"{node.input[0]}/table", np.asarray(ctx.const(node, node.input[0])).astype(np.float32))
    flat = ctx.emit("GATHER_ND", [table, ind], ctx.tmp(f"{out}/flat", (size,)), {}, node, shape=(size,))
    ctx.reshape(flat, shape, out, node)


def gather_elements(ctx: ImportContext, node: Any, a: dict) -> None:
    """GatherElements with constant indices -> GATHER_ND with one full index tuple per output element; with
    run-time integer indices (token ids) into a constant table, the same tuples built at run time
    (:func:`_elements_lookup`)."""
    data_shape = ctx.src_shape(node, node.input[0])
    rank = len(data_shape)
    axis = int(a.get("axis", 0)) % rank
    if _runtime_indices(ctx, node):
        if len(ctx.src_shape(node, node.input[1])) != rank:
            raise ctx.err(node, f"indices of rank {len(ctx.src_shape(node, node.input[1]))} do not match data of "
                                f"rank {rank}")
        _elements_lookup(ctx, node, axis)
        return
    idx = np.asarray(ctx.const(node, node.input[1])).astype(np.int64)
    if idx.ndim != rank:
        raise ctx.err(node, f"indices of rank {idx.ndim} do not match data of rank {rank}")
    idx = np.where(idx < 0, idx + data_shape[axis], idx)
    grids = list(np.meshgrid(*[np.arange(s) for s in idx.shape], indexing="ij"))
    grids[axis] = idx
    _emit_gather_nd(ctx, node, tuple(data_shape), np.stack(grids, axis=-1))  # [*out_shape, rank]


REGISTRY = {"CumSum": cumsum, "GatherND": gather_nd, "GatherElements": gather_elements}
