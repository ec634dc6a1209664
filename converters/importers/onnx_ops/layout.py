"""Shape and layout ops: Reshape/Flatten/Squeeze/Unsqueeze, Transpose, Concat, Split, Slice, Gather,
Pad, Expand, and the pass-through ops (Identity, Dropout, Cast to float; Cast of int32 indices to float is a
CAST)."""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from converters.importers.gather_indices import gather_shape, normalized_indices
from converters.importers.onnx_ops import runtime_gather
from converters.importers.onnx_ops.context import ImportContext
from converters.ir import TO_NCHW, TO_NHWC


def passthrough(ctx: ImportContext, node: Any, a: dict) -> None:
    """Identity, Dropout (inference) and Cast: the output is the input."""
    if node.op_type == "Cast":
        from onnx import TensorProto

        cast_to(ctx, node, int(a.get("to", TensorProto.FLOAT)))
        return
    ctx.act(node, node.input[0])  # materialises deferred values and refuses unknown inputs
    ctx.alias[node.output[0]] = ctx.name(node.input[0])


def cast_to(ctx: ImportContext, node: Any, to: int) -> None:
    """A cast of input 0 to ONNX element type ``to``: the output is the input (a float activation stays float,
    integer indices stay int32), or a CAST of int32 indices to a float activation; a float activation cast to
    anything else is refused in one line."""
    from onnx import TensorProto

    src = node.input[0]
    integer = (TensorProto.INT8, TensorProto.UINT8, TensorProto.INT16, TensorProto.UINT16, TensorProto.INT32,
               TensorProto.UINT32, TensorProto.INT64)
    if to in integer and ctx.is_int(src):  # indices stay int32 whatever integer type the model casts them to
        ctx.alias[node.output[0]] = ctx.name(src)
        return
    if to not in (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16):
        raise ctx.err(node, f"{node.op_type} of an activation to {TensorProto.DataType.Name(to)} is not "
                            "supported; only float activations can be converted")
    if not ctx.is_const(src) and ctx.is_int(src):  # int32 positions become float values: a real CAST
        ctx.emit("CAST", [ctx.act(node, src)], node.output[0], {}, node, shape=ctx.ir_shape(ctx.act(node, src)))
        return
    ctx.act(node, src)  # materialises deferred values and refuses unknown inputs
    ctx.alias[node.output[0]] = ctx.name(src)


def reshape(ctx: ImportContext, node: Any, a: dict) -> None:
    """Reshape, Flatten, Squeeze, Unsqueeze: a RESHAPE in ONNX element order."""
    x = ctx.act(node, node.input[0])
    ctx.reshape(x, ctx.src_shape(node, node.output[0]), node.output[0], node)


def transpose(ctx: ImportContext, node: Any, a: dict) -> None:
    """Transpose: the ONNX perm composed with the NHWC<->NCHW views of its input and output."""
    x = ctx.act(node, node.input[0])
    rank = len(ctx.src_shape(node, node.input[0]))
    perm = tuple(int(p) for p in a.get("perm", list(range(rank))[::-1]))
    into_src = TO_NCHW if rank == 4 else tuple(range(rank))
    out_to_ir = TO_NHWC if rank == 4 else tuple(range(rank))
    total = tuple(into_src[p] for p in perm)
    total = tuple(total[q] for q in out_to_ir)
    ctx.transpose(x, total, node.output[0], node)


def concat(ctx: ImportContext, node: Any, a: dict) -> None:
    """Concat on any axis (constant inputs allowed) -> CONCATENATION."""
    out = node.output[0]
    rank = len(ctx.src_shape(node, out))
    axis = ctx.ir_axis(rank, int(a["axis"]))
    ins = [i for i in node.input if i and int(np.prod(ctx.src_shape(node, i))) > 0]
    if any(not ctx.is_const(i) and ctx.is_int(i) for i in ins):
        _concat_indices(ctx, node, ins, rank, axis)
        return
    parts = []
    for i in ins:
        if ctx.is_const(i):
            v = np.asarray(ctx.const(node, i), np.float32)
            v = v.transpose(TO_NHWC) if rank == 4 else v
            parts.append(ctx.add_const(f"{out}/const", v))
        else:
            parts.append(ctx.act(node, i))
    if len(parts) == 1:
        ctx.alias[out] = parts[0]
        return
    ctx.emit("CONCATENATION", parts, out, {"axis": axis, "act": "NONE"}, node)


