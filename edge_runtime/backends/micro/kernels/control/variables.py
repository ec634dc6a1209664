"""Shared part of READ_VARIABLE and ASSIGN_VARIABLE: find the resource variable behind a handle."""
from __future__ import annotations

from edge_runtime.arena.persistent import ResourceVariable
from edge_runtime.backends.micro.kernels.base import Kernel, OpContext
from edge_runtime.errors import UnsupportedModelError


class ResourceKernel(Kernel):
    """A kernel that reads or writes the resource variable named by its input 0."""

    def resolve(self, ctx: OpContext, layout) -> ResourceVariable:  # type: ignore[no-untyped-def]
        """The resource variable of input 0 (a handle made by a VAR_HANDLE of the same subgraph)."""
        h = ctx.input(0)
        if h is None or h.type_name not in ("RESOURCE", "INT32") or h.num_elements != 1:
            raise ctx.fail("input 0 must be a resource handle with one element")
        try:
            return layout.resource_of(ctx.model, ctx.subgraph, ctx.op.inputs[0])
        except UnsupportedModelError as exc:
            raise ctx.fail(str(exc).split(": ", 1)[-1]) from None

    def attach(self, interp) -> None:  # type: ignore[no-untyped-def]
        """Find the resource variable's bytes in the interpreter's persistent state."""
        self.state = interp.state
        self.variable = self.resolve(self.ctx, interp.state.layout)
        self.buffer = interp.state.resource(self.variable, f"op {self.ctx.op.index} ({self.ctx.op.name})")
        value = self.value_tensor()
        if value.dtype is None or value.nbytes != self.buffer.size:
            raise self.ctx.fail(f"tensor '{value.name}' ({value.type_name}{list(value.shape)}, {value.nbytes} bytes) "
                                f"does not match resource variable '{self.variable.shared_name}' "
                                f"({self.buffer.size} bytes, sized by its first ASSIGN_VARIABLE)")

    def value_tensor(self):  # type: ignore[no-untyped-def]
        """The tensor whose bytes move to or from the variable."""
        raise NotImplementedError
