"""Shape, layout and reduction TFLite ops: RESHAPE/SQUEEZE/EXPAND_DIMS/CAST, TRANSPOSE, CONCATENATION,
PACK/UNPACK, PAD/PADV2/MIRROR_PAD, STRIDED_SLICE/SLICE/SPLIT/SPLIT_V/REVERSE_V2, GATHER,
MEAN/SUM/REDUCE_MAX/REDUCE_MIN, RESIZE_*, DEPTH_TO_SPACE/SPACE_TO_DEPTH."""
from __future__ import annotations

from typing import Any

import numpy as np

from converters.importers.gather_indices import gather_shape, normalized_indices
from converters.importers.tflite_ops.context import TFLiteContext
from converters.importers.tflite_ops.integer_select import integer_parts, pick_integers


def reshape(ctx: TFLiteContext, op: Any) -> None:
    """RESHAPE, SQUEEZE, EXPAND_DIMS: the output tensor's shape is the new shape."""
    ctx.emit(op, "RESHAPE", [ctx.act_in(op, 0)], ctx.name(op.outputs[0]))


def transpose(ctx: TFLiteContext, op: Any) -> None:
    """TRANSPOSE with a constant perm."""
    perm = tuple(int(v) for v in np.asarray(ctx.value(op, 1)).reshape(-1))
    ctx.emit(op, "TRANSPOSE", [ctx.act_in(op, 0)], ctx.name(op.outputs[0]), {"perm": perm})


def concat(ctx: TFLiteContext, op: Any) -> None:
    """CONCATENATION (constant inputs allowed); of integer indices (token ids) with integer constants: int32."""
    if any(ctx.name(i) in ctx.int_names for i in op.outputs):
        ins = integer_parts(ctx, op)
        if ctx.act(op.options, 1) != "NONE":
            raise ctx.err(op, "a fused activation on integer indices is not supported")
    else:
        ins = [ctx.joined_in(op, k) for k in range(len(op.inputs))]
    rank = len(ctx.shape(ins[0]))
    ctx.emit(op, "CONCATENATION", ins, ctx.name(op.outputs[0]),
             {"axis": int(ctx.option(op, 0, "i", 0)) % rank, "act": ctx.act(op.options, 1)})


def pad(ctx: TFLiteContext, op: Any) -> None:
    """PAD, PADV2 (constant value), MIRROR_PAD (REFLECT/SYMMETRIC)."""
    pads = tuple((int(a), int(b)) for a, b in np.asarray(ctx.value(op, 1)).reshape(-1, 2))
    x, out = ctx.act_in(op, 0), ctx.name(op.outputs[0])
    if op.name == "PADV2" and len(op.inputs) > 2 and op.inputs[2] >= 0:
        value = float(np.asarray(ctx.value(op, 2)).reshape(-1)[0])
        if value != 0.0:
            ctx.emit(op, "PADV2", [x], out, {"pads": pads, "value": value})
            return
    if op.name == "MIRROR_PAD":
        mode = "REFLECT" if int(ctx.option(op, 0, "b", 0)) == 0 else "SYMMETRIC"
        if mode != "REFLECT":
            raise ctx.err(op, "MIRROR_PAD in SYMMETRIC mode is not supported (REFLECT is)")
        ctx.emit(op, "MIRROR_PAD", [x], out, {"pads": pads, "mode": mode})
        return
    ctx.emit(op, "PAD", [x], out, {"pads": pads})


def _slice_out(ctx: TFLiteContext, op: Any, x: str, out: str, begin: list[int], end: list[int],
               strides: list[int], end_mask: int = 0) -> None:
    """STRIDED_SLICE into ``out``, reshaping when the slice drops axes."""
    sliced = [len(range(b, e if not (end_mask >> d) & 1 else (-1 if s < 0 else ctx.shape(x)[d]), s))
              for d, (b, e, s) in enumerate(zip(begin, end, strides))]
    attrs = {"begin": tuple(begin), "end": tuple(end), "strides": tuple(strides), "end_mask": end_mask}
    if tuple(sliced) == tuple(ctx.shape(out)):
        ctx.emit(op, "STRIDED_SLICE", [x], out, attrs)
        return
    mid = ctx.emit(op, "STRIDED_SLICE", [x], ctx.tmp(f"{out}/slice", tuple(sliced)), attrs)
    ctx.emit(op, "RESHAPE", [mid], out)