def _concat_indices(ctx: ImportContext, node: Any, ins: list[str], rank: int, axis: int) -> None:
    """Concat of integer index tensors (token ids) and integer constants (a BOS token) -> an int32
    CONCATENATION; a float operand, or a constant outside int32, is refused in one line."""
    out = node.output[0]
    parts = []
    for i in ins:
        if not ctx.is_const(i):
            if not ctx.is_int(i):
                raise ctx.err(node, f"Concat of integer indices with the float tensor '{i}' is not supported; "
                                    "integer tensors (token ids) can only be joined with integer ones")
            parts.append(ctx.act(node, i))
            continue
        v = np.asarray(ctx.const(node, i))
        if v.dtype.kind not in "iu":
            raise ctx.err(node, f"Concat of integer indices with the {v.dtype} constant '{i}' is not supported; "
                                "integer tensors (token ids) can only be joined with integer constants")
        if v.size and (v.min() < np.iinfo(np.int32).min or v.max() > np.iinfo(np.int32).max):
            raise ctx.err(node, f"constant '{i}' holds {int(v.max() if v.max() > 0 else v.min())}, outside int32; "
                                "indices are int32 in the converted model")
        v = v.transpose(TO_NHWC) if rank == 4 else v
        parts.append(ctx.add_const(f"{out}/const", v.astype(np.int32), np.int32))
    if len(parts) == 1:
        ctx.alias[out] = parts[0]
        return
    ctx.emit("CONCATENATION", parts, out, {"axis": axis, "act": "NONE"}, node)


def _slice(ctx: ImportContext, node: Any, x: str, out: str, axis_ranges: dict[int, tuple[int, int, int]]) -> None:
    """STRIDED_SLICE of IR tensor ``x``: ``axis_ranges`` maps IR axis -> (begin, end, step), normalised."""
    shape = ctx.ir_shape(x)
    begin, end, strides, end_mask = [], [], [], 0
    for d, size in enumerate(shape):
        b, e, s = axis_ranges.get(d, (0, size, 1))
        begin.append(b)
        strides.append(s)
        if s < 0 and e < 0:
            end_mask |= 1 << d
            e = 0
        end.append(e)
    ctx.emit("STRIDED_SLICE", [x], out, {"begin": tuple(begin), "end": tuple(end), "strides": tuple(strides),
                                         "end_mask": end_mask}, node)


def _norm_range(start: int, stop: int, step: int, size: int) -> tuple[int, int, int]:
    """ONNX Slice bounds clamped like the spec: (begin, end, step), end -1 meaning 'through index 0'."""
    if step == 0:
        raise ValueError("step 0")
    if start < 0:
        start += size
    if stop < 0:
        stop += size
    if step > 0:
        return (int(np.clip(start, 0, size)), int(np.clip(stop, 0, size)), step)
    return (int(np.clip(start, 0, size - 1)), int(np.clip(stop, -1, size - 1)), step)


def slice_(ctx: ImportContext, node: Any, a: dict) -> None:
    """Slice (constant starts/ends/axes/steps, any step) -> STRIDED_SLICE."""
    x = ctx.act(node, node.input[0])
    shape = ctx.src_shape(node, node.input[0])
    rank = len(shape)
    if len(node.input) > 1:
        starts = [int(v) for v in np.asarray(ctx.const(node, node.input[1])).reshape(-1)]
        ends = [int(v) for v in np.asarray(ctx.const(node, node.input[2])).reshape(-1)]
        axes = ([int(v) for v in np.asarray(ctx.const(node, node.input[3])).reshape(-1)]
                if len(node.input) > 3 and node.input[3] else list(range(len(starts))))
        steps = ([int(v) for v in np.asarray(ctx.const(node, node.input[4])).reshape(-1)]
                 if len(node.input) > 4 and node.input[4] else [1] * len(starts))
    else:  # opset < 10
        starts, ends = list(a["starts"]), list(a["ends"])
        axes, steps = list(a.get("axes", range(len(starts)))), [1] * len(starts)
    ranges = {}
    for s, e, ax, st in zip(starts, ends, axes, steps):
        ax = int(ax) % rank
        if st == 0:
            raise ctx.err(node, "Slice with step 0")
        ranges[ctx.ir_axis(rank, ax)] = _norm_range(s, e, st, shape[ax])
    _slice(ctx, node, x, node.output[0], ranges)


def split(ctx: ImportContext, node: Any, a: dict) -> None:
    """Split -> one STRIDED_SLICE per output."""
    x = ctx.act(node, node.input[0])
    shape = ctx.src_shape(node, node.input[0])
    rank = len(shape)
    axis = int(a.get("axis", 0)) % rank
    sizes = [ctx.src_shape(node, o)[axis] for o in node.output]
    start = 0
    for o, size in zip(node.output, sizes):
        if o:
            _slice(ctx, node, x, o, {ctx.ir_axis(rank, axis): (start, start + size, 1)})
        start += size


