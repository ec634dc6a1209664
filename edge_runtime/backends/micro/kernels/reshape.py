"""RESHAPE and SQUEEZE: the bytes do not change. When the plan aliases the output
to the input (in-place planning), nothing is done; otherwise the bytes are copied."""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.kernels.base import Inputs, Kernel, OpContext, Outputs, Scratch, Workspace


class Reshape(Kernel):
    """RESHAPE / SQUEEZE."""

    inplace_ok = True
    max_version = 2

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        x, y = ctx.input(0), ctx.output(0)
        if x is None or x.num_elements != y.num_elements or x.type_code != y.type_code:
            raise ctx.fail("input and output must hold the same number of elements of the same type")

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Detect aliasing."""
        self.src = inputs[0].reshape(-1)
        self.dst = outputs[0].reshape(-1)
        self.aliased = (self.src.__array_interface__["data"][0] == self.dst.__array_interface__["data"][0])
        if not self.aliased and np.shares_memory(self.src, self.dst):
            raise self.ctx.fail("the plan overlaps input and output without aliasing them exactly")

    def run(self) -> None:
        """Copy unless aliased."""
        if not self.aliased:
            np.copyto(self.dst, self.src)
