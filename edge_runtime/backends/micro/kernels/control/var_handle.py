"""VAR_HANDLE: names a resource variable. Handles are resolved when the model is prepared, so it has nothing to do."""
from __future__ import annotations

from edge_runtime.backends.micro.kernels.base import (
    Inputs,
    Kernel,
    OpContext,
    Outputs,
    Scratch,
    Workspace,
)


class VarHandle(Kernel):
    """VAR_HANDLE (output: a RESOURCE tensor)."""

    aliased = True  # nothing to run

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        if len(ctx.op.outputs) != 1 or ctx.op.outputs[0] < 0 or [i for i in ctx.op.inputs if i >= 0]:
            raise ctx.fail("VAR_HANDLE takes no inputs and has one output")
        if ctx.output(0).type_name not in ("RESOURCE", "INT32"):
            raise ctx.fail(f"the handle tensor has type {ctx.output(0).type_name}; expected RESOURCE")

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Nothing to bind."""

    def run(self) -> None:
        """Nothing to do."""
