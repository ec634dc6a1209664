"""TensorScatter (ONNX opset 24, a KV-cache update) with constant write indices: the present cache is the
past cache with ``update`` written at ``write_indices[b]`` (modulo the cache length in ``circular`` mode)
along ``axis``, so each batch row is a CONCATENATION of STRIDED_SLICEs of the cache and of the update (a
constant update is sliced as constants), and the rows a CONCATENATION along the batch axis. Everything
moves in the ONNX layout; the cache and the update share their int8 parameters (CONCATENATION)."""
from __future__ import annotations

from typing import Any, Union

import numpy as np

from converters.importers.onnx_ops.context import ImportContext

Source = Union[str, np.ndarray]


def _runs(sources: list[tuple[int, int]]) -> list[tuple[int, int, int]]:
    """``(source, first index, length)`` runs of consecutive positions read from one source in order."""
    runs: list[tuple[int, int, int]] = []
    for src, k in sources:
        if runs and runs[-1][0] == src and runs[-1][1] + runs[-1][2] == k:
            runs[-1] = (src, runs[-1][1], runs[-1][2] + 1)
        else:
            runs.append((src, k, 1))
    return runs


def _piece(ctx: ImportContext, node: Any, src: Source, b: int, axis: int, start: int, length: int) -> str:
    """Batch row ``b`` of ``src`` (an IR activation in ONNX layout, or a constant) at ``start:start+length``
    on ``axis``."""
    out = node.output[0]
    if isinstance(src, np.ndarray):
        index = [slice(None)] * src.ndim
        index[0], index[axis] = slice(b, b + 1), slice(start, start + length)
        return ctx.add_const(f"{out}/update_part", np.ascontiguousarray(src[tuple(index)], np.float32))
    shape = list(ctx.ir_shape(src))
    begin, end = [0] * len(shape), list(shape)
    begin[0], end[0], begin[axis], end[axis] = b, b + 1, start, start + length
    piece_shape = tuple(e - s for s, e in zip(begin, end))
    return ctx.emit("STRIDED_SLICE", [src], ctx.tmp(f"{out}/part", piece_shape),
                    {"begin": tuple(begin), "end": tuple(end), "strides": (1,) * len(shape), "end_mask": 0}, node,
                    shape=piece_shape)


def _concat(ctx: ImportContext, node: Any, parts: list[str], axis: int, shape: tuple[int, ...]) -> str:
    if len(parts) == 1:
        return parts[0]
    return ctx.emit("CONCATENATION", parts, ctx.tmp(f"{node.output[0]}/joined", shape), {"axis": axis, "act": "NONE"},
                    node, shape=shape)


def tensor_scatter(ctx: ImportContext, node: Any, a: dict) -> None:
    """TensorScatter(past_cache, update, write_indices) with constant ``write_indices`` (zeros when absent)."""
    shape = tuple(int(d) for d in ctx.src_shape(node, node.input[0]))
    ushape = tuple(int(d) for d in ctx.src_shape(node, node.input[1]))
    rank = len(shape)
    axis = int(a.get("axis", -2))
    mode = a.get("mode", "linear")
    mode = mode.decode() if isinstance(mode, bytes) else str(mode)
    if rank < 2 or not -rank <= axis < rank or axis % rank == 0:
        raise ctx.err(node, f"axis {axis} must name a non-batch axis of the rank-{rank} cache")
    axis %= rank
    if len(ushape) != rank or any(u != s for k, (u, s) in enumerate(zip(ushape, shape)) if k != axis) \
            or ushape[axis] > shape[axis]:
        raise ctx.err(node, f"update of shape {ushape} does not fit the cache {shape} on axis {axis}")
    if mode not in ("linear", "circular"):
        raise ctx.err(node, f"mode '{mode}' is not supported (linear and circular are)")
    batch, length, seq = shape[0], shape[axis], ushape[axis]
    has_idx = len(node.input) > 2 and node.input[2]
    idx = (np.asarray(ctx.const(node, node.input[2])).astype(np.int64).reshape(-1) if has_idx
           else np.zeros(batch, np.int64))
    if idx.size != batch or np.any(idx < 0) or (mode == "linear" and np.any(idx + seq > length)):
        raise ctx.err(node, f"write_indices {idx.tolist()} must hold {batch} values with index + {seq} <= {length}"
                            + (" (linear mode)" if mode == "linear" else ""))
    sources: list[Source] = []
    for n in node.input[:2]:
        if ctx.is_const(n):
            sources.append(np.asarray(ctx.const(node, n), np.float32))
        else:
            sources.append(ctx.to_src(ctx.act(node, n)))
    if all(isinstance(s, np.ndarray) for s in sources):
        raise ctx.err(node, "updates a constant cache with a constant; fold it before conversion")
    rows = []
    row_shape = (1,) + shape[1:]
    for b in range(batch):
        where = {(int(idx[b]) + k) % length: k for k in range(seq)}
        runs = _runs([(1, where[j]) if j in where else (0, j) for j in range(length)])
        parts = [_piece(ctx, node, sources[src], b, axis, k, n) for src, k, n in runs]
        rows.append(_concat(ctx, node, parts, axis, row_shape))
    y = _concat(ctx, node, rows, 0, shape)
    if ctx.tensors[y].is_constant:
        raise ctx.err(node, "a constant update overwrites the whole cache; fold it before conversion")
    if rank == 4:
        ctx.from_src(y, node.output[0], node)
    else:
        ctx.transpose(y, tuple(range(rank)), node.output[0], node)


REGISTRY = {"TensorScatter": tensor_scatter}