def strided_slice(ctx: TFLiteContext, op: Any) -> None:
    """STRIDED_SLICE with constant begin/end/strides, begin/end/shrink masks (no ellipsis/new axes)."""
    x, out = ctx.act_in(op, 0), ctx.name(op.outputs[0])
    shape = ctx.shape(x)
    begin = [int(v) for v in np.asarray(ctx.value(op, 1)).reshape(-1)]
    end = [int(v) for v in np.asarray(ctx.value(op, 2)).reshape(-1)]
    strides = [int(v) for v in np.asarray(ctx.value(op, 3)).reshape(-1)]
    bmask, emask = int(ctx.option(op, 0, "i", 0)), int(ctx.option(op, 1, "i", 0))
    if int(ctx.option(op, 2, "i", 0)) or int(ctx.option(op, 3, "i", 0)):
        raise ctx.err(op, "ellipsis and new-axis masks are not supported")
    shrink = int(ctx.option(op, 4, "i", 0))
    nb, ne, end_mask = [], [], 0
    for d, size in enumerate(shape):
        b, e, s = (begin[d], end[d], strides[d]) if d < len(begin) else (0, size, 1)
        if (shrink >> d) & 1:
            b = b + size if b < 0 else b
            e, s = b + 1, 1
        else:
            if (bmask >> d) & 1:
                b = 0 if s > 0 else size - 1
            elif b < 0:
                b += size
            if (emask >> d) & 1:
                e = size
                if s < 0:
                    end_mask |= 1 << d
                    e = 0
            elif e < 0:
                e += size
        b = int(np.clip(b, 0, size - (1 if s < 0 else 0)))
        nb.append(b)
        ne.append(int(np.clip(e, 0, size)) if not (end_mask >> d) & 1 else e)
    _slice_out(ctx, op, x, out, nb, ne, [s if not (shrink >> d) & 1 else 1 for d, s in
                                         enumerate(strides + [1] * (len(shape) - len(strides)))], end_mask)


def slice_(ctx: TFLiteContext, op: Any) -> None:
    """SLICE(begin, size) with constant begin/size (size -1: to the end)."""
    x, out = ctx.act_in(op, 0), ctx.name(op.outputs[0])
    shape = ctx.shape(x)
    begin = [int(v) for v in np.asarray(ctx.value(op, 1)).reshape(-1)]
    size = [int(v) for v in np.asarray(ctx.value(op, 2)).reshape(-1)]
    end = [shape[d] if s < 0 else b + s for d, (b, s) in enumerate(zip(begin, size))]
    _slice_out(ctx, op, x, out, begin, end, [1] * len(shape))


def split(ctx: TFLiteContext, op: Any) -> None:
    """SPLIT(axis, x) and SPLIT_V(x, sizes, axis): one STRIDED_SLICE per output."""
    if op.name == "SPLIT":
        axis, x = int(np.asarray(ctx.value(op, 0)).reshape(-1)[0]), ctx.act_in(op, 1)
    else:
        x, axis = ctx.act_in(op, 0), int(np.asarray(ctx.value(op, 2)).reshape(-1)[0])
    shape = ctx.shape(x)
    axis %= len(shape)
    start = 0
    for o in op.outputs:
        out = ctx.name(o)
        size = ctx.shape(out)[axis]
        begin = [0] * len(shape)
        end = list(shape)
        begin[axis], end[axis] = start, start + size
        _slice_out(ctx, op, x, out, begin, end, [1] * len(shape))
        start += size


