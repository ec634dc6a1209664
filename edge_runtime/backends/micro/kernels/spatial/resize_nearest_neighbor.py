"""RESIZE_NEAREST_NEIGHBOR (TFLM reference): float32, int8, int16, with align_corners and
half_pixel_centers. Source rows and columns are computed once in float32 as TFLM does
(scale, offset, floor or round half away from zero, clamped); the op is one gather of
pixels per image."""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.kernels.base import Inputs, Kernel, OpContext, Outputs, Scratch, Workspace
from edge_runtime.backends.micro.kernels.spatial.common import io_same_type, resize_options, resize_target

TYPES = ("FLOAT32", "INT8", "INT16")


def nearest_index(out_size: int, in_size: int, align_corners: bool, half_pixel_centers: bool) -> np.ndarray:
    """TFLite's ``GetNearestNeighbor`` for every output position."""
    f = np.float32
    if align_corners and out_size > 1:
        scale = f(in_size - 1) / f(out_size - 1)
    else:
        scale = f(in_size) / f(out_size)
    offset = f(0.5) if half_pixel_centers else f(0.0)
    v = (np.arange(out_size, dtype=np.float32) + offset) * scale
    if align_corners:
        idx = np.sign(v) * np.floor(np.abs(v) + f(0.5))
    else:
        idx = np.floor(v)
    idx = np.minimum(idx.astype(np.int64), in_size - 1)
    if half_pixel_centers:
        idx = np.maximum(idx, 0)
    return idx


class ResizeNearestNeighbor(Kernel):
    """RESIZE_NEAREST_NEIGHBOR on NHWC."""

    max_version = 4

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        x, y = io_same_type(ctx, TYPES)
        oh, ow = resize_target(ctx, x, y)
        o = resize_options(ctx.op)
        n, h, w, c = x.shape
        rows = nearest_index(oh, h, o["align_corners"], o["half_pixel_centers"])
        cols = nearest_index(ow, w, o["align_corners"], o["half_pixel_centers"])
        self.flat = (rows[:, None] * w + cols[None, :]).reshape(-1)  # source pixel of each output pixel
        self.n, self.hw, self.ohw, self.c = n, h * w, oh * ow, c

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Per image: the input and output as (pixels, channels)."""
        x = inputs[0].reshape(self.n, self.hw, self.c)
        y = outputs[0].reshape(self.n, self.ohw, self.c)
        self.pairs = [(x[i], y[i]) for i in range(self.n)]

    def run(self) -> None:
        """One gather of pixels per image."""
        for xn, yn in self.pairs:
            xn.take(self.flat, axis=0, out=yn, mode="clip")  # (np.take leaks per call with out=)
