"""IF: invoke the then- or else-subgraph on the op's inputs 1..n, copy its outputs to the op's outputs."""
from __future__ import annotations

from edge_runtime.arena.subgraphs import if_options
from edge_runtime.backends.micro.kernels.base import (
    Inputs,
    OpContext,
    Outputs,
    Scratch,
    Workspace,
    require_type,
)
from edge_runtime.backends.micro.kernels.control.common import (
    Copier,
    SubgraphKernel,
    check_same_bytes,
)


class If(SubgraphKernel):
    """IF (condition: a BOOL tensor; its first element decides, as in TFLM)."""

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        cond = require_type(ctx, ctx.input(0), ("BOOL",), "condition")
        if cond.num_elements != 1:
            raise ctx.fail(f"the condition tensor has {cond.num_elements} elements; TFLM requires exactly one")
        self.branches = if_options(ctx.op)
        ins = [ctx.input(i) for i in range(1, len(ctx.op.inputs))]
        outs = [ctx.output(i) for i in range(len(ctx.op.outputs))]
        if any(t is None for t in ins):
            raise ctx.fail("an input is missing")
        for b, what in zip(self.branches, ("then", "else")):
            self.check_io(b, len(ins), len(outs), what)
            for src, dst in zip(ins, self.tensors_of(b, "inputs")):
                check_same_bytes(ctx, f"{what} subgraph input", src, dst)
            for src, dst in zip(self.tensors_of(b, "outputs"), outs):
                check_same_bytes(ctx, f"{what} subgraph output", src, dst)

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Prepare the copies in and out of both branches."""
        self.cond = inputs[0].reshape(-1)
        self.sides = []
        for b in self.branches:
            run = self.run_of(b)
            self.sides.append((Copier(list(zip(run.input_views, inputs[1:]))), run.invoke,
                               Copier(list(zip(outputs, run.output_views)))))

    def run(self) -> None:
        """Copy in, invoke the chosen branch, copy out."""
        copy_in, invoke, copy_out = self.sides[0 if self.cond[0] else 1]
        copy_in()
        invoke()
        copy_out()
