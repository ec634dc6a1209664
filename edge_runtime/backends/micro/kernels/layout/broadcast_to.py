"""BROADCAST_TO: repeat the input to a constant target shape (numpy broadcasting rules)."""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.kernels.base import Inputs, Kernel, OpContext, Outputs, Scratch, Workspace
from edge_runtime.backends.micro.kernels.layout.common import INDEX, const_ints, io, same_shape
from edge_runtime.formats.tflite import TENSOR_TYPES

TYPES = tuple(name for name, dt in TENSOR_TYPES.values() if dt is not None)
MAX_DIMS = 5


class BroadcastTo(Kernel):
    """BROADCAST_TO with a constant int32/int64 shape, up to 5 dimensions; any fixed-size type."""

    max_version = 3

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        x, y = io(ctx, TYPES)
        s = ctx.input(1)
        shape = const_ints(ctx, s, "shape", INDEX)
        if len(s.shape) != 1:
            raise ctx.fail("the shape must be a vector")
        if len(x.shape) > MAX_DIMS or shape.size > MAX_DIMS:
            raise ctx.fail(f"TFLM's BROADCAST_TO handles at most {MAX_DIMS} dimensions")
        if shape.size < len(x.shape):
            raise ctx.fail("the target shape has fewer dimensions than the input")
        ext = shape.size - len(x.shape)
        for i, d in enumerate(x.shape):
            if d != 1 and d != shape[ext + i]:
                raise ctx.fail(f"input shape {tuple(x.shape)} does not broadcast to {shape.tolist()}")
        same_shape(ctx, y.shape, shape.tolist())
        self.src_shape = (1,) * ext + tuple(x.shape)

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Input seen with leading ones."""
        self.x, self.y = inputs[0].reshape(self.src_shape), outputs[0]

    def run(self) -> None:
        """Broadcasting copy."""
        np.copyto(self.y, self.x)