def lookup(ctx: ImportContext, node: Any, a: dict) -> None:
    """Gather from a constant table with index activations (an embedding) -> GATHER(table, indices).

    The indices are int32 in the IR: an integer model input, what reshapes, slices, constant-position gathers
    and concatenations with integer constants select from one, or an ArgMax result (:meth:`ImportContext.is_int`);
    the table keeps its ONNX layout (a 4-D output is moved to NHWC after the lookup).
    """
    if not ctx.is_int(node.input[1]):
        raise ctx.err(node, "Gather indices computed at run time must come from an integer model input "
                            "(token ids, bytes, indices)")
    idx = ctx.act(node, node.input[1])
    table = np.asarray(ctx.const(node, node.input[0]))
    if table.dtype.kind != "f":
        raise ctx.err(node, f"Gather from a constant {table.dtype} table with run-time indices: only float tables "
                            "(embeddings) can be converted")
    if len(ctx.ir_shape(idx)) == 4:
        raise ctx.err(node, "Gather with 4-D run-time indices is not supported")
    axis = int(a.get("axis", 0)) % table.ndim
    idx_shape = ctx.src_shape(node, node.input[1])
    out = node.output[0]
    out_shape = tuple(table.shape[:axis]) + tuple(idx_shape) + tuple(table.shape[axis + 1:])
    name = ctx.add_const(f"{node.input[0]}/table", table.astype(np.float32))
    if len(out_shape) == 4:
        mid = ctx.tmp(f"{out}/src", out_shape)
        ctx.emit("GATHER", [name, idx], mid, {"axis": axis}, node, shape=out_shape)
        ctx.transpose(mid, TO_NHWC, out, node)
        return
    ctx.emit("GATHER", [name, idx], out, {"axis": axis}, node, shape=out_shape)


def gather(ctx: ImportContext, node: Any, a: dict) -> None:
    """Gather with constant indices -> STRIDED_SLICE (one index or a step range) or GATHER (N-D indices: a
    GATHER of them flattened, then a reshape; index checks shared with the TFLite importer,
    :mod:`converters.importers.gather_indices`); from a constant table with index activations -> an embedding
    lookup (:func:`lookup`); from run-time data by run-time indices (TopK/ArgMax results) -> GATHER
    (:func:`converters.importers.onnx_ops.runtime_gather.gather`)."""
    if ctx.is_const(node.input[0]) and not ctx.is_const(node.input[1]):
        lookup(ctx, node, a)
        return
    if runtime_gather.runtime_indices(ctx, node):
        runtime_gather.gather(ctx, node, int(a.get("axis", 0)))
        return
    x = ctx.act(node, node.input[0])
    shape = ctx.src_shape(node, node.input[0])
    rank = len(shape)
    axis = int(a.get("axis", 0)) % rank
    try:
        idx = normalized_indices(ctx.const(node, node.input[1]), shape[axis], axis).astype(np.int64)
    except IndexError as exc:
        raise ctx.err(node, f"Gather {exc}") from None
    out = node.output[0]
    ir_ax = ctx.ir_axis(rank, axis)
    flat = idx.reshape(-1)
    if idx.ndim == 0 or (idx.ndim == 1 and flat.size == 1):
        mid_shape = list(ctx.ir_shape(x))
        mid_shape[ir_ax] = 1
        mid = ctx.tmp(f"{out}/picked", tuple(mid_shape))
        _slice(ctx, node, x, mid, {ir_ax: (int(flat[0]), int(flat[0]) + 1, 1)})
        if idx.ndim == 0:  # the axis disappears
            ctx.reshape(mid, ctx.src_shape(node, out), out, node)
        else:
            ctx.transpose(mid, tuple(range(len(mid_shape))), out, node)
        return
    pick = _pick_integers if ctx.is_int(node.input[0]) else _pick
    if idx.ndim > 1:  # N-D indices: a GATHER of them flattened, then reshaped to the ONNX output shape
        mid_shape = list(ctx.ir_shape(x))
        mid_shape[ir_ax] = int(flat.size)
        mid = pick(ctx, node, x, flat, ir_ax, ctx.tmp(f"{out}/flat", tuple(mid_shape)), tuple(mid_shape))
        ctx.reshape(mid, gather_shape(tuple(shape), idx.shape, axis), out, node)
        return
    steps = np.diff(flat)
    if flat.size > 1 and np.all(steps == steps[0]) and steps[0] != 0:
        step = int(steps[0])
        end = int(flat[-1]) + (1 if step > 0 else -1)
        _slice(ctx, node, x, out, {ir_ax: (int(flat[0]), end, step)})
        return
    pick(ctx, node, x, flat, ir_ax, out, None)


