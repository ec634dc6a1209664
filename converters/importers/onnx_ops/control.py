"""Constants, shape queries, If (a constant condition inlines its branch; a run-time one inlines both and selects
with SELECT_V2), and graph outputs that are constants."""
from __future__ import annotations

from typing import Any

import numpy as np

from converters.importers.onnx_ops.context import ImportContext
from converters.ir import TO_NHWC


def constant(ctx: ImportContext, node: Any, a: dict) -> None:
    """Constant (any of its value attributes)."""
    from onnx import numpy_helper

    if "value" in a:
        v = numpy_helper.to_array(a["value"])
    elif "value_float" in a:
        v = np.array(a["value_float"], np.float32)
    elif "value_floats" in a:
        v = np.array(a["value_floats"], np.float32)
    elif "value_int" in a:
        v = np.array(a["value_int"], np.int64)
    elif "value_ints" in a:
        v = np.array(a["value_ints"], np.int64)
    else:
        raise ctx.err(node, f"Constant with attributes {sorted(a)} is not supported")
    ctx.consts[node.output[0]] = v


def shape(ctx: ImportContext, node: Any, a: dict) -> None:
    """Shape/Size of a tensor with a static shape: a constant."""
    dims = ctx.src_shape(node, node.input[0])
    if node.op_type == "Size":
        ctx.consts[node.output[0]] = np.array(int(np.prod(dims)), np.int64)
        return
    start, end = int(a.get("start", 0)), a.get("end")
    ctx.consts[node.output[0]] = np.array(dims[start:None if end is None else int(end)], np.int64)


def if_(ctx: ImportContext, node: Any, a: dict) -> None:
    """If: a constant condition imports the taken branch in place; a run-time one imports both and selects."""
    if not ctx.is_const(node.input[0]):
        _if_runtime(ctx, node, a)
        return
    cond = bool(np.asarray(ctx.consts[ctx.name(node.input[0])]).reshape(-1)[0])
    branch = a["then_branch" if cond else "else_branch"]
    for vi in list(branch.value_info) + list(branch.output):
        dims = vi.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            ctx.shapes.setdefault(vi.name, tuple(int(d.dim_value) for d in dims))
    for init in branch.initializer:
        from onnx import numpy_helper

        ctx.consts[init.name] = numpy_helper.to_array(init)
    for inner in branch.node:
        ctx.dispatch(ctx, inner)
    for o, bo in zip(node.output, branch.output):
        if ctx.is_const(bo.name):
            ctx.consts[o] = ctx.consts[ctx.name(bo.name)]
        else:
            ctx.alias[o] = ctx.name(bo.name)


#: ONNX element types an If on a run-time condition may output (FLOAT, FLOAT16, DOUBLE)
_FLOAT_TYPES = (1, 10, 11)
#: ops that keep a branch from being inlined (they must run a data-dependent number of times)
_LOOPING = ("Loop", "Scan")


def _subgraphs(n: Any) -> list[Any]:
    """The graphs held by node ``n``'s attributes."""
    from onnx import AttributeProto

    out = []
    for at in n.attribute:
        if at.type == AttributeProto.GRAPH:
            out.append(at.g)
        elif at.type == AttributeProto.GRAPHS:
            out.extend(at.graphs)
    return out


def _defined(g: Any) -> set[str]:
    """Every name graph ``g`` (and the graphs nested in it) defines: node outputs, initializers, inputs."""
    names = {i.name for i in g.initializer} | {i.name for i in g.input}
    for n in g.node:
        names.update(o for o in n.output if o)
        for sub in _subgraphs(n):
            names |= _defined(sub)
    return names


def _rename(g: Any, new: dict[str, str]) -> None:
    """Rename the tensors of graph ``g`` (and nested graphs) by ``new``, in place."""
    for init in g.initializer:
        init.name = new.get(init.name, init.name)
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        vi.name = new.get(vi.name, vi.name)
    for n in g.node:
        n.input[:] = [new.get(i, i) for i in n.input]
        n.output[:] = [new.get(o, o) for o in n.output]
        for sub in _subgraphs(n):
            _rename(sub, new)


def _count(g: Any) -> int:
    """How many nodes graph ``g`` holds, counting those in nested graphs."""
    return sum(1 + sum(_count(s) for s in _subgraphs(n)) for n in g.node)


