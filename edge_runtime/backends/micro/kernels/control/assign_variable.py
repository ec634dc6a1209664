"""ASSIGN_VARIABLE: copy the value tensor's bytes into a resource variable (no outputs)."""
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


class AssignVariable(ResourceKernel):
    """ASSIGN_VARIABLE (any tensor type: a byte copy)."""

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        if len(ctx.op.inputs) != 2 or ctx.input(1) is None or [o for o in ctx.op.outputs if o >= 0]:
            raise ctx.fail("ASSIGN_VARIABLE takes a handle and a value and has no outputs")

    def value_tensor(self):  # type: ignore[no-untyped-def]
        """The assigned value."""
        return self.ctx.input(1)

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Flat byte view of the value."""
        self.src = as_bytes(np.ascontiguousarray(inputs[1]))

    def run(self) -> None:
        """Copy."""
        np.copyto(self.buffer, self.src)
