"""DYNAMIC_UPDATE_SLICE: the operand with a block overwritten by the update at (clamped) start indices."""
from __future__ import annotations

import numpy as np

from edge_runtime.arena.traits import OpMemory
from edge_runtime.formats.tflite import Operator, SubGraph, TFLiteModel
from edge_runtime.backends.micro.kernels.base import Inputs, Kernel, OpContext, Outputs, Scratch, Workspace
from edge_runtime.backends.micro.kernels.layout.common import (
    F32, I8, I16, I32, INDEX, io, max_rank, maybe_const_ints, require_type, same_shape,
)

TYPES = (F32, I8, I16, I32)
MAX_DIMS = 6


class DynamicUpdateSlice(Kernel):
    """DYNAMIC_UPDATE_SLICE (inputs: operand, update, start indices int32/int64); may run in place."""

    max_version = 4
    inplace_ok = True

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        x, y = io(ctx, TYPES)
        u = require_type(ctx, ctx.input(1), (x.type_name,), "update")
        s = ctx.input(2)
        start = maybe_const_ints(ctx, s, "start indices", INDEX)
        rank = len(x.shape)
        if len(s.shape) != 1 or s.shape[0] != rank or len(u.shape) != rank:
            raise ctx.fail("start indices and update must have one entry / dimension per operand dimension")
        if any(a > b for a, b in zip(u.shape, x.shape)):
            raise ctx.fail(f"update {tuple(u.shape)} is larger than operand {tuple(x.shape)}")
        same_shape(ctx, y.shape, x.shape)
        self.whole = u.num_elements == x.num_elements
        if not self.whole:
            max_rank(ctx, x, MAX_DIMS, "operand")
        self.limits = [int(a) - int(b) for a, b in zip(x.shape, u.shape)]
        self.ushape = tuple(int(d) for d in u.shape)
        self.start = None if start is None else self.clamped(start.tolist())

    def clamped(self, start: list[int]) -> tuple[slice, ...]:
        """The destination block of the update: every start clamped to [0, operand - update]."""
        idx = []
        for s, lim, n in zip(start, self.limits, self.ushape):
            s = min(max(0, s), lim)
            idx.append(slice(s, s + n))
        return tuple(idx)

    @staticmethod
    def op_memory(model: TFLiteModel, subgraph: SubGraph, op: Operator, workspace_limit: int) -> OpMemory:
        """The output may take over the operand's buffer."""
        t = subgraph.tensors[op.inputs[0]]
        return OpMemory() if t.is_constant else OpMemory(inplace_input=0)

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Views; the operand copy is skipped when the output is the operand's buffer."""
        self.x, self.u, self.s, self.y = inputs[0], inputs[1], inputs[2], outputs[0]
        self.in_place = np.shares_memory(self.x, self.y)
        if self.whole:
            self.flat_u, self.flat_y = self.u.reshape(-1), self.y.reshape(-1)
        elif self.start is not None:
            self.dst = self.y[self.start]

    def run(self) -> None:
        """Copy the operand (unless in place), then the update into its block."""
        if self.whole:
            np.copyto(self.flat_y, self.flat_u)
            return
        if not self.in_place:
            np.copyto(self.y, self.x)
        if self.u.size == 0:
            return
        dst = self.dst if self.start is not None else self.y[self.clamped(self.s.tolist())]
        np.copyto(dst, self.u)
