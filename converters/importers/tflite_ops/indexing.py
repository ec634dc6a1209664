"""LiteRT copy and index ops TFLite Micro lacks, written with constant indices as ops it has:

- TILE (constant multiples): copies concatenated along each tiled axis, as BROADCAST_TO (``broadcast``);
- ONE_HOT (constant depth, on and off values): a GATHER of rows of a constant ``depth x depth`` table
  (``on`` on the diagonal, ``off`` elsewhere) by the indices, then a TRANSPOSE when the new axis is not last;
  indices must lie in ``[0, depth)`` (LiteRT writes an all-``off`` row for others, the GATHER cannot);
- EMBEDDING_LOOKUP(ids, table): GATHER(table, ids) along axis 0;
- DYNAMIC_UPDATE_SLICE (constant start): the operand's pieces around the update, concatenated axis by axis;
- REVERSE_SEQUENCE (constant lengths): per batch entry, a GATHER along the sequence axis with the reversed
  order, concatenated along the batch axis (one GATHER when every length is equal);
- SCATTER_ND (constant indices and shape): a GATHER from the update rows plus one zero row;
- MATRIX_DIAG / MATRIX_SET_DIAG: MULs with a constant identity mask (and ADD for the kept off-diagonal part).
A tensor that is constant in the model is folded instead.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from converters.importers.tflite_ops.context import TFLiteContext


def _fold(ctx: TFLiteContext, op: Any, value: np.ndarray) -> None:
    t = ctx.tensors[ctx.name(op.outputs[0])]
    t.data = np.ascontiguousarray(value, np.float32 if value.dtype.kind == "f" else value.dtype)
    t.shape = tuple(int(d) for d in t.data.shape)


def _ints(ctx: TFLiteContext, op: Any, k: int) -> list[int]:
    return [int(v) for v in np.asarray(ctx.value(op, k)).reshape(-1)]


def tile(ctx: TFLiteContext, op: Any) -> None:
    """TILE(x, multiples)."""
    x, out = ctx.act_in(op, 0), ctx.name(op.outputs[0])
    mult = _ints(ctx, op, 1)
    shape = ctx.shape(x)
    if len(mult) != len(shape) or min(mult, default=1) < 1:
        raise ctx.err(op, f"multiples {mult} do not fit the input {list(shape)} (one positive count per axis)")
    if ctx.tensors[x].is_constant:
        _fold(ctx, op, np.tile(ctx.tensors[x].data, mult))
        return
    cur = x
    for d, m in enumerate(mult):
        if m == 1:
            continue
        new_shape = tuple(s * m if k == d else s for k, s in enumerate(ctx.shape(cur)))
        cur = ctx.emit(op, "CONCATENATION", [cur] * m, ctx.tmp(f"{out}/axis{d}", new_shape), {"axis": d, "act": "NONE"})
    ctx.emit(op, "RESHAPE", [cur], out)


def _scalar(ctx: TFLiteContext, op: Any, k: int) -> float:
    v = np.asarray(ctx.value(op, k)).reshape(-1)
    if v.size != 1:
        raise ctx.err(op, f"input {k} must be a scalar, got {v.size} values")
    return float(v[0])


def one_hot(ctx: TFLiteContext, op: Any) -> None:
    """ONE_HOT(indices, depth, on_value, off_value) with float on/off values (OneHotOptions: axis)."""
    ids, out = ctx.act_in(op, 0), ctx.name(op.outputs[0])
    depth = int(_scalar(ctx, op, 1))
    on, off = _scalar(ctx, op, 2), _scalar(ctx, op, 3)
    if ctx.sg.tensors[op.outputs[0]].type_name != "FLOAT32":
        raise ctx.err(op, f"output is {ctx.sg.tensors[op.outputs[0]].type_name}; only a float one-hot encoding "
                          "can be converted")
    if depth < 1:
        raise ctx.err(op, f"depth {depth} must be positive")
    table = np.where(np.eye(depth, dtype=bool), on, off).astype(np.float32)
    rank = len(ctx.shape(ids)) + 1
    axis = int(ctx.option(op, 0, "i", 0))  # the schema's default (0), not TensorFlow's (-1)
    if not -rank <= axis < rank:
        raise ctx.err(op, f"axis {axis} is outside the {rank}-D output")
    axis %= rank
    idx_data = ctx.tensors[ids].data
    if idx_data is not None:
        i = np.asarray(idx_data).astype(np.int64)
        valid = (i >= 0) & (i < depth)
        enc = np.where(valid[..., None], table[np.clip(i, 0, depth - 1)], np.float32(off))
        _fold(ctx, op, np.moveaxis(enc, -1, axis))
        return
    tname = ctx.add_const(f"{out}/table", table)
    if axis == rank - 1:
        ctx.emit(op, "GATHER", [tname, ids], out, {"axis": 0})
        return
    last = tuple(ctx.shape(ids)) + (depth,)
    g = ctx.emit(op, "GATHER", [tname, ids], ctx.tmp(f"{out}/rows", last), {"axis": 0})
    perm = tuple(range(axis)) + (rank - 1,) + tuple(range(axis, rank - 1))
    ctx.emit(op, "TRANSPOSE", [g], out, {"perm": perm})


def embedding_lookup(ctx: TFLiteContext, op: Any) -> None:
    """EMBEDDING_LOOKUP(ids, table): GATHER(table, ids) along axis 0."""
    ids, table, out = ctx.act_in(op, 0), ctx.act_in(op, 1), ctx.name(op.outputs[0])
    if ctx.sg.tensors[op.inputs[0]].type_name not in ("INT32", "INT64"):
        raise ctx.err(op, f"ids are {ctx.sg.tensors[op.inputs[0]].type_name}; int32 ids are required")
    t, i = ctx.tensors[table], ctx.tensors[ids]
    if t.is_constant and i.is_constant:
        _fold(ctx, op, np.asarray(t.data)[np.asarray(i.data).astype(np.int64)])
        return
    if t.is_constant and t.data.dtype.kind != "f":
        raise ctx.err(op, f"the table is {t.data.dtype}; only float (or quantized) embedding tables can be converted")
    if not t.is_constant and not i.is_constant:
        raise ctx.err(op, "both the ids and the table are computed at run time; one must be a constant")
    idx = ids if not i.is_constant else ctx.add_const(f"{out}/ids", np.asarray(i.data).reshape(-1), np.int32)
    ctx.emit(op, "GATHER", [table, idx], out, {"axis": 0})


def _slice(ctx: TFLiteContext, op: Any, x: str, begin: list[int], end: list[int], base: str) -> str:
    shape = tuple(e - b for b, e in zip(begin, end))
    return ctx.emit(op, "STRIDED_SLICE", [x], ctx.tmp(base, shape),
                    {"begin": tuple(begin), "end": tuple(end), "strides": (1,) * len(begin)})


def dynamic_update_slice(ctx: TFLiteContext, op: Any) -> None:
    """DYNAMIC_UPDATE_SLICE(operand, update, start) with a constant start (clamped as LiteRT does)."""
    x, upd, out = ctx.act_in(op, 0), ctx.act_in(op, 1), ctx.name(op.outputs[0])
    shape, ushape = ctx.shape(x), ctx.shape(upd)
    start = _ints(ctx, op, 2)
    if len(start) != len(shape) or len(ushape) != len(shape) or any(u > s for u, s in zip(ushape, shape)):
        raise ctx.err(op, f"update {list(ushape)} at start {start} does not fit the operand {list(shape)}")
    start = [int(np.clip(b, 0, s - u)) for b, s, u in zip(start, shape, ushape)]
    xt, ut = ctx.tensors[x], ctx.tensors[upd]
    if xt.is_constant and ut.is_constant:
        v = np.array(xt.data, copy=True)
        v[tuple(slice(b, b + u) for b, u in zip(start, ushape))] = ut.data
        _fold(ctx, op, v)
        return
    rank = len(shape)

    def region(d: int) -> str:
        """The result over the update's extent on axes < d and the whole operand on the others."""
        if d == rank:
            return upd
        if ushape[d] == shape[d]:
            return region(d + 1)
        fixed_b = list(start[:d])
        fixed_e = [b + u for b, u in zip(start[:d], ushape[:d])]
        parts = []
        lo, hi = start[d], start[d] + ushape[d]
        rest = list(shape[d + 1:])
        if lo > 0:
            parts.append(_slice(ctx, op, x, fixed_b + [0] + [0] * len(rest), fixed_e + [lo] + rest, f"{out}/before{d}"))
        parts.append(region(d + 1))
        if hi < shape[d]:
            parts.append(_slice(ctx, op, x, fixed_b + [hi] + [0] * len(rest), fixed_e + [shape[d]] + rest,
                                f"{out}/after{d}"))
        rshape = tuple(list(ushape[:d]) + list(shape[d:]))
        dst = out if d == 0 else ctx.tmp(f"{out}/region{d}", rshape)
        return ctx.emit(op, "CONCATENATION", parts, dst, {"axis": d, "act": "NONE"})

    res = region(0)
    if res != out:
        ctx.emit(op, "RESHAPE", [res], out)


