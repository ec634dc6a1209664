"""SPACE_TO_BATCH_ND (3-D or 4-D, constant block and paddings): the input is padded on a
workspace canvas, whose blocks become batches through one transposed-view copy.

The pad value is TFLite's (the output zero point for int8, 0 for float32). tflite-micro
pads with its ``output_offset`` parameter, which its kernel never sets (uninitialised
memory), so only unpadded layouts have a defined tflite-micro result to match."""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.kernels.base import Inputs, Kernel, OpContext, Outputs, Scratch, Workspace, qparams
from edge_runtime.backends.micro.kernels.spatial.common import block_layout, io_same_type

TYPES = ("FLOAT32", "INT8")


class SpaceToBatchND(Kernel):
    """SPACE_TO_BATCH_ND."""

    max_version = 4

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        x, y = io_same_type(ctx, TYPES)
        (bh, bw), pads, (n, h, w, c) = block_layout(ctx, x)
        hp, wp = h + pads[0, 0] + pads[0, 1], w + pads[1, 0] + pads[1, 1]
        if hp % bh or wp % bw:
            raise ctx.fail(f"padded size {hp}x{wp} does not divide by the block {bh}x{bw}")
        ho, wo = hp // bh, wp // bw
        expect = (n * bh * bw, ho, wo, c) if len(x.shape) == 4 else (n * bh * bw, ho, c)
        if tuple(y.shape) != expect:
            raise ctx.fail(f"output shape {y.shape} is not {expect}")
        self.x4, self.dst_shape = (n, h, w, c), (bh, bw, n, ho, wo, c)
        self.canvas_shape = (n, ho, bh, wo, bw, c)
        self.inner = (slice(None), slice(int(pads[0, 0]), int(pads[0, 0]) + h),
                      slice(int(pads[1, 0]), int(pads[1, 0]) + w))
        self.padded = bool(np.any(pads))
        self.pad_value = qparams(y)[1] if x.type_name == "INT8" else 0
        self.workspace = {"canvas": ((n, int(hp), int(wp), c), np.dtype(x.dtype))}

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Views."""
        canvas = ws["canvas"]
        self.canvas = canvas
        self.x = inputs[0].reshape(self.x4)
        self.interior = canvas[self.inner]
        self.src = canvas.reshape(self.canvas_shape).transpose(2, 4, 0, 1, 3, 5)
        self.dst = outputs[0].reshape(self.dst_shape)

    def run(self) -> None:
        """Pad, then split blocks into batches."""
        if self.padded:
            self.canvas.fill(self.pad_value)
        np.copyto(self.interior, self.x)
        np.copyto(self.dst, self.src)