def gather(ctx: TFLiteContext, op: Any) -> None:
    """GATHER with constant indices (any rank; negative ones counted from the end, out-of-range ones refused:
    :mod:`converters.importers.gather_indices`; integer data, token ids, as slices and a concatenation:
    :func:`~converters.importers.tflite_ops.integer_select.pick_integers`); from a constant float table with
    run-time int32/int64 indices (an integer model input: token ids, bytes): an embedding lookup
    GATHER(table, indices)."""
    table, indices = (ctx.tensors[ctx.name(op.inputs[k])] for k in (0, 1))
    if table.is_constant and not indices.is_constant:
        if table.data.dtype.kind != "f":
            raise ctx.err(op, f"GATHER from a constant {table.data.dtype} table with run-time indices: only float "
                              "tables (embeddings) can be converted")
        axis = int(ctx.option(op, 0, "i", 0)) % table.data.ndim
        ctx.emit(op, "GATHER", [table.name, indices.name], ctx.name(op.outputs[0]), {"axis": axis})
        return
    x, out = ctx.act_in(op, 0), ctx.name(op.outputs[0])
    shape = ctx.shape(x)
    axis = int(ctx.option(op, 0, "i", 0)) % len(shape)
    try:
        idx = normalized_indices(ctx.value(op, 1), shape[axis], axis)
    except IndexError as exc:
        raise ctx.err(op, str(exc)) from None
    if idx.ndim > 1 and int(ctx.option(op, 1, "i", 0)) != 0:
        raise ctx.err(op, f"batch_dims {int(ctx.option(op, 1, 'i', 0))} with {idx.ndim}-D indices is not supported")
    if x in ctx.int_names:  # token ids at constant positions: slices and a concatenation (int32 throughout)
        ctx.tensors[out].shape = gather_shape(shape, idx.shape, axis)
        pick_integers(ctx, op, x, idx, axis, out)
        return
    if idx.ndim > 1:  # N-D indices: a GATHER of them flattened, then the indices' shape restored
        flat = ctx.emit(op, "GATHER", [x, ctx.add_const(f"{out}/indices", idx.reshape(-1), np.int32)],
                        ctx.tmp(f"{out}/flat", gather_shape(shape, (idx.size,), axis)), {"axis": axis})
        ctx.tensors[out].shape = gather_shape(shape, idx.shape, axis)
        ctx.emit(op, "RESHAPE", [flat], out)
        return
    if idx.ndim == 0:
        keep = list(ctx.shape(x))
        keep[axis] = 1
        mid = ctx.emit(op, "GATHER", [x, ctx.add_const(f"{out}/indices", idx.reshape(1), np.int32)],
                       ctx.tmp(f"{out}/kept", tuple(keep)), {"axis": axis})
        ctx.emit(op, "RESHAPE", [mid], out)
        return
    ctx.emit(op, "GATHER", [x, ctx.add_const(f"{out}/indices", idx, np.int32)], out, {"axis": axis})


def reduce(ctx: TFLiteContext, op: Any) -> None:
    """MEAN, SUM, REDUCE_MAX over constant axes (a 4-D max over height and width is a global max pool)."""
    x = ctx.act_in(op, 0)
    rank = len(ctx.shape(x))
    axes = tuple(sorted({int(v) % rank for v in np.atleast_1d(np.asarray(ctx.value(op, 1)))}))
    keep = bool(ctx.option(op, 0, "b", False))
    out = ctx.name(op.outputs[0])
    shape = ctx.shape(x)
    if rank == 4 and axes == (1, 2) and op.name == "REDUCE_MAX":  # a global max pool
        kind = "MAX_POOL_2D"
        attrs = {"kernel": shape[1:3], "stride": shape[1:3], "pads": (0, 0, 0, 0), "act": "NONE"}
        if keep:
            ctx.emit(op, kind, [x], out, attrs)
        else:
            pooled = ctx.emit(op, kind, [x], ctx.tmp(f"{out}/pooled", (shape[0], 1, 1, shape[3])), attrs)
            ctx.emit(op, "RESHAPE", [pooled], out)
        return
    ctx.emit(op, op.name, [x], out, {"axes": axes, "keep_dims": keep})


def resize(ctx: TFLiteContext, op: Any) -> None:
    """RESIZE_BILINEAR / RESIZE_NEAREST_NEIGHBOR (the output tensor gives the size)."""
    if op.name == "RESIZE_BILINEAR":
        align, half = bool(ctx.option(op, 2, "b", False)), bool(ctx.option(op, 3, "b", False))
    else:
        align, half = bool(ctx.option(op, 0, "b", False)), bool(ctx.option(op, 1, "b", False))
    ctx.emit(op, op.name, [ctx.act_in(op, 0)], ctx.name(op.outputs[0]),
             {"align_corners": align, "half_pixel_centers": half})



def depth_space(ctx: TFLiteContext, op: Any) -> None:
    """DEPTH_TO_SPACE / SPACE_TO_DEPTH (block_size option)."""
    ctx.emit(op, op.name, [ctx.act_in(op, 0)], ctx.name(op.outputs[0]),
             {"block_size": int(ctx.option(op, 0, "i", 2))})


