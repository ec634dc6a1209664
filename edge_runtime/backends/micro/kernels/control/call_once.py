"""CALL_ONCE: run an init subgraph on the first invoke after load or reset."""
from __future__ import annotations

from edge_runtime.arena.subgraphs import call_once_options
from edge_runtime.backends.micro.kernels.base import (
    Inputs,
    OpContext,
    Outputs,
    Scratch,
    Workspace,
)
from edge_runtime.backends.micro.kernels.control.common import SubgraphKernel


class CallOnce(SubgraphKernel):
    """CALL_ONCE (no inputs, no outputs)."""

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        if [i for i in ctx.op.inputs if i >= 0] or [o for o in ctx.op.outputs if o >= 0]:
            raise ctx.fail("CALL_ONCE takes no inputs and has no outputs")
        self.index = call_once_options(ctx.op)
        self.done = False

    def attach(self, interp) -> None:  # type: ignore[no-untyped-def]
        """Also re-arm on every reset."""
        super().attach(interp)
        interp.state.on_reset(self._rearm)

    def _rearm(self) -> None:
        self.done = False

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Find the init subgraph's run."""
        self.init = self.run_of(self.index)

    def run(self) -> None:
        """Invoke the init subgraph the first time only."""
        if not self.done:
            self.init.invoke()
            self.done = True
