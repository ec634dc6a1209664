"""GATHER: pick slices of the input along an axis by int32 positions (constant or computed at run time).

float32 and int8 data as tflite-micro; int32 data (positions picked by positions) as LiteRT, which runs it
(tflite-micro refuses it: the converter refuses it on TFLite Micro profiles, micro runs it for LiteRT ones).
"""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.kernels.base import Inputs, Kernel, OpContext, Outputs, Scratch, Workspace
from edge_runtime.backends.micro.kernels.layout.common import (
    F32, I8, I32, INDEX32, fail_at_run, io, option, prod, require_type, same_shape,
)

TYPES = (F32, I8, I32)


class Gather(Kernel):
    """GATHER with ``axis`` and ``batch_dims`` (GatherOptions)."""

    max_version = 7

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        x, y = io(ctx, TYPES)
        c = require_type(ctx, ctx.input(1), INDEX32, "positions")
        rank, crank = len(x.shape), len(c.shape)
        axis = int(option(ctx.op, 0, "i", 0))
        batch = int(option(ctx.op, 1, "i", 0))
        axis = axis + rank if axis < 0 else axis
        batch = batch + crank if batch < 0 else batch
        if not 0 <= axis < rank:
            raise ctx.fail(f"axis {axis} is out of range for rank {rank}")
        if not (0 <= batch <= axis and batch < rank and batch <= crank):
            raise ctx.fail(f"batch_dims {batch} is invalid for axis {axis}, input rank {rank}, positions rank {crank}")
        if tuple(x.shape[:batch]) != tuple(c.shape[:batch]):
            raise ctx.fail("the batch dimensions of the input and the positions differ")
        xs, cs = tuple(x.shape), tuple(c.shape)
        same_shape(ctx, y.shape, xs[:axis] + cs[batch:] + xs[axis + 1:])
        self.batch = prod(xs[:batch])
        self.x4 = (self.batch, prod(xs[batch:axis]), xs[axis], prod(xs[axis + 1:]))
        self.c2 = (self.batch, prod(cs[batch:]))
        self.axis_size = xs[axis]
        if c.data is not None and c.num_elements:
            v = c.array()
            if v.min() < 0 or v.max() >= self.axis_size:
                raise ctx.fail(f"a constant position is outside [0, {self.axis_size})")

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Views as (batch, outer, axis, inner) and (batch, coords)."""
        b, outer, _, inner = self.x4
        self.x = inputs[0].reshape(self.x4)
        self.c = inputs[1].reshape(self.c2)
        self.y = outputs[0].reshape(b, outer, self.c2[1], inner)
        self.pairs = [(self.x[i], self.c[i], self.y[i]) for i in range(b)]

    def run(self) -> None:
        """Check the positions, then one ``take`` per batch."""
        if self.c.size and (self.c.min() < 0 or self.c.max() >= self.axis_size):
            raise fail_at_run(self, f"a position is outside [0, {self.axis_size})")
        for x, c, y in self.pairs:
            np.take(x, c, axis=1, out=y, mode="clip")