def pack(ctx: TFLiteContext, op: Any) -> None:
    """PACK: each input gains the new axis (RESHAPE), then CONCATENATION along it."""
    out = ctx.name(op.outputs[0])
    rank = len(ctx.shape(out))
    axis = int(ctx.option(op, 1, "i", 0)) % rank
    parts = []
    for i in op.inputs:
        name = ctx.name(i)
        shape = list(ctx.shape(name))
        shape.insert(axis, 1)
        if ctx.tensors[name].is_constant:
            data = ctx.tensors[name].data
            parts.append(ctx.add_const(f"{out}/part", data.reshape(shape),
                                       np.int32 if data.dtype.kind in "iu" else np.float32))  # ids: int32
        else:
            parts.append(ctx.emit(op, "RESHAPE", [name], ctx.tmp(f"{out}/part", tuple(shape))))
    ctx.emit(op, "CONCATENATION", parts, out, {"axis": axis, "act": "NONE"})


def unpack(ctx: TFLiteContext, op: Any) -> None:
    """UNPACK: one STRIDED_SLICE (and RESHAPE dropping the axis) per output."""
    x = ctx.act_in(op, 0)
    shape = ctx.shape(x)
    axis = int(ctx.option(op, 1, "i", 0)) % len(shape)
    for k, o in enumerate(op.outputs):
        begin, end = [0] * len(shape), list(shape)
        begin[axis], end[axis] = k, k + 1
        _slice_out(ctx, op, x, ctx.name(o), begin, end, [1] * len(shape))


def reverse(ctx: TFLiteContext, op: Any) -> None:
    """REVERSE_V2 over constant axes: a STRIDED_SLICE with stride -1 on them."""
    x, out = ctx.act_in(op, 0), ctx.name(op.outputs[0])
    shape = ctx.shape(x)
    axes = {int(v) % len(shape) for v in np.atleast_1d(np.asarray(ctx.value(op, 1)))}
    begin = [s - 1 if d in axes else 0 for d, s in enumerate(shape)]
    end = [0 if d in axes else s for d, s in enumerate(shape)]
    strides = [-1 if d in axes else 1 for d in range(len(shape))]
    ctx.emit(op, "STRIDED_SLICE", [x], out, {"begin": tuple(begin), "end": tuple(end), "strides": tuple(strides),
                                            "end_mask": sum(1 << d for d in axes)})


def reduce_min(ctx: TFLiteContext, op: Any) -> None:
    """REDUCE_MIN as ``-max(-x)``."""
    x, out = ctx.act_in(op, 0), ctx.name(op.outputs[0])
    rank = len(ctx.shape(x))
    axes = tuple(sorted({int(v) % rank for v in np.atleast_1d(np.asarray(ctx.value(op, 1)))}))
    neg = ctx.emit(op, "MUL", [x, ctx.add_const(f"{out}/minus_one", np.array([-1.0]))],
                   ctx.tmp(f"{out}/negated", ctx.shape(x)), {"act": "NONE"})
    m = ctx.emit(op, "REDUCE_MAX", [neg], ctx.tmp(f"{out}/max", ctx.shape(out)),
                 {"axes": axes, "keep_dims": bool(ctx.option(op, 0, "b", False))})
    ctx.emit(op, "MUL", [m, ctx.add_const(f"{out}/minus_one", np.array([-1.0]))], out, {"act": "NONE"})


def cast(ctx: TFLiteContext, op: Any) -> None:
    """CAST between float types, or between integer types of token ids (int32 in the IR): the output is the input."""
    ctx.emit(op, "RESHAPE", [ctx.act_in(op, 0)], ctx.name(op.outputs[0]))


REGISTRY = {
    "RESHAPE": reshape, "SQUEEZE": reshape, "EXPAND_DIMS": reshape, "TRANSPOSE": transpose,
    "CONCATENATION": concat, "PAD": pad, "PADV2": pad, "MIRROR_PAD": pad, "STRIDED_SLICE": strided_slice,
    "SLICE": slice_, "SPLIT": split, "SPLIT_V": split, "GATHER": gather, "MEAN": reduce, "SUM": reduce,
    "REDUCE_MAX": reduce, "RESIZE_BILINEAR": resize, "RESIZE_NEAREST_NEIGHBOR": resize,
    "DEPTH_TO_SPACE": depth_space, "SPACE_TO_DEPTH": depth_space, "PACK": pack, "UNPACK": unpack,
    "REVERSE_V2": reverse, "REDUCE_MIN": reduce_min, "CAST": cast,
}
