"""UNPACK: split a tensor into its slices along an axis, dropping that axis."""
from __future__ import annotations

from edge_runtime.backends.micro.kernels.base import Inputs, OpContext, Outputs, Scratch, Workspace
from edge_runtime.backends.micro.kernels.layout.common import (
    F32, I8, I16, I32, CopyViews, io, option, prod, require_type, same_shape,
)

TYPES = (F32, I8, I16, I32)


class Unpack(CopyViews):
    """UNPACK (UnpackOptions: num, axis): every output is produced."""

    max_version = 4

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        x, _ = io(ctx, TYPES)
        rank = len(x.shape)
        axis = int(option(ctx.op, 1, "i", 0))
        axis = axis + rank if axis < 0 else axis
        if not 0 <= axis < rank:
            raise ctx.fail(f"axis {axis} is out of range for input rank {rank}")
        n = len(ctx.op.outputs)
        num = int(option(ctx.op, 0, "i", n))
        if num != n or x.shape[axis] != n:
            raise ctx.fail(f"num {num} must equal the {n} outputs and input dimension {x.shape[axis]}")
        xs = tuple(x.shape)
        for i in range(n):
            t = require_type(ctx, ctx.output(i), (x.type_name,), f"output {i}")
            same_shape(ctx, t.shape, xs[:axis] + xs[axis + 1:], f"output {i}")
        self.outer, self.inner, self.n = prod(xs[:axis]), prod(xs[axis + 1:]), n

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Output i is [:, i, :] of the input seen as (outer, n, inner)."""
        x = inputs[0].reshape(self.outer, self.n, self.inner)
        self.pairs = [(x[:, i, :], y.reshape(self.outer, self.inner)) for i, y in enumerate(outputs)]