def _looping(g: Any) -> Any:
    """The first Loop/Scan node anywhere in ``g`` (None when there is none)."""
    for n in g.node:
        if n.op_type in _LOOPING:
            return n
        for sub in _subgraphs(n):
            found = _looping(sub)
            if found is not None:
                return found
    return None


def _inline(ctx: ImportContext, node: Any, branch: Any, tag: str) -> list[str]:
    """Import a copy of ``branch`` with fresh names for everything it defines; its output names."""
    from onnx import GraphProto, numpy_helper

    g = GraphProto()
    g.CopyFrom(branch)
    prefix = f"{node.name or node.output[0]}/{tag}/"
    _rename(g, {name: prefix + name for name in _defined(g)})
    for vi in list(g.value_info) + list(g.output):
        dims = vi.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            ctx.shapes.setdefault(vi.name, tuple(int(d.dim_value) for d in dims))
    for init in g.initializer:
        arr = numpy_helper.to_array(init)
        ctx.consts[init.name] = arr.astype(np.float32) if arr.dtype.kind == "f" else arr
    for inner in g.node:
        for i in inner.input:
            ctx.uses[i] = ctx.uses.get(i, 0) + 1
    for o in g.output:
        ctx.uses[o.name] = ctx.uses.get(o.name, 0) + 1
    for inner in g.node:
        ctx.dispatch(ctx, inner)
    return [o.name for o in g.output]


def _if_runtime(ctx: ImportContext, node: Any, a: dict) -> None:
    """If on a run-time condition: both branches are imported and each output is SELECT_V2(cond, then, else).

    Sound because ONNX branches have no side effects; the cost is that both branches always run (logged).
    Refused in one line when a branch loops (Loop/Scan), an output is not float, the branches' output
    shapes are unknown or do not broadcast, or the condition is not a one-element comparison result.
    """
    from converters.importers.onnx_ops.compare import _raw

    then_g, else_g = a["then_branch"], a["else_branch"]
    for tag, g in (("then", then_g), ("else", else_g)):
        loop = _looping(g)
        if loop is not None:
            raise ctx.err(node, f"If on a run-time condition whose {tag} branch holds a {loop.op_type} "
                                f"('{loop.name or loop.output[0]}') is not supported; both branches of a run-time If "
                                f"are inlined and a loop inside one cannot be unrolled")
        for o in g.output:
            if o.type.tensor_type.elem_type not in _FLOAT_TYPES:
                from onnx import TensorProto

                kind = TensorProto.DataType.Name(o.type.tensor_type.elem_type).lower()
                raise ctx.err(node, f"If on a run-time condition with the {kind} output '{o.name}' in its {tag} "
                                    f"branch is not supported; only float outputs can be selected at run time")
    c = node.input[0]
    cond = ctx.act(node, c)
    if int(np.prod(ctx.ir_shape(cond), dtype=np.int64)) != 1:
        raise ctx.err(node, f"the condition '{c}' has shape {ctx.ir_shape(cond)}; an If condition has one element")
    if not _raw(ctx, cond):
        raise ctx.err(node, f"the condition '{c}' is not a mask made by a comparison")
    outs = {"then": _inline(ctx, node, then_g, "then"), "else": _inline(ctx, node, else_g, "else")}
    import logging

    logging.getLogger("converters.importers.onnx").warning(
        "ONNX node '%s' (If) on a run-time condition: both branches always run (then: %d ops, else: %d ops)",
        node.name or node.output[0], _count(then_g), _count(else_g))
    masks: dict[int, str] = {}  # the condition reshaped for each output rank
    for o, tb, eb in zip(node.output, outs["then"], outs["else"]):
        if not o:
            continue
        shapes = []
        for tag, b in (("then", tb), ("else", eb)):
            key = ctx.name(b)
            if key not in ctx.consts and key not in ctx.shapes and b not in ctx.shapes:
                raise ctx.err(node, f"the {tag} branch's output '{b}' has no static shape; both outputs of a run-time "
                                    f"If need static shapes (give --input-shape)")
            shapes.append(ctx.src_shape(node, b))
        try:
            shape = tuple(int(d) for d in np.broadcast_shapes(*shapes))
        except ValueError:
            raise ctx.err(node, f"the branches' outputs have shapes {shapes[0]} and {shapes[1]}, which do not "
                                f"broadcast; a run-time If needs outputs of one shape") from None
        if ctx.is_const(tb) and ctx.is_const(eb):
            raise ctx.err(node, f"both branches give a constant for output '{o}'; only a selection involving an "
                                f"activation is supported")
        ctx.shapes[o] = shape
        rank = len(shape)
        if rank not in masks:
            masks[rank] = (cond if len(ctx.ir_shape(cond)) == max(rank, 1)
                           else ctx.reshape(cond, (1,) * max(rank, 1), node=node))
        sel = masks[rank]
        values = _own_ranges(ctx, [ctx.broadcast_operand(node, b, rank) for b in (tb, eb)], o)
        ctx.emit("SELECT_V2", [sel] + values, o, {}, node)


