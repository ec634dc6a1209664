"""RESIZE_BILINEAR (TFLM reference): float32 and int8, align_corners / half_pixel_centers.

float32: source coordinates in float32 as TFLM computes them, the four-neighbour blend
in float64. int8: TFLM's integer version: 10-bit fixed-point scales and coordinates,
weights of 20 fractional bits, then division by 2**20 rounding half away from zero
(TFLM's default double-rounding build). Both are four gathers and a weighted sum.
"""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.kernels.base import Inputs, Kernel, OpContext, Outputs, Scratch, Workspace
from edge_runtime.backends.micro.kernels.spatial.common import F64, I64, io_same_type, resize_options, resize_target


def _cdiv(a: np.ndarray, b: int) -> np.ndarray:
    """C integer division (truncation toward zero)."""
    q = np.abs(a) // b
    return np.where(a < 0, -q, q)


def float_coords(out_size: int, in_size: int, align: bool, hpc: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lower, upper, fraction) per output position, as TFLM's ``ComputeInterpolationValues``."""
    f = np.float32
    scale = f(in_size) / f(out_size)
    if align and out_size > 1:
        scale = f(in_size - 1) / f(out_size - 1)
    v = np.arange(out_size, dtype=np.float32)
    pos = (v + f(0.5)) * scale - f(0.5) if hpc else v * scale
    lo = np.maximum(np.floor(pos).astype(np.int64), 0)
    hi = np.minimum(np.ceil(pos).astype(np.int64), in_size - 1)
    frac = (pos - lo.astype(np.float32)).astype(np.float32)
    return lo, hi, frac


def int_coords(out_size: int, in_size: int, align: bool, hpc: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lower, upper, fraction in 1/1024) per output position, as ``ComputeInterpolationValuesInteger``."""
    scale = ((1 << 10) * in_size + out_size // 2) // out_size
    if align and out_size > 1:
        scale = ((1 << 10) * (in_size - 1) + (out_size - 1) // 2) // (out_size - 1)
    v = np.arange(out_size, dtype=np.int64)
    pos = v * scale + scale // 2 - (1 << 9) if hpc else v * scale
    lo = np.maximum(_cdiv(pos, 1 << 10), 0)
    hi = np.minimum(_cdiv(pos + (1 << 10) - 1, 1 << 10), in_size - 1)
    return lo, hi, pos - (1 << 10) * lo


class ResizeBilinear(Kernel):
    """RESIZE_BILINEAR on NHWC."""

    max_version = 4

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        x, y = io_same_type(ctx, ("FLOAT32", "INT8"))
        oh, ow = resize_target(ctx, x, y)
        o = resize_options(ctx.op)
        a, hp = o["align_corners"], o["half_pixel_centers"]
        n, h, w, c = x.shape
        self.quantized = x.type_name == "INT8"
        if self.quantized:
            y0, y1, fy = int_coords(oh, h, a, hp)
            x0, x1, fx = int_coords(ow, w, a, hp)
            one = 1 << 10
            wy0, wy1 = one - fy, fy
            wx0, wx1 = one - fx, fx
            dt = I64
        else:
            y0, y1, fy = float_coords(oh, h, a, hp)
            x0, x1, fx = float_coords(ow, w, a, hp)
            wy0, wy1 = (1 - fy).astype(np.float64), fy.astype(np.float64)
            wx0, wx1 = (1 - fx).astype(np.float64), fx.astype(np.float64)
            dt = F64
        self.ys, self.xs = (y0, y1), (x0, x1)
        # weights per (row choice, column choice), shaped to broadcast over (N, oh, ow, C)
        self.weights = [[(wy[:, None] * wx[None, :])[:, :, None].astype(dt) for wx in (wx0, wx1)]
                        for wy in (wy0, wy1)]
        # the input widened once, so that gathers and products need no casting
        self.workspace = {"xw": ((n, h, w, c), dt), "band": ((n, oh, w, c), dt), "g": ((n, oh, ow, c), dt),
                          "acc": ((n, oh, ow, c), dt)}
        if self.quantized:
            self.workspace["tmp"] = ((n, oh, ow, c), I64)

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Views."""
        self.x, self.y = inputs[0], outputs[0]
        self.xw, self.band, self.g, self.acc = ws["xw"], ws["band"], ws["g"], ws["acc"]
        self.tmp = ws.get("tmp")

    def run(self) -> None:
        """Blend the four neighbours."""
        np.copyto(self.xw, self.x, casting="unsafe")
        self.acc.fill(0)
        for i, rows in enumerate(self.ys):
            self.xw.take(rows, axis=1, out=self.band, mode="clip")  # (np.take leaks per call with out=)
            for j, cols in enumerate(self.xs):
                self.band.take(cols, axis=2, out=self.g, mode="clip")
                self.g *= self.weights[i][j]
                self.acc += self.g
        if not self.quantized:
            np.copyto(self.y, self.acc, casting="same_kind")
            return
        acc, tmp = self.acc, self.tmp
        np.right_shift(acc, 63, out=tmp)  # -1 where negative (zero rounds to zero either way)
        acc += 1 << 19
        np.left_shift(tmp, 20, out=tmp)
        acc += tmp  # acc +- 2**19
        np.right_shift(tmp, 20, out=tmp)
        tmp &= (1 << 20) - 1
        acc += tmp  # truncation toward zero below
        acc >>= 20
        np.copyto(self.y, acc, casting="unsafe")
