"""CastLike: a Cast whose target element type is that of its second input (a constant, or a graph input)."""
from __future__ import annotations

from typing import Any

import numpy as np

from converters.importers.onnx_ops.context import ImportContext
from converters.importers.onnx_ops.layout import cast_to

#: ONNX float element types (FLOAT, FLOAT16, DOUBLE, BFLOAT16): a float constant stays float32 in the IR
_FLOATS = (1, 10, 11, 16)


def _like_type(ctx: ImportContext, node: Any, like: str) -> int:
    """The ONNX element type of ``like``: from its value when it is a constant, else float (every activation
    of the IR is float unless it is integer indices)."""
    from onnx import TensorProto, helper

    if ctx.is_const(like):
        return int(helper.np_dtype_to_tensor_dtype(np.asarray(ctx.consts[ctx.name(like)]).dtype))
    return TensorProto.INT32 if ctx.is_int(like) else TensorProto.FLOAT


def castlike(ctx: ImportContext, node: Any, a: dict) -> None:
    """CastLike(x, like): the output is ``x`` when ``like`` is float (or both are integer indices)."""
    if len(node.input) < 2 or not node.input[1]:
        raise ctx.err(node, "CastLike needs its second input (target_type)")
    to = _like_type(ctx, node, node.input[1])
    if ctx.is_const(node.input[0]):  # a constant cast to a run-time tensor's type (a function body's alpha)
        from onnx import helper

        value = np.asarray(ctx.consts[ctx.name(node.input[0])])
        ctx.consts[node.output[0]] = value.astype(np.float32 if to in _FLOATS else helper.tensor_dtype_to_np_dtype(to))
        return
    cast_to(ctx, node, to)


REGISTRY = {"CastLike": castlike}
