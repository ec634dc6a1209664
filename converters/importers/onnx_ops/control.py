"""Constants, shape queries and If on a constant condition (its branch is inlined)."""
from __future__ import annotations

from typing import Any

import numpy as np

from converters.importers.onnx_ops.context import ImportContext


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
    """If with a constant condition: import the taken branch in place."""
    if not ctx.is_const(node.input[0]):
        raise ctx.err(node, "If on a run-time condition is not supported; only a constant condition "
                            "(which is folded) can be converted")
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


REGISTRY = {"Constant": constant, "Shape": shape, "Size": shape, "If": if_}
