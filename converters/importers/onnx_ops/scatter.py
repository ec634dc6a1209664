"""ScatterElements, Scatter (its opset 9-10 name) and ScatterND with constant indices, as GATHERs of
constant index maps (tflite-micro has no SCATTER_ND).

Data and updates (activations or constants, not both constants) are flattened. Without a reduction the
output is one ``GATHER(CONCATENATION(data, updates), map)``: the map holds, per output element, its data
element or the last update written to it. With ``reduction`` add/mul/max/min, an output element written
``k`` times combines its data element with ``k`` gathered updates: level ``i`` gathers each element's
``i``-th update (in index order, as ONNX applies them) and ADD/MUL/MAXIMUM/MINIMUMs it in; elements with
fewer updates gather the operation's identity (0 or 1 for add/mul, their own data element for max/min).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from converters.importers.onnx_ops.context import ImportContext

REDUCTIONS = {"add": "ADD", "mul": "MUL", "max": "MAXIMUM", "min": "MINIMUM"}
#: Most updates scattered into one output element with a reduction (one GATHER and one op each).
MAX_WRITES = 64


def _indices(ctx: ImportContext, node: Any) -> np.ndarray:
    """The constant indices (input 1), refused in one line when computed at run time."""
    n = node.input[1]
    if not ctx.is_const(n):
        raise ctx.err(node, f"run-time indices ('{n}') are not supported; only constant indices (an initializer "
                            "or folded value) convert")
    idx = np.asarray(ctx.const(node, n))
    if idx.dtype.kind not in "iu":
        raise ctx.err(node, f"indices '{n}' are {idx.dtype}, not integers")
    return idx.astype(np.int64)


def _targets_elements(ctx: ImportContext, node: Any, a: dict, data_shape: tuple[int, ...],
                      upd_shape: tuple[int, ...]) -> np.ndarray:
    """ScatterElements: the flat output position each update element is written to, in update order."""
    idx = _indices(ctx, node)
    rank = len(data_shape)
    axis = int(a.get("axis", 0))
    if not -rank <= axis < rank:
        raise ctx.err(node, f"axis {axis} is out of range for rank-{rank} data")
    axis %= rank
    if idx.shape != tuple(upd_shape) or idx.ndim != rank:
        raise ctx.err(node, f"indices {idx.shape} and updates {tuple(upd_shape)} must have the same shape, of "
                            f"the data's rank {rank}")
    size = data_shape[axis]
    if np.any(idx < -size) or np.any(idx >= size):
        raise ctx.err(node, f"an index is out of range for axis {axis} of size {size}")
    coords = list(np.indices(idx.shape).reshape(rank, -1))
    coords[axis] = np.where(idx < 0, idx + size, idx).reshape(-1)
    return np.ravel_multi_index(tuple(coords), data_shape).astype(np.int64)


def _targets_nd(ctx: ImportContext, node: Any, data_shape: tuple[int, ...],
                upd_shape: tuple[int, ...]) -> np.ndarray:
    """ScatterND: the flat output position each update element is written to, in update order."""
    idx = _indices(ctx, node)
    if idx.ndim < 1 or idx.shape[-1] > len(data_shape):
        raise ctx.err(node, f"indices of shape {idx.shape} do not fit rank-{len(data_shape)} data")
    k = idx.shape[-1]
    want = tuple(idx.shape[:-1]) + tuple(data_shape[k:])
    if tuple(upd_shape) != want:
        raise ctx.err(node, f"updates have shape {tuple(upd_shape)}, ScatterND needs {want}")
    lead = np.asarray(data_shape[:k], np.int64)
    tuples = idx.reshape(-1, k)
    if np.any(tuples < -lead) or np.any(tuples >= lead):
        raise ctx.err(node, "an index tuple is out of range for the data's shape")
    tuples = np.where(tuples < 0, tuples + lead, tuples)
    inner = int(np.prod(data_shape[k:], dtype=np.int64))
    starts = (np.ravel_multi_index(tuple(tuples.T), tuple(data_shape[:k])) if k else np.zeros(len(tuples), np.int64))
    return (starts[:, None] * inner + np.arange(inner)[None, :]).reshape(-1).astype(np.int64)


def _flat(ctx: ImportContext, node: Any, n: str, size: int, tag: str) -> str:
    """ONNX tensor ``n`` (activation or constant) as a 1-D IR tensor in ONNX element order."""
    if ctx.is_const(n):
        v = np.asarray(ctx.const(node, n))
        if v.dtype.kind != "f":
            raise ctx.err(node, f"scattering {v.dtype} values ('{n}') is not supported; only float values convert")
        return ctx.add_const(f"{node.output[0]}/{tag}", v.astype(np.float32).reshape(-1))
    if ctx.is_int(n):
        raise ctx.err(node, f"scattering the integer input '{n}' is not supported; only float values convert")
    return ctx.reshape(ctx.act(node, n), (size,), node=node)


def _gather(ctx: ImportContext, node: Any, src: str, index_map: np.ndarray, tag: str) -> str:
    out = node.output[0]
    return ctx.emit("GATHER", [src, ctx.add_const(f"{out}/{tag}_map", index_map.astype(np.int32), np.int32)],
                    ctx.tmp(f"{out}/{tag}", (len(index_map),)), {"axis": 0}, node, shape=(len(index_map),))


def _concat(ctx: ImportContext, node: Any, parts: list[str], tag: str) -> str:
    size = sum(ctx.ir_shape(p)[0] for p in parts)
    return ctx.emit("CONCATENATION", parts, ctx.tmp(f"{node.output[0]}/{tag}", (size,)), {"axis": 0, "act": "NONE"},
                    node, shape=(size,))


def scatter(ctx: ImportContext, node: Any, a: dict) -> None:
    """ScatterElements / Scatter / ScatterND with constant indices, reduction none/add/mul/max/min."""
    data_in, upd_in = node.input[0], node.input[2]
    if ctx.is_const(data_in) and ctx.is_const(upd_in):
        raise ctx.err(node, "data and updates are both constants; fold the node before conversion")
    data_shape = tuple(int(d) for d in ctx.src_shape(node, data_in))
    upd_shape = tuple(int(d) for d in ctx.src_shape(node, upd_in))
    reduction = a.get("reduction", "none")
    reduction = reduction.decode() if isinstance(reduction, bytes) else str(reduction)
    if reduction != "none" and reduction not in REDUCTIONS:
        raise ctx.err(node, f"reduction '{reduction}' is not supported (none, add, mul, max, min)")
    if node.op_type == "ScatterND":
        targets = _targets_nd(ctx, node, data_shape, upd_shape)
    else:
        targets = _targets_elements(ctx, node, a, data_shape, upd_shape)
    n, m = int(np.prod(data_shape, dtype=np.int64)), len(targets)
    out = node.output[0]
    data = _flat(ctx, node, data_in, n, "data")
    upd = _flat(ctx, node, upd_in, m, "updates")
    if reduction == "none":
        index_map = np.arange(n, dtype=np.int64)
        # a repeated target takes its last update in index order (ONNX leaves it undefined; its reference
        # implementation and onnxruntime write in order)
        hit, last_rev = np.unique(targets[::-1], return_index=True)
        index_map[hit] = n + (m - 1 - last_rev)
        y = _gather(ctx, node, _concat(ctx, node, [data, upd], "data_and_updates"), index_map, "scattered")
    else:
        counts = np.bincount(targets, minlength=n)
        if int(counts.max(initial=0)) > MAX_WRITES:
            raise ctx.err(node, f"an output element receives {int(counts.max())} updates; at most {MAX_WRITES} "
                                "convert with a reduction")
        if reduction in ("add", "mul"):
            ident = ctx.add_const(f"{out}/identity", np.array([0.0 if reduction == "add" else 1.0], np.float32))
            src, offset, pad = _concat(ctx, node, [upd, ident], "updates"), 0, np.full(n, m, np.int64)
        else:
            src, offset, pad = _concat(ctx, node, [data, upd], "data_and_updates"), n, np.arange(n, dtype=np.int64)
        order = np.argsort(targets, kind="stable")
        first = np.concatenate([[0], np.cumsum(counts)])
        y = data
        for level in range(int(counts.max(initial=0))):
            index_map = pad.copy()
            has = np.nonzero(counts > level)[0]
            index_map[has] = offset + order[first[has] + level]
            g = _gather(ctx, node, src, index_map, f"level{level}")
            y = ctx.emit(REDUCTIONS[reduction], [y, g], ctx.tmp(f"{out}/reduced{level}", (n,)),
                         {} if reduction in ("max", "min") else {"act": "NONE"}, node, shape=(n,))
    ctx.reshape(y, data_shape, out, node)


REGISTRY = {"ScatterElements": scatter, "Scatter": scatter, "ScatterND": scatter}
