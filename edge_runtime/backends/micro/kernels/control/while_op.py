"""WHILE: loop the body subgraph while the cond subgraph's first output is true.

As TFLM: the op's inputs go to the cond subgraph and to the op's outputs (the
loop state); each iteration copies the outputs into the body's inputs, runs the
body, copies its outputs back to the op's outputs and re-evaluates cond on them.

Unlike TFLM, a loop is not allowed to run forever: after :data:`MAX_ITERATIONS` iterations
(far beyond any model's sequence or decoding loop) the invocation fails with one line naming
the op, so a hostile or broken model whose condition never turns false cannot hang the caller.
"""
from __future__ import annotations

from edge_runtime.arena.subgraphs import while_options
from edge_runtime.backends.micro.kernels.base import (
    Inputs,
    OpContext,
    Outputs,
    Scratch,
    Workspace,
)
from edge_runtime.backends.micro.kernels.control.common import (
    Copier,
    SubgraphKernel,
    check_same_bytes,
)
from edge_runtime.errors import UnsupportedModelError

#: the most iterations one WHILE may run in one invocation before it is taken for an endless loop
MAX_ITERATIONS = 1_000_000


class While(SubgraphKernel):
    """WHILE."""

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        self.cond_index, self.body_index = while_options(ctx.op)
        n = len(ctx.op.inputs)
        if len(ctx.op.outputs) != n or any(i < 0 for i in ctx.op.inputs) or any(o < 0 for o in ctx.op.outputs):
            raise ctx.fail(f"WHILE needs as many outputs as inputs ({n}), none omitted")
        ins = [ctx.input(i) for i in range(n)]
        outs = [ctx.output(i) for i in range(n)]
        self._endless = str(ctx.fail(f"its condition (subgraph {self.cond_index}) was still true after "
                                     f"{MAX_ITERATIONS:,} iterations; an endless loop is refused"))
        self.check_io(self.cond_index, n, -1, "cond")
        self.check_io(self.body_index, n, n, "body")
        cond_out = self.tensors_of(self.cond_index, "outputs")
        if not cond_out or cond_out[0].type_name != "BOOL" or cond_out[0].num_elements < 1:
            raise ctx.fail(f"the cond subgraph {self.cond_index} must have a BOOL first output")
        for a, b, c, d, e in zip(ins, outs, self.tensors_of(self.cond_index, "inputs"),
                                 self.tensors_of(self.body_index, "inputs"), self.tensors_of(self.body_index, "outputs")):
            check_same_bytes(ctx, "loop input/output", a, b)
            check_same_bytes(ctx, "cond subgraph input", b, c)
            check_same_bytes(ctx, "body subgraph input", b, d)
            check_same_bytes(ctx, "body subgraph output", e, b)

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Prepare every copy of the loop."""
        cond, body = self.run_of(self.cond_index), self.run_of(self.body_index)
        self.in_to_cond = Copier(list(zip(cond.input_views, inputs)))
        self.in_to_out = Copier(list(zip(outputs, inputs)))
        self.out_to_body = Copier(list(zip(body.input_views, outputs)))
        self.body_to_out = Copier(list(zip(outputs, body.output_views)))
        self.out_to_cond = Copier(list(zip(cond.input_views, outputs)))
        self.cond_invoke, self.body_invoke = cond.invoke, body.invoke
        self.flag = cond.output_views[0].reshape(-1)

    def run(self) -> None:
        """Loop."""
        self.in_to_cond()
        self.in_to_out()
        self.cond_invoke()
        left = MAX_ITERATIONS
        while self.flag[0]:
            if left == 0:
                raise UnsupportedModelError(self._endless)
            left -= 1
            self.out_to_body()
            self.body_invoke()
            self.body_to_out()
            self.out_to_cond()
            self.cond_invoke()
