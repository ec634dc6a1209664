"""ARG_MAX along one constant int32 axis: float32 or int8 input, int32 output (what TFLM's
kernel accepts). Ties give the first index, as TFLM's strict comparison does."""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.kernels.base import (
    Inputs, Kernel, OpContext, Outputs, Scratch, Workspace, require_type,
)
from edge_runtime.backends.micro.kernels.spatial.common import I64, constant_ints


class ArgMax(Kernel):
    """ARG_MAX."""

    max_version = 3
    find = staticmethod(np.argmax)

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        if len(ctx.op.inputs) != 2:
            raise ctx.fail("takes 2 inputs (data, axis)")
        x = require_type(ctx, ctx.input(0), ("FLOAT32", "INT8"), "input")
        y = require_type(ctx, ctx.output(0), ("INT32",), "output")
        axis = constant_ints(ctx, 1, "axis")
        rank = len(x.shape)
        if axis.size != 1 or not -rank <= int(axis[0]) < rank:
            raise ctx.fail(f"axis {axis.tolist()} must be one value in [-{rank}, {rank})")
        self.axis = int(axis[0]) % rank
        expect = tuple(s for d, s in enumerate(x.shape) if d != self.axis)
        if tuple(y.shape) != expect:
            raise ctx.fail(f"output shape {y.shape} is not {expect}")
        if x.num_elements == 0:
            raise ctx.fail("empty input tensors are not supported")
        self.xshape = tuple(x.shape)
        self.workspace = {"idx": (expect, I64)}
        self.last = self.axis == rank - 1
        if not self.last:  # numpy's arg reductions copy the input unless the axis is the last one
            self.workspace["xt"] = (expect + (x.shape[self.axis],), np.dtype(x.dtype))

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Views."""
        x = inputs[0].reshape(self.xshape)
        self.y, self.idx = outputs[0], ws["idx"]
        self.src = x if self.last else np.moveaxis(x, self.axis, -1)
        self.x = x if self.last else ws["xt"]

    def run(self) -> None:
        """Index of the extreme value (along the last axis of a copy with the axis moved last)."""
        if not self.last:
            np.copyto(self.x, self.src)
        self.find(self.x, axis=-1, out=self.idx)
        np.copyto(self.y, self.idx, casting="unsafe")