#: int8 kernels that move values without rescaling (their output keeps the input's parameters)
_MOVES = ("RESHAPE", "TRANSPOSE", "STRIDED_SLICE", "PAD", "MAX_POOL_2D", "AVERAGE_POOL_2D", "GATHER")


def _fixed(ctx: ImportContext, x: str) -> Any:
    """The fixed int8 parameters TFLite gives IR activation ``x`` (a sigmoid/softmax/tanh output, through ops
    that only move values), None when its parameters follow its range."""
    from converters.quantize import FIXED

    op = ctx.producer(x)
    while op is not None and op.kind in _MOVES:
        op = ctx.producer(op.inputs[0])
    return None if op is None else FIXED.get(op.kind)


def _own_ranges(ctx: ImportContext, values: list[str], out: str) -> list[str]:
    """The two choices of a SELECT_V2, a fixed-range one (a sigmoid's [0, 1]) requantized by an ADD of zero
    when the other's parameters differ: int8 SELECT_V2 gives both choices the output's parameters, which
    would otherwise be the fixed ones and clip the other choice."""
    fixed = [None if ctx.tensors[v].is_constant else _fixed(ctx, v) for v in values]
    if fixed[0] == fixed[1]:
        return values
    new = []
    for k, (v, f) in enumerate(zip(values, fixed)):
        if f is not None:
            zero = ctx.add_const(f"{out}/requantize_zero{k}", np.zeros((1,), np.float32))
            v = ctx.emit("ADD", [v, zero], ctx.tmp(f"{out}/requantized{k}", ctx.ir_shape(v)), {"act": "NONE"},
                         None, shape=ctx.ir_shape(v))
        new.append(v)
    return new


def constant_output(ctx: ImportContext, name: str) -> str:
    """The IR activation for graph output ``name`` whose value is a constant (anchors, a fixed table).

    TFLite needs an op writing every output, so the constant is written by an ADD of zero that each
    runtime computes at every invocation (in int8 it gets the constant's own quantization). Only float
    constants can be written this way; anything else is refused in one line.
    """
    value = np.asarray(ctx.consts[ctx.name(name)])
    if value.dtype.kind != "f":
        raise ctx.err(_Output(name), f"it is a constant {value.dtype} tensor of shape {value.shape}; a constant "
                                     f"output can be written only as a float tensor (leave it out with --outputs and "
                                     f"keep its value beside the model)")
    if value.size == 0:
        raise ctx.err(_Output(name), "it is a constant with no elements; zero-size tensors are not supported")
    data = value.astype(np.float32)
    ir = data.transpose(TO_NHWC) if data.ndim == 4 else data.reshape(data.shape or (1,))
    shape = tuple(int(d) for d in ir.shape)
    const = ctx.add_const(f"{name}/value", ir)
    zero = ctx.add_const(f"{name}/zero", np.zeros((1,), np.float32))
    out = ctx.tmp(f"{name}/constant", shape)
    return ctx.emit("ADD", [const, zero], out, {"act": "NONE"}, None, shape=shape)


class _Output:
    """Stands in for a node in messages about a graph output."""

    op_type = "graph output"

    def __init__(self, name: str) -> None:
        self.name = name
        self.output = [name]


REGISTRY = {"Constant": constant, "Shape": shape, "Size": shape, "If": if_}
