"""READ_VARIABLE: copy a resource variable's bytes into the output tensor."""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.kernels.base import (
    Inputs,
    OpContext,
    Outputs,
    Scratch,
    Workspace,
)
from edge_runtime.backends.micro.kernels.control.common import as_bytes
from edge_runtime.backends.micro.kernels.control.variables import ResourceKernel


class ReadVariable(ResourceKernel):
    """READ_VARIABLE (any tensor type: a byte copy)."""

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        if len(ctx.op.outputs) != 1 or ctx.op.outputs[0] < 0:
            raise ctx.fail("READ_VARIABLE has one output")

    def value_tensor(self):  # type: ignore[no-untyped-def]
        """The output."""
        return self.ctx.output(0)

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Flat byte view of the output."""
        self.dst = as_bytes(outputs[0])

    def run(self) -> None:
        """Copy."""
        np.copyto(self.dst, self.buffer)

