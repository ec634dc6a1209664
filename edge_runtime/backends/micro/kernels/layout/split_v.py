"""SPLIT_V: cut a tensor into parts of given sizes along a constant axis."""
from __future__ import annotations

from edge_runtime.backends.micro.kernels.base import OpContext
from edge_runtime.backends.micro.kernels.layout.common import const_ints, io, norm_axis, require_type
from edge_runtime.backends.micro.kernels.layout.split import TYPES, SplitCopy, split_bounds


class SplitV(SplitCopy):
    """SPLIT_V (inputs: data, size_splits, axis); the sizes come from the outputs' shapes, as in TFLM."""

    max_version = 3
    data_pos = 0

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        x, _ = io(ctx, TYPES)
        require_type(ctx, ctx.input(1), ("INT32", "INT64"), "size_splits")
        axis = const_ints(ctx, ctx.input(2), "axis")
        if axis.size != 1:
            raise ctx.fail("the axis tensor must hold one value")
        if not x.shape:
            raise ctx.fail("the input must have at least one dimension")
        self.axis = norm_axis(ctx, int(axis[0]), len(x.shape))
        self.bounds = split_bounds(ctx, tuple(x.shape), self.axis)
