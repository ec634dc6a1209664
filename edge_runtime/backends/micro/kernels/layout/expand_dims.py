"""EXPAND_DIMS: insert a dimension of size 1 (the bytes do not change; the output aliases the input)."""
from __future__ import annotations

from edge_runtime.arena.traits import OpMemory
from edge_runtime.formats.tflite import Operator, SubGraph, TFLiteModel
from edge_runtime.backends.micro.kernels.base import OpContext
from edge_runtime.backends.micro.kernels.layout.common import F32, I8, I16, const_ints, io, same_shape
from edge_runtime.backends.micro.kernels.reshape import Reshape

TYPES = (F32, I8, I16)


class ExpandDims(Reshape):
    """EXPAND_DIMS with a constant int32 axis (TFLM requires it constant)."""

    max_version = 1

    def __init__(self, ctx: OpContext) -> None:
        x, y = io(ctx, TYPES)
        a = ctx.input(1)
        axis = const_ints(ctx, a, "axis")
        if len(a.shape) > 1 or axis.size < 1:
            raise ctx.fail("the axis tensor must hold one value")
        rank = len(x.shape)
        ax = int(axis[0])
        ax = ax + rank + 1 if ax < 0 else ax
        if not 0 <= ax <= rank:
            raise ctx.fail(f"axis {int(axis[0])} is out of range for input rank {rank}")
        xs = tuple(x.shape)
        same_shape(ctx, y.shape, xs[:ax] + (1,) + xs[ax:])
        super().__init__(ctx)

    @staticmethod
    def op_memory(model: TFLiteModel, subgraph: SubGraph, op: Operator, workspace_limit: int) -> OpMemory:
        """The output is the input's bytes."""
        return OpMemory(alias_input=0)
