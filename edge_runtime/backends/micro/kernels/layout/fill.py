"""FILL: an output of the model's shape filled with one scalar value."""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.kernels.base import Inputs, Kernel, OpContext, Outputs, Scratch, Workspace
from edge_runtime.backends.micro.kernels.layout.common import F32, I8, I16, I32, I64, const_ints, require_type

TYPES = (F32, I8, I32)


class Fill(Kernel):
    """FILL: constant dims (int8/16/32/64, equal to the output shape), scalar value (constant or computed)."""

    max_version = 4

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        dims = const_ints(ctx, ctx.input(0), "dims", (I8, I16, I32, I64))
        v = require_type(ctx, ctx.input(1), TYPES, "value")
        y = require_type(ctx, ctx.output(0), (v.type_name,), "output")
        if len(v.shape) != 0:
            raise ctx.fail("the value must be a scalar (0 dimensions)")
        if len(ctx.input(0).shape) != 1 or tuple(dims.tolist()) != tuple(y.shape):
            raise ctx.fail(f"dims {dims.tolist()} do not match the output shape {tuple(y.shape)}")

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Views."""
        self.v, self.y = inputs[1], outputs[0]

    def run(self) -> None:
        """Broadcast the scalar."""
        np.copyto(self.y, self.v)
