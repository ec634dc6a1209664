"""SPACE_TO_DEPTH (NHWC): the inverse of DEPTH_TO_SPACE; one copy through a transposed view."""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.kernels.base import Inputs, Kernel, OpContext, Outputs, Scratch, Workspace
from edge_runtime.backends.micro.kernels.spatial.common import block_size, io_same_type

TYPES = ("FLOAT32", "INT8")


class SpaceToDepth(Kernel):
    """SPACE_TO_DEPTH."""

    max_version = 2

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        x, y = io_same_type(ctx, TYPES)
        b = block_size(ctx.op)
        if len(x.shape) != 4 or b < 1 or x.shape[1] % b or x.shape[2] % b:
            raise ctx.fail(f"needs a 4-D input whose height and width divide by block_size {b} (shape {x.shape})")
        n, h, w, c = x.shape
        if tuple(y.shape) != (n, h // b, w // b, c * b * b):
            raise ctx.fail(f"output shape {y.shape} is not {(n, h // b, w // b, c * b * b)}")
        self.src_shape, self.dst_shape = (n, h // b, b, w // b, b, c), (n, h // b, w // b, b, b, c)

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Views."""
        self.src = inputs[0].reshape(self.src_shape).transpose(0, 1, 3, 2, 4, 5)
        self.dst = outputs[0].reshape(self.dst_shape)

    def run(self) -> None:
        """Copy."""
        np.copyto(self.dst, self.src)