def _pick(ctx: ImportContext, node: Any, x: str, flat: np.ndarray, ir_ax: int, out: str,
          shape: Optional[tuple[int, ...]]) -> str:
    """GATHER of ``x`` at the constant positions ``flat`` (normalised) along IR axis ``ir_ax`` into ``out``."""
    return ctx.emit("GATHER", [x, ctx.add_const(f"{out}/indices", flat.astype(np.int32), np.int32)], out,
                    {"axis": ir_ax}, node, shape=shape)


def _pick_integers(ctx: ImportContext, node: Any, x: str, flat: np.ndarray, ir_ax: int, out: str,
                   shape: Optional[tuple[int, ...]]) -> str:
    """Integer values (token ids) of ``x`` at the constant positions ``flat`` along IR axis ``ir_ax``: one
    STRIDED_SLICE per run of consecutive positions, joined by a CONCATENATION (TFLite Micro's GATHER takes no
    int32 data; its STRIDED_SLICE and CONCATENATION do)."""
    runs: list[list[int]] = []
    for p in (int(v) for v in flat):
        if runs and p == runs[-1][-1] + 1:
            runs[-1].append(p)
        else:
            runs.append([p])
    parts = []
    for k, run in enumerate(runs):
        part_shape = list(ctx.ir_shape(x))
        part_shape[ir_ax] = len(run)
        part = ctx.tmp(f"{out}/run{k}", tuple(part_shape))
        _slice(ctx, node, x, part, {ir_ax: (run[0], run[-1] + 1, 1)})
        parts.append(part)
    if len(parts) == 1:
        return ctx.transpose(parts[0], tuple(range(len(ctx.ir_shape(parts[0])))), out, node)
    return ctx.emit("CONCATENATION", parts, out, {"axis": ir_ax, "act": "NONE"}, node, shape=shape)


def pad(ctx: ImportContext, node: Any, a: dict) -> None:
    """Pad (constant, reflect, edge) -> PAD / PADV2 / MIRROR_PAD / GATHER per axis; negative pads crop."""
    x = ctx.act(node, node.input[0])
    shape = ctx.src_shape(node, node.input[0])
    rank = len(shape)
    mode = a.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if len(node.input) > 1 and node.input[1]:
        pads = [int(v) for v in np.asarray(ctx.const(node, node.input[1])).reshape(-1)]
        value = (float(np.asarray(ctx.const(node, node.input[2])).reshape(-1)[0])
                 if len(node.input) > 2 and node.input[2] else 0.0)
    else:  # opset < 11
        pads, value = [int(v) for v in a["pads"]], float(a.get("value", 0.0))
    if len(node.input) > 3 and node.input[3]:
        axes = [int(v) % rank for v in np.asarray(ctx.const(node, node.input[3])).reshape(-1)]
        full = [0] * (2 * rank)
        for k, ax in enumerate(axes):
            full[ax], full[ax + rank] = pads[k], pads[k + len(axes)]
        pads = full
    pairs = [(pads[i], pads[i + rank]) for i in range(rank)]
    if rank == 4:
        pairs = [pairs[p] for p in TO_NHWC]
    out = node.output[0]
    if any(p < 0 for pr in pairs for p in pr):  # crop first, then pad the rest
        ir = ctx.ir_shape(x)
        crop = {d: (max(-p0, 0), ir[d] - max(-p1, 0), 1) for d, (p0, p1) in enumerate(pairs)}
        cshape = tuple(e - b for b, e, _ in crop.values())
        mid = ctx.tmp(f"{out}/cropped", cshape)
        _slice(ctx, node, x, mid, crop)
        x, pairs = mid, [(max(p0, 0), max(p1, 0)) for p0, p1 in pairs]
        if not any(p for pr in pairs for p in pr):
            ctx.transpose(x, tuple(range(len(cshape))), out, node)
            return
    if mode == "constant":
        if value == 0.0:
            ctx.emit("PAD", [x], out, {"pads": tuple(pairs)}, node)
        else:
            ctx.emit("PADV2", [x], out, {"pads": tuple(pairs), "value": value}, node)
    elif mode == "reflect":
        ctx.emit("MIRROR_PAD", [x], out, {"pads": tuple(pairs), "mode": "REFLECT"}, node)
    elif mode == "edge":
        _edge_pad(ctx, node, x, out, pairs)
    else:
        raise ctx.err(node, f"Pad mode '{mode}' is not supported (constant, reflect and edge are)")


