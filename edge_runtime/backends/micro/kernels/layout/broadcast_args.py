"""BROADCAST_ARGS: the broadcast shape of two shape vectors (int32 or int64, constant or computed)."""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.kernels.base import Inputs, Kernel, OpContext, Outputs, Scratch, Workspace
from edge_runtime.backends.micro.kernels.layout.common import INDEX, fail_at_run, require_type, same_shape


class BroadcastArgs(Kernel):
    """BROADCAST_ARGS: output[i] is the non-1 of the two (right-aligned) dimensions."""

    max_version = 1

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        a = require_type(ctx, ctx.input(0), INDEX, "shape1")
        b = require_type(ctx, ctx.input(1), (a.type_name,), "shape2")
        y = require_type(ctx, ctx.output(0), (a.type_name,), "output")
        if len(a.shape) != 1 or len(b.shape) != 1:
            raise ctx.fail("both shapes must be vectors")
        n = max(a.shape[0], b.shape[0])
        same_shape(ctx, y.shape, (n,))
        self.n, self.na, self.nb = n, a.shape[0], b.shape[0]
        dt = a.dtype
        self.workspace = {"a": ((n,), dt), "b": ((n,), dt), "one": ((n,), np.dtype(bool)),
                          "bad": ((n,), np.dtype(bool))}

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Views and right-aligned staging vectors."""
        self.a_in, self.b_in, self.y = inputs[0], inputs[1], outputs[0]
        self.a, self.b, self.one, self.bad = ws["a"], ws["b"], ws["one"], ws["bad"]
        self.a_tail, self.b_tail = self.a[self.n - self.na:], self.b[self.n - self.nb:]
        self.a_head, self.b_head = self.a[:self.n - self.na], self.b[:self.n - self.nb]

    def run(self) -> None:
        """Right-align both shapes (missing dimensions are 1) and take the non-1 entries."""
        self.a_head.fill(1)
        self.b_head.fill(1)
        np.copyto(self.a_tail, self.a_in)
        np.copyto(self.b_tail, self.b_in)
        np.not_equal(self.a, self.b, out=self.bad)
        np.not_equal(self.a, 1, out=self.one)
        self.bad &= self.one
        np.not_equal(self.b, 1, out=self.one)
        self.bad &= self.one
        if self.bad.any():
            raise fail_at_run(self, "the shapes are not broadcast-compatible")
        np.copyto(self.y, self.a)
        np.equal(self.a, 1, out=self.one)
        np.copyto(self.y, self.b, where=self.one)
