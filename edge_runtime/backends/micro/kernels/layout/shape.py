"""SHAPE: the input's dimensions as an int32 vector."""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.kernels.base import Inputs, Kernel, OpContext, Outputs, Scratch, Workspace
from edge_runtime.backends.micro.kernels.layout.common import I32, require_type, same_shape


class Shape(Kernel):
    """SHAPE (TFLM writes int32 only); the input may be of any type."""

    max_version = 1

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        x = ctx.input(0)
        if x is None:
            raise ctx.fail("the input tensor is missing")
        y = require_type(ctx, ctx.output(0), (I32,), "output")
        same_shape(ctx, y.shape, (len(x.shape),))
        self.dims = np.array(x.shape, np.int32)

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """The output view."""
        self.y = outputs[0]

    def run(self) -> None:
        """Write the dimensions."""
        np.copyto(self.y, self.dims)
