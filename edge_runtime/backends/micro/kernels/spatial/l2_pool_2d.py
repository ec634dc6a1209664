"""L2_POOL_2D, float32 (TFLM reference): sqrt of the mean of squares over the valid positions
of each window (padding not counted), then the fused activation.

Bit-exact with TFLM's float arithmetic: per output ``sum += x * x`` in float32 from 0.0f over the
window taps in row-major order (padding squares to +0.0, which changes no sum), ``sqrt(sum / count)``
in float32, then the clamp to the activation range with finite ends ([-FLT_MAX, FLT_MAX] without
an activation, so an overflowing sum saturates as in TFLM)."""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro import options as opt
from edge_runtime.backends.micro.fixedpoint import CLIP
from edge_runtime.backends.micro.kernels.base import (
    Inputs, Kernel, OpContext, Outputs, Scratch, Workspace, compute_padding, float_activation_range, require_type,
)
F32 = np.dtype(np.float32)


class L2Pool2D(Kernel):
    """L2_POOL_2D over NHWC."""

    max_version = 1

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        o = opt.pool2d(ctx.op)
        x = require_type(ctx, ctx.input(0), ("FLOAT32",), "input")
        y = require_type(ctx, ctx.output(0), ("FLOAT32",), "output")
        if len(x.shape) != 4 or len(y.shape) != 4:
            raise ctx.fail("input and output must be 4-D (NHWC)")
        self.n, h, w, c = x.shape
        yn, ho, wo, yc = y.shape
        if (yn, yc) != (self.n, c):
            raise ctx.fail("pooling cannot change the batch or channel count")
        kh, kw, sh, sw = o["filter_h"], o["filter_w"], o["stride_h"], o["stride_w"]
        pt, pb = compute_padding(ctx, o["padding"], h, kh, sh, 1, ho)
        pl, pr = compute_padding(ctx, o["padding"], w, kw, sw, 1, wo)
        oy, ox = np.arange(ho) * sh - pt, np.arange(wo) * sw - pl
        cy = np.minimum(oy + kh, h) - np.maximum(oy, 0)
        cx = np.minimum(ox + kw, w) - np.maximum(ox, 0)
        cnt = cy[:, None] * cx[None, :]
        if np.any(cnt <= 0):
            raise ctx.fail("a pooling window lies entirely in the padding")
        self.count = np.ascontiguousarray(np.broadcast_to(cnt[:, :, None], (ho, wo, c)), dtype=np.float32)
        lo, hi = float_activation_range(ctx, o["activation"])  # (finite ends: TFLM's clamp)
        self.lo, self.hi = np.float32(lo), np.float32(hi)
        self.geom = (h, w, c, ho, wo, kh, kw, sh, sw, pt, pl)
        self.workspace = {"band": ((h + pt + pb, w + pl + pr, c), F32), "sq": ((h, w, c), F32),
                          "acc": ((ho, wo, c), F32)}

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Tap views over the zero-padded band of squares."""
        h, w, _c, ho, wo, kh, kw, sh, sw, pt, pl = self.geom
        self.x, self.y = inputs[0], outputs[0]
        self.band, self.sq, self.acc = ws["band"], ws["sq"], ws["acc"]
        self.interior = self.band[pt:pt + h, pl:pl + w]
        # one strided view of the band per filter tap: summing them is the window sum
        self.taps = [self.band[ky:ky + (ho - 1) * sh + 1:sh, kx:kx + (wo - 1) * sw + 1:sw]
                     for ky in range(kh) for kx in range(kw)]

    def run(self) -> None:
        """Pool every image."""
        with np.errstate(over="ignore", invalid="ignore"):  # inf and NaN as in C, without warnings
            self._pool()

    def _pool(self) -> None:
        """The float32 passes (see :meth:`run`)."""
        self.band.fill(0.0)
        for n in range(self.n):
            np.copyto(self.sq, self.x[n])
            np.square(self.sq, out=self.sq)  # (in place on a strided view, numpy would copy)
            np.copyto(self.interior, self.sq)
            self.acc.fill(0.0)
            for tap in self.taps:
                self.acc += tap
            self.acc /= self.count
            np.sqrt(self.acc, out=self.acc)
            CLIP(self.acc, self.lo, self.hi, out=self.y[n])
