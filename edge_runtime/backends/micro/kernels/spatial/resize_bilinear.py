"""RESIZE_BILINEAR (TFLM reference): float32 and int8, align_corners / half_pixel_centers.

float32: bit-exact with TFLM's float arithmetic: source coordinates in float32 as TFLM
computes them, then ``x00 * wy0 * wx0 + x10 * wy1 * wx0 + x01 * wy0 * wx1 + x11 * wy1 * wx1``
evaluated left to right in float32 (``wy1 = y - y0``, ``wy0 = 1 - wy1``, the same for x), plus
TFLM's rounding offset 0.0f (which turns -0 into +0). int8: TFLM's integer version: 10-bit fixed-point scales and coordinates,
weights of 20 fractional bits, then division by 2**20 rounding half away from zero
(TFLM's default double-rounding build). Both are four gathers (flat row * width + col
indices, precomputed) and a weighted sum, by chunks of output rows sized to the
workspace limit.
"""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.kernels.base import Chunking, Inputs, Kernel, OpContext, Outputs, Scratch, Workspace
from edge_runtime.backends.micro.kernels.spatial.common import I64, io_same_type, resize_options, resize_target


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
            one = np.float32(1.0)
            wy0, wy1 = (one - fy).astype(np.float32), fy
            wx0, wx1 = (one - fx).astype(np.float32), fx
            dt = np.dtype(np.float32)
        # per chunk of output rows: the four neighbours' flat (row * w + col) indices and weights
        self.chunk = Chunking.fit(oh, 0, lambda r: r * ow * c * (x.dtype.itemsize + 3 * 8), ctx.workspace_limit)
        self.parts = []
        for r0 in self.chunk.starts:
            r1 = min(oh, r0 + self.chunk.rows)
            taps = []
            if self.quantized:
                for rows, wy in ((y0, wy0), (y1, wy1)):
                    for cols, wx in ((x0, wx0), (x1, wx1)):
                        idx = (rows[r0:r1, None] * w + cols[None, :]).reshape(-1)
                        wgt = (wy[r0:r1, None] * wx[None, :]).reshape(-1, 1).astype(dt)
                        taps.append((idx, wgt))
            else:  # TFLM's term order (y0 x0, y1 x0, y0 x1, y1 x1), the y weight and the x weight apart
                for cols, wx in ((x0, wx0), (x1, wx1)):
                    for rows, wy in ((y0, wy0), (y1, wy1)):
                        idx = (rows[r0:r1, None] * w + cols[None, :]).reshape(-1)
                        wyk = np.repeat(wy[r0:r1], ow).reshape(-1, 1)
                        wxk = np.tile(wx, r1 - r0).reshape(-1, 1)
                        taps.append((idx, (wyk, wxk)))
            self.parts.append((r0, r1, taps))
        rows = self.chunk.rows * ow
        self.workspace = {"g8": ((rows, c), np.dtype(x.dtype)), "g": ((rows, c), dt), "acc": ((rows, c), dt)}
        if self.quantized:
            self.workspace["tmp"] = ((rows, c), I64)
        self.n, self.hw, self.c, self.ow = n, h * w, c, ow

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Per image and chunk: the flat input, the output rows and workspace views."""
        x = inputs[0].reshape(self.n, self.hw, self.c)
        y = outputs[0]
        self.steps = []
        for n in range(self.n):
            for r0, r1, taps in self.parts:
                k = (r1 - r0) * self.ow
                tmp = ws["tmp"][:k] if "tmp" in ws else None
                self.steps.append((x[n], y[n, r0:r1].reshape(k, self.c), taps, ws["g8"][:k], ws["g"][:k],
                                   ws["acc"][:k], tmp))

    def run(self) -> None:
        """Blend the four neighbours, chunk by chunk."""
        if not self.quantized:
            with np.errstate(over="ignore", invalid="ignore"):  # inf and NaN as in C, without warnings
                self._run_float()
            return
        for xn, yk, taps, g8, g, acc, tmp in self.steps:
            acc.fill(0)
            for idx, wgt in taps:
                xn.take(idx, axis=0, out=g8, mode="clip")  # (np.take leaks per call with out=)
                np.copyto(g, g8, casting="unsafe")
                g *= wgt
                acc += g
            if self.quantized:
                self._round(acc, tmp)
            np.copyto(yk, acc, casting="unsafe" if self.quantized else "same_kind")

    def _run_float(self) -> None:
        """float32: each term ``(x * wy) * wx``, summed left to right from the first term, + 0.0f."""
        for xn, yk, taps, _, g, acc, _ in self.steps:
            for i, (idx, (wy, wx)) in enumerate(taps):
                xn.take(idx, axis=0, out=g, mode="clip")
                g *= wy
                g *= wx
                if i == 0:
                    np.copyto(acc, g)
                else:
                    acc += g
            np.add(acc, np.float32(0.0), out=yk)  # TFLM adds its rounding offset (0.0f for float): -0 -> +0

    @staticmethod
    def _round(acc: np.ndarray, tmp: np.ndarray) -> None:
        """``acc / 2**20`` rounded half away from zero, in place (TFLM's double-rounding build)."""
        np.right_shift(acc, 63, out=tmp)  # -1 where negative (zero rounds to zero either way)
        acc += 1 << 19
        np.left_shift(tmp, 20, out=tmp)
        acc += tmp  # acc +- 2**19
        np.right_shift(tmp, 20, out=tmp)
        tmp &= (1 << 20) - 1
        acc += tmp  # truncation toward zero below
        acc >>= 20
