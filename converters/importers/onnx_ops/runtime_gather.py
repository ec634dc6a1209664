"""Gather / GatherND / GatherElements whose indices are computed at run time (TopK or ArgMax/ArgMin results, an
integer model input, and what reshapes, slices, expands, tiles and casts select from them) on run-time data or a
constant table.

Run-time int32 data (TopK/ArgMax positions, picked by other positions: isbnx's ``Gather(Flatten(topk_idx),
box * 300 + cls_pos)``) is gathered as int32 by a GATHER and stays an unquantized int32 tensor
(:func:`converters.ir.gathers_integers`); GatherElements of it becomes one GATHER on the flattened data by flat
positions (``index * stride + constant offsets``, int32 MUL/ADD); GatherND of it is refused (TFLite Micro and micro
have no int32 GATHER_ND). LiteRT runs int32 GATHER; TFLite Micro does not, so its profiles refuse it.

The gather only moves values: int8 data keeps its scale and zero point. Lowering uses ops TFLite Micro has:
GATHER (Gather, any axis), GATHER_ND (GatherND with batch_dims 0; GatherElements, whose int32 index tuples are the
run-time index on the gathered axis concatenated with constant coordinate grids on the other axes), CONCATENATION
and RESHAPE. Run-time indices must be non-negative (TopK and ArgMax never produce negative ones; ONNX's wrap of
negative indices is not written). A TopK/ArgMax result over more positions than the gathered axis has is refused at
import; any other out-of-range index makes LiteRT fail and micro refuse the run in one line (never a read out of
bounds; GATHER_ND checks the flat position of a tuple only, as TFLite Micro does, so an index past its axis that
stays inside the data reads another element there).
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from converters.importers.onnx_ops.context import ImportContext
from converters.importers.onnx_ops.int_arith import value_range
from converters.ir import INDEX_KINDS, INDEX_SELECT_KINDS, INT_GATHER_KINDS, TO_NCHW, perm_keeps_order

#: Deepest index tuple tflite-micro's GATHER_ND takes.
MAX_INDEX_DEPTH = 5


def runtime_indices(ctx: ImportContext, node: Any) -> bool:
    """True when ``node``'s indices (input 1) are int32 values computed at run time (:meth:`ImportContext.is_int`);
    False for constant indices; one refusal line for any other run-time indices (float values, an unknown
    source)."""
    if ctx.is_const(node.input[1]):
        return False
    if not ctx.is_int(node.input[1]):
        ctx.act(node, node.input[1])  # an unsupported producer is refused here, naming the tensor
        raise ctx.err(node, f"{node.op_type} indices '{node.input[1]}' computed at run time must be integer "
                            "positions (an integer model input, a TopK indices output or an ArgMax/ArgMin result, "
                            "through Reshape/Unsqueeze/Squeeze/Flatten/Slice/Expand/Tile/Concat/Cast and integer "
                            "Add/Sub/Mul/Div/Mod); float indices are not supported")
    return True


def index_span(ctx: ImportContext, name: str) -> Optional[int]:
    """How many positions the values of int32 IR tensor ``name`` range over when they come from an ARG_MAX/ARG_MIN
    or TOPK_V2 (the size of its axis) through selections (integer constants joined in count too); None when
    unknown (an integer model input)."""
    op = ctx.producer(name)
    if op is None:
        return None
    if op.kind in INDEX_KINDS:
        shape = ctx.ir_shape(op.inputs[0])
        return int(shape[int(op.attrs.get("axis", -1)) % len(shape)])
    if op.kind == "TOPK_V2":
        return int(ctx.ir_shape(op.inputs[0])[-1])
    if op.kind in INT_GATHER_KINDS:  # positions picked from positions: the data's span
        return None if ctx.tensors[op.inputs[0]].is_constant else index_span(ctx, op.inputs[0])
    if op.kind not in INDEX_SELECT_KINDS:
        return None
    spans = []
    for i in (op.inputs if op.kind == "CONCATENATION" else op.inputs[:1]):
        t = ctx.tensors.get(i)
        if t is not None and t.is_constant:
            spans.append(int(np.max(t.data)) + 1 if t.data.size else 0)
        else:
            s = index_span(ctx, i)
            if s is None:
                return None
            spans.append(s)
    return max(spans) if spans else None


def _check_span(ctx: ImportContext, node: Any, ind: str, size: int, what: str) -> None:
    """Refuse indices from a TopK/ArgMax over more positions than the ``size`` positions of the gathered axis, and
    integer arithmetic on such positions whose range (:func:`value_range`) leaves ``0 .. size - 1``."""
    span = index_span(ctx, ind)
    if span is not None and span > size:
        raise ctx.err(node, f"indices '{node.input[1]}' are positions among {span} (a TopK/ArgMax result) but {what} "
                            f"has {size}; positions {size}..{span - 1} have nothing to gather")
    bounds = value_range(ctx, ind) if span is None else None  # integer arithmetic on positions
    if bounds is not None and (bounds[0] < 0 or bounds[1] >= size):
        raise ctx.err(node, f"indices '{node.input[1]}' (integer arithmetic on TopK/ArgMax positions) range over "
                            f"{bounds[0]}..{bounds[1]} but {what} has positions 0..{size - 1}; the values outside "
                            "have nothing to gather")


def src_indices(ctx: ImportContext, node: Any) -> str:
    """The run-time indices (input 1) as an IR int32 tensor in ONNX layout; refuses 4-D indices whose NHWC -> NCHW
    move would need a TRANSPOSE of int32 values."""
    ind = ctx.act(node, node.input[1])
    shape = ctx.ir_shape(ind)
    if len(shape) == 4 and not perm_keeps_order(shape, TO_NCHW):
        raise ctx.err(node, f"4-D run-time indices of shape {list(ctx.src_shape(node, node.input[1]))} would need a "
                            "transpose of int32 values; reshape the indices to another rank before the gather")
    return ctx.to_src(ind)


def _data(ctx: ImportContext, node: Any, integer: bool = False) -> str:
    """Input 0 in ONNX layout: the run-time activation, or a constant float table. Run-time int32 data (positions)
    only where ``integer`` (the caller gathers it with a GATHER); a constant integer table is refused."""
    if ctx.is_const(node.input[0]):
        table = np.asarray(ctx.const(node, node.input[0]))
        if table.dtype.kind != "f":
            raise ctx.err(node, f"{node.op_type} from a constant {table.dtype} table with run-time indices: only "
                                "float tables can be converted")
        return ctx.add_const(f"{node.input[0]}/table", table.astype(np.float32))
    if ctx.is_int(node.input[0]) and not integer:
        raise ctx.err(node, f"{node.op_type} of integer values ('{node.input[0]}') by run-time indices is not "
                            "supported; int32 positions can be picked by Gather and GatherElements only (TFLite "
                            "Micro and micro have no int32 GATHER_ND)")
    return ctx.to_src(ctx.act(node, node.input[0]))


def emit_gather(ctx: ImportContext, node: Any, kind: str, inputs: list[str], attrs: dict,
            out_shape: tuple[int, ...]) -> None:
    """Emit ``kind`` with the ONNX-layout output ``out_shape`` into ``node.output[0]`` (moved to NHWC when 4-D)."""
    out = node.output[0]
    if len(out_shape) != 4:
        ctx.emit(kind, inputs, out, attrs, node, shape=out_shape)
        return
    y = ctx.emit(kind, inputs, ctx.tmp(f"{out}/src", out_shape), attrs, node, shape=out_shape)
    ctx.from_src(y, out, node)


def gather(ctx: ImportContext, node: Any, axis: int) -> None:
    """Gather along ONNX ``axis`` by run-time indices -> GATHER(data, indices, axis)."""
    data_shape = tuple(ctx.src_shape(node, node.input[0]))
    axis %= len(data_shape)
    idx_shape = tuple(ctx.src_shape(node, node.input[1]))
    x = _data(ctx, node, integer=True)
    ind = src_indices(ctx, node)
    _check_span(ctx, node, ind, data_shape[axis], f"axis {axis} of '{node.input[0]}'")
    out_shape = data_shape[:axis] + idx_shape + data_shape[axis + 1:]
    emit_gather(ctx, node, "GATHER", [x, ind], {"axis": axis}, out_shape)


def gather_nd(ctx: ImportContext, node: Any) -> None:
    """GatherND (batch_dims 0) by run-time index tuples -> GATHER_ND(data, indices)."""
    data_shape = tuple(ctx.src_shape(node, node.input[0]))
    idx_shape = tuple(ctx.src_shape(node, node.input[1]))
    if not idx_shape or idx_shape[-1] > len(data_shape):
        raise ctx.err(node, f"indices of shape {list(idx_shape)} do not fit data of shape {list(data_shape)}")
    depth = int(idx_shape[-1])
    if depth > MAX_INDEX_DEPTH:
        raise ctx.err(node, f"run-time index tuples of {depth} values: at most {MAX_INDEX_DEPTH} are supported")
    x = _data(ctx, node)
    ind = src_indices(ctx, node)
    _check_span(ctx, node, ind, min(data_shape[:depth]), "the smallest indexed axis")
    emit_gather(ctx, node, "GATHER_ND", [x, ind], {}, idx_shape[:-1] + data_shape[depth:])


def _broadcast_positions(ctx: ImportContext, ind: str, axis: int, data_shape: tuple[int, ...]) -> Optional[str]:
    """The int32 tensor that ``ind`` (GatherElements indices, ONNX layout, rank != 4) repeats along every axis but
    ``axis`` -- copies joined by CONCATENATIONs (and identity RESHAPEs), as Expand and Tile of a ``[1, k, 1]`` TopK
    result are written --
    when the indices also cover the data on those axes; then GatherElements equals a GATHER along ``axis`` by its
    values. None otherwise."""
    shape = ctx.ir_shape(ind)
    if len(shape) == 4 or any(s != d for k, (s, d) in enumerate(zip(shape, data_shape)) if k != axis):
        return None
    cur = ind
    while True:
        op = ctx.producer(cur)
        if op is not None and op.kind == "RESHAPE" and ctx.ir_shape(op.inputs[0]) == ctx.ir_shape(cur):
            cur = op.inputs[0]  # a copy (an identity reshape after Expand/Tile)
            continue
        if op is None or op.kind != "CONCATENATION" or len(set(op.inputs)) != 1:
            break
        part = op.inputs[0]
        if ctx.tensors[part].is_constant or int(op.attrs.get("axis", 0)) % len(shape) == axis \
                or ctx.ir_shape(part)[int(op.attrs.get("axis", 0)) % len(shape)] != 1:
            break
        cur = part
    src = ctx.ir_shape(cur)
    if len(src) != len(shape) or any(s != 1 for k, s in enumerate(src) if k != axis and shape[k] != 1):
        return None
    return cur


def gather_elements(ctx: ImportContext, node: Any, axis: int) -> None:
    """GatherElements along ONNX ``axis`` by run-time indices: one index tuple per output element, the run-time
    index (on ``axis``) concatenated with constant coordinates (the other axes), flattened to ``[elements, rank]``;
    then GATHER_ND and a reshape to the output (the indices' shape)."""
    data_shape = tuple(ctx.src_shape(node, node.input[0]))
    shape = tuple(ctx.src_shape(node, node.input[1]))
    rank, size = len(shape), int(np.prod(shape))
    if rank != len(data_shape):
        raise ctx.err(node, f"indices of rank {rank} do not match data of rank {len(data_shape)}")
    if any(s > d for k, (s, d) in enumerate(zip(shape, data_shape)) if k != axis):
        raise ctx.err(node, f"indices of shape {list(shape)} exceed data of shape {list(data_shape)} off axis {axis}")
    if rank > MAX_INDEX_DEPTH:
        raise ctx.err(node, f"run-time indices into data of rank {rank}: at most {MAX_INDEX_DEPTH} are supported")
    out = node.output[0]
    x = _data(ctx, node, integer=True)
    ind = src_indices(ctx, node)
    _check_span(ctx, node, ind, data_shape[axis], f"axis {axis} of '{node.input[0]}'")
    row = _broadcast_positions(ctx, ind, axis, data_shape)
    if row is not None:  # the same position across the other axes (an Expand/Tile of [1, k, 1]): one GATHER
        pos = ctx.emit("RESHAPE", [row], ctx.tmp(f"{out}/positions", (shape[axis],)), {}, node, shape=(shape[axis],))
        emit_gather(ctx, node, "GATHER", [x, pos], {"axis": axis}, shape)
        return
    if ctx.is_int(node.input[0]):
        _gather_flat(ctx, node, x, ind, axis, data_shape, shape)
        return
    idx = ctx.emit("RESHAPE", [ind], ctx.tmp(f"{out}/positions", (size, 1)), {}, node, shape=(size, 1))
    grids = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    parts = [idx if d == axis else ctx.add_const(f"{out}/grid{d}", grids[d].reshape(size, 1), np.int32)
             for d in range(rank)]
    tuples = idx if rank == 1 else ctx.emit("CONCATENATION", parts, ctx.tmp(f"{out}/index_tuples", (size, rank)),
                                            {"axis": 1, "act": "NONE"}, node, shape=(size, rank))
    flat = ctx.emit("GATHER_ND", [x, tuples], ctx.tmp(f"{out}/flat", (size,)), {}, node, shape=(size,))
    ctx.reshape(flat, shape, out, node)


def _gather_flat(ctx: ImportContext, node: Any, x: str, ind: str, axis: int, data_shape: tuple[int, ...],
                 shape: tuple[int, ...]) -> None:
    """GatherElements of int32 data ``x`` (ONNX layout): one GATHER on the flattened data by the flat position
    of each output element, ``index * stride(axis) + offset`` (int32 MUL and ADD; the offsets of the other axes
    are a constant)."""
    out = node.output[0]
    rank, size = len(shape), int(np.prod(data_shape))
    strides = [int(np.prod(data_shape[d + 1:])) for d in range(rank)]
    grids = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    offsets = sum((grids[d] * strides[d] for d in range(rank) if d != axis), np.zeros(shape, np.int64))
    flat_data = ctx.emit("RESHAPE", [x], ctx.tmp(f"{out}/flat_data", (size,)), {}, node, shape=(size,))
    pos = ind
    if strides[axis] != 1:
        stride = ctx.add_const(f"{out}/stride", np.array([strides[axis]], np.int32), np.int32)
        pos = ctx.emit("MUL", [pos, stride], ctx.tmp(f"{out}/scaled", shape), {"act": "NONE"}, node, shape=shape)
    if np.any(offsets):
        const = ctx.add_const(f"{out}/offsets", offsets.astype(np.int32), np.int32)
        pos = ctx.emit("ADD", [pos, const], ctx.tmp(f"{out}/flat_positions", shape), {"act": "NONE"}, node,
                       shape=shape)
    emit_gather(ctx, node, "GATHER", [flat_data, pos], {"axis": 0}, shape)
