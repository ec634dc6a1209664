"""PACK: stack equal-shaped tensors along a new axis."""
from __future__ import annotations

from edge_runtime.backends.micro.kernels.base import Inputs, OpContext, Outputs, Scratch, Workspace
from edge_runtime.backends.micro.kernels.layout.common import (
    F32, I8, I16, I32, I64, CopyViews, option, prod, require_type, same_shape,
)

TYPES = (F32, I8, I16, I32, I64)


class Pack(CopyViews):
    """PACK (PackOptions: values_count, axis)."""

    max_version = 4

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        y = require_type(ctx, ctx.output(0), TYPES, "output")
        n = len(ctx.op.inputs)
        count = int(option(ctx.op, 0, "i", n))
        if count != n or n < 1:
            raise ctx.fail(f"values_count {count} does not match the {n} inputs")
        x0 = ctx.input(0)
        for i in range(n):
            t = require_type(ctx, ctx.input(i), (y.type_name,), f"input {i}")
            same_shape(ctx, t.shape, x0.shape, f"input {i}")
        rank = len(y.shape)
        axis = int(option(ctx.op, 1, "i", 0))
        axis = axis + rank if axis < 0 else axis
        if not 0 <= axis < rank:
            raise ctx.fail(f"axis {axis} is out of range for output rank {rank}")
        xs = tuple(x0.shape)
        same_shape(ctx, y.shape, xs[:axis] + (n,) + xs[axis:])
        self.outer, self.inner, self.n = prod(y.shape[:axis]), prod(y.shape[axis + 1:]), n

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Input i goes to [:, i, :] of the output seen as (outer, n, inner)."""
        y = outputs[0].reshape(self.outer, self.n, self.inner)
        self.pairs = [(x.reshape(self.outer, self.inner), y[:, i, :]) for i, x in enumerate(inputs)]