def reverse_sequence(ctx: TFLiteContext, op: Any) -> None:
    """REVERSE_SEQUENCE(x, lengths) with constant lengths (ReverseSequenceOptions: seq_dim, batch_dim)."""
    x, out = ctx.act_in(op, 0), ctx.name(op.outputs[0])
    shape = ctx.shape(x)
    rank = len(shape)
    seq, batch = int(ctx.option(op, 0, "i", 0)) % rank, int(ctx.option(op, 1, "i", 0)) % rank
    lengths = _ints(ctx, op, 1)
    if seq == batch or len(lengths) != shape[batch] or any(n < 0 or n > shape[seq] for n in lengths):
        raise ctx.err(op, f"lengths {lengths} (sequence axis {seq}, batch axis {batch}) do not fit the input "
                          f"{list(shape)}")

    def order(n: int) -> np.ndarray:
        return np.concatenate([np.arange(n)[::-1], np.arange(n, shape[seq])]).astype(np.int32)

    if ctx.tensors[x].is_constant:
        v = np.array(ctx.tensors[x].data, copy=True)
        for b, n in enumerate(lengths):
            idx: list[Any] = [slice(None)] * rank
            idx[batch] = b
            v[tuple(idx)] = np.take(v[tuple(idx)], order(n), axis=seq - (1 if seq > batch else 0))
        _fold(ctx, op, v)
        return
    if len(set(lengths)) == 1:
        ctx.emit(op, "GATHER", [x, ctx.add_const(f"{out}/order", order(lengths[0]), np.int32)], out, {"axis": seq})
        return
    part_shape = tuple(1 if d == batch else s for d, s in enumerate(shape))
    parts = []
    for b, n in enumerate(lengths):
        begin, end = [0] * rank, list(shape)
        begin[batch], end[batch] = b, b + 1
        row = _slice(ctx, op, x, begin, end, f"{out}/batch{b}")
        if n > 1:
            row = ctx.emit(op, "GATHER", [row, ctx.add_const(f"{out}/order{b}", order(n), np.int32)],
                           ctx.tmp(f"{out}/reversed{b}", part_shape), {"axis": seq})
        parts.append(row)
    ctx.emit(op, "CONCATENATION", parts, out, {"axis": batch, "act": "NONE"})


