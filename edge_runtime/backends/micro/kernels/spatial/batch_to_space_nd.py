"""BATCH_TO_SPACE_ND (3-D or 4-D, constant block and crops): batch slices are interleaved
into space on a workspace canvas (one copy through a transposed view), then cropped."""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.kernels.base import Inputs, Kernel, OpContext, Outputs, Scratch, Workspace
from edge_runtime.backends.micro.kernels.spatial.common import block_layout, io_same_type

TYPES = ("FLOAT32", "INT8")


class BatchToSpaceND(Kernel):
    """BATCH_TO_SPACE_ND."""

    max_version = 4

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        x, y = io_same_type(ctx, TYPES)
        (bh, bw), crops, (n, h, w, c) = block_layout(ctx, x)
        if n % (bh * bw):
            raise ctx.fail(f"batch {n} does not divide by the block {bh}x{bw}")
        no = n // (bh * bw)
        ho = h * bh - crops[0, 0] - crops[0, 1]
        wo = w * bw - crops[1, 0] - crops[1, 1]
        expect = (no, ho, wo, c) if len(x.shape) == 4 else (no, ho, c)
        if ho < 0 or wo < 0 or tuple(y.shape) != expect:
            raise ctx.fail(f"output shape {y.shape} is not {expect}")
        self.src_shape = (bh, bw, no, h, w, c)
        self.canvas_shape = (no, h, bh, w, bw, c)
        self.crop = (slice(None), slice(int(crops[0, 0]), int(crops[0, 0]) + ho),
                     slice(int(crops[1, 0]), int(crops[1, 0]) + wo))
        self.out4 = (no, ho, wo, c)
        self.workspace = {"canvas": ((no, h * bh, w * bw, c), np.dtype(x.dtype))}

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Views."""
        canvas = ws["canvas"]
        self.src = inputs[0].reshape(self.src_shape).transpose(2, 3, 0, 4, 1, 5)
        self.mid = canvas.reshape(self.canvas_shape)
        self.window = canvas[self.crop]
        self.y = outputs[0].reshape(self.out4)

    def run(self) -> None:
        """Interleave, then crop."""
        np.copyto(self.mid, self.src)
        np.copyto(self.y, self.window)