def _edge_pad(ctx: ImportContext, node: Any, x: str, out: str, pairs: list[tuple[int, int]]) -> None:
    """Pad mode 'edge' (TFLite has no such PAD): one GATHER per padded IR axis, whose indices repeat the
    first and last index (``clip(arange(-before, size + after), 0, size - 1)``)."""
    axes = [d for d, (p0, p1) in enumerate(pairs) if p0 or p1]
    cur, shape = x, list(ctx.ir_shape(x))
    for k, d in enumerate(axes):
        p0, p1 = pairs[d]
        idx = np.clip(np.arange(-p0, shape[d] + p1), 0, shape[d] - 1).astype(np.int32)
        shape[d] += p0 + p1
        dst = out if k == len(axes) - 1 else ctx.tmp(f"{out}/edge{d}", tuple(shape))
        cur = ctx.emit("GATHER", [cur, ctx.add_const(f"{out}/edge_indices{d}", idx, np.int32)], dst, {"axis": d}, node,
                       shape=tuple(shape))


def expand(ctx: ImportContext, node: Any, a: dict) -> None:
    """Expand of an activation: broadcast by concatenating copies along each expanded axis."""
    out = node.output[0]
    target = ctx.src_shape(node, out)
    rank = len(target)
    x = ctx.lift(node, ctx.act(node, node.input[0]), ctx.src_shape(node, node.input[0]), rank)
    cur = x
    for d in range(rank):
        ir_d = ctx.ir_axis(rank, d)
        have = ctx.ir_shape(cur)
        want = target[d]
        if have[ir_d] == want:
            continue
        if have[ir_d] != 1:
            raise ctx.err(node, f"cannot expand size {have[ir_d]} to {want}")
        new_shape = list(have)
        new_shape[ir_d] = want
        cur = ctx.emit("CONCATENATION", [cur] * want, ctx.tmp(f"{out}/expand{d}", tuple(new_shape)),
                       {"axis": ir_d, "act": "NONE"}, node, shape=tuple(new_shape))
    ctx.transpose(cur, tuple(range(rank)), out, node)


def tile(ctx: ImportContext, node: Any, a: dict) -> None:
    """Tile with constant repeats -> CONCATENATION of copies per repeated axis."""
    x = ctx.act(node, node.input[0])
    reps = [int(v) for v in np.asarray(ctx.const(node, node.input[1])).reshape(-1)]
    rank = len(reps)
    cur = x
    for d, r in enumerate(reps):
        if r == 1:
            continue
        ir_d = ctx.ir_axis(rank, d)
        shape = list(ctx.ir_shape(cur))
        shape[ir_d] *= r
        cur = ctx.emit("CONCATENATION", [cur] * r, ctx.tmp(f"{node.output[0]}/tile{d}", tuple(shape)),
                       {"axis": ir_d, "act": "NONE"}, node, shape=tuple(shape))
    ctx.transpose(cur, tuple(range(rank)), node.output[0], node)




def depth_space(ctx: ImportContext, node: Any, a: dict) -> None:
    """DepthToSpace (DCR directly; CRD after a channel GATHER into DCR order) and SpaceToDepth."""
    x = ctx.act(node, node.input[0])
    bs = int(a["blocksize"])
    if len(ctx.ir_shape(x)) != 4:
        raise ctx.err(node, "only 4-D inputs are supported")
    out = node.output[0]
    if node.op_type == "SpaceToDepth":
        ctx.emit("SPACE_TO_DEPTH", [x], out, {"block_size": bs}, node)
        return
    mode = a.get("mode", b"DCR")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode == "CRD":
        c = ctx.ir_shape(x)[3]
        per = c // (bs * bs)
        order = np.array([(k % per) * bs * bs + k // per for k in range(c)], np.int32)
        x = ctx.emit("GATHER", [x, ctx.add_const(f"{out}/dcr_order", order, np.int32)],
                     ctx.tmp(f"{out}/dcr", ctx.ir_shape(x)), {"axis": 3}, node, shape=ctx.ir_shape(x))
    ctx.emit("DEPTH_TO_SPACE", [x], out, {"block_size": bs}, node)


REGISTRY = {
    "Identity": passthrough, "Dropout": passthrough, "Cast": passthrough,
    "Reshape": reshape, "Flatten": reshape, "Squeeze": reshape, "Unsqueeze": reshape,
    "Transpose": transpose, "Concat": concat, "Slice": slice_, "Split": split, "Gather": gather, "Pad": pad,
    "Expand": expand, "Tile": tile, "DepthToSpace": depth_space, "SpaceToDepth": depth_space,
}