def scatter_nd(ctx: TFLiteContext, op: Any) -> None:
    """SCATTER_ND(indices, updates, shape) with constant indices (no repeats) and shape."""
    idx = np.asarray(ctx.value(op, 0)).astype(np.int64)
    upd, out = ctx.act_in(op, 1), ctx.name(op.outputs[0])
    shape = tuple(_ints(ctx, op, 2))
    if idx.ndim < 1 or idx.shape[-1] > len(shape):
        raise ctx.err(op, f"indices of shape {list(idx.shape)} do not index the output shape {list(shape)}")
    k = idx.shape[-1]
    rows = idx.reshape(-1, k)
    outer, inner = shape[:k], shape[k:]
    if np.any(rows < 0) or np.any(rows >= np.array(outer, np.int64)):
        raise ctx.err(op, f"an index lies outside the output shape {list(shape)}")
    flat = np.ravel_multi_index(tuple(rows.T), outer) if k else np.zeros(len(rows), np.int64)
    if len(set(flat.tolist())) != len(flat):
        raise ctx.err(op, "repeated indices (whose updates LiteRT sums) are not supported")
    n, width = len(rows), int(np.prod(inner, dtype=np.int64))
    if ctx.tensors[upd].is_constant:
        v = np.zeros((int(np.prod(outer, dtype=np.int64)), width), np.float32)
        v[flat] = np.asarray(ctx.tensors[upd].data, np.float32).reshape(n, width)
        _fold(ctx, op, v.reshape(shape))
        return
    table = ctx.emit(op, "RESHAPE", [upd], ctx.tmp(f"{out}/rows", (n, width)))
    table = ctx.emit(op, "CONCATENATION", [table, ctx.add_const(f"{out}/zero_row", np.zeros((1, width)))],
                     ctx.tmp(f"{out}/rows_and_zero", (n + 1, width)), {"axis": 0, "act": "NONE"})
    where = np.full(int(np.prod(outer, dtype=np.int64)), n, np.int32)
    where[flat] = np.arange(n)
    g = ctx.emit(op, "GATHER", [table, ctx.add_const(f"{out}/sources", where, np.int32)],
                 ctx.tmp(f"{out}/gathered", (len(where), width)), {"axis": 0})
    ctx.emit(op, "RESHAPE", [g], out)


def _diag_mask(rows: int, cols: int) -> np.ndarray:
    return np.eye(rows, cols, dtype=np.float32)


def _diag_product(ctx: TFLiteContext, op: Any, diag: str, rows: int, cols: int, out: str,
                  dst: Optional[str] = None) -> str:
    """``diag`` (``[..., min(rows, cols)]``) placed on the diagonal of ``[..., rows, cols]`` zeros (a MUL)."""
    dshape = ctx.shape(diag)
    lead = tuple(dshape[:-1])
    col = lead + ((rows, 1) if rows <= cols else (1, cols))
    d = ctx.emit(op, "RESHAPE", [diag], ctx.tmp(f"{out}/diag_column", col))
    return ctx.emit(op, "MUL", [d, ctx.add_const(f"{out}/eye", _diag_mask(rows, cols))],
                    dst or ctx.tmp(f"{out}/on_diagonal", lead + (rows, cols)), {"act": "NONE"})


def matrix_diag(ctx: TFLiteContext, op: Any) -> None:
    """MATRIX_DIAG(d): ``[..., n]`` -> ``[..., n, n]`` with ``d`` on the diagonal."""
    d, out = ctx.act_in(op, 0), ctx.name(op.outputs[0])
    n = ctx.shape(d)[-1]
    if ctx.tensors[d].is_constant:
        v = np.asarray(ctx.tensors[d].data)
        _fold(ctx, op, v[..., None] * np.eye(n, dtype=v.dtype))
        return
    if tuple(ctx.shape(out)[-2:]) != (n, n):
        raise ctx.err(op, f"output {list(ctx.shape(out))} is not [..., {n}, {n}]")
    _diag_product(ctx, op, d, n, n, out, out)


def matrix_set_diag(ctx: TFLiteContext, op: Any) -> None:
    """MATRIX_SET_DIAG(x, d): ``x`` with its main diagonal replaced by ``d``."""
    x, d, out = ctx.act_in(op, 0), ctx.act_in(op, 1), ctx.name(op.outputs[0])
    shape = ctx.shape(x)
    if len(shape) < 2 or tuple(ctx.shape(d)) != tuple(shape[:-2]) + (min(shape[-2:]),):
        raise ctx.err(op, f"diagonal {list(ctx.shape(d))} does not fit the input {list(shape)}")
    rows, cols = shape[-2], shape[-1]
    if ctx.tensors[x].is_constant:
        raise ctx.err(op, "the input is a constant; only a computed input (or diagonal) is supported")
    kept = ctx.emit(op, "MUL", [x, ctx.add_const(f"{out}/off_diagonal", 1.0 - _diag_mask(rows, cols))],
                    ctx.tmp(f"{out}/kept", shape), {"act": "NONE"})
    dt = ctx.tensors[d]
    if dt.is_constant:
        on = ctx.add_const(f"{out}/diagonal", np.asarray(dt.data)[..., None] * _diag_mask(rows, cols)
                           if rows <= cols else np.asarray(dt.data)[..., None, :] * _diag_mask(rows, cols))
    else:
        on = _diag_product(ctx, op, d, rows, cols, out)
    ctx.emit(op, "ADD", [kept, on], out, {"act": "NONE"})


REGISTRY = {"TILE": tile, "ONE_HOT": one_hot, "EMBEDDING_LOOKUP": embedding_lookup,
            "DYNAMIC_UPDATE_SLICE": dynamic_update_slice, "REVERSE_SEQUENCE": reverse_sequence,
            "SCATTER_ND": scatter_nd, "MATRIX_DIAG": matrix_diag, "MATRIX_SET_DIAG": matrix_set_diag}
