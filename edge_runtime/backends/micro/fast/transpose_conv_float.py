"""Compiled float32 TRANSPOSE_CONV in tflite-micro's summation order.

tflite-micro's float reference kernel (``reference_ops::TransposeConv``) zeroes the output, then scatters
``input * filter`` into it for input row, input column, input channel (ascending), filter row, filter column
and output channel, dropping the positions outside the output; then ``+ bias`` (only with a bias) and the
clamp. So each output value is ``0.0f`` plus its terms in the order of (input row, input column, input
channel), one float32 rounding per product and per sum, no fused multiply-add.

The loop below scatters in that order (the output channels, one independent sum each, are the vectorized
inner loop); numba compiles without fast-math, so LLVM neither reassociates the sums nor contracts a product
and a sum into an FMA.
"""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.fast.jit import kernel


@kernel
def transpose_conv_float(x, wt, bias, g, lo, hi, acc, y):  # type: ignore[no-untyped-def]
    """``y`` (N, Ho, Wo, Cout) = TRANSPOSE_CONV of ``x`` (N, H, W, Cin) by ``wt`` (kh, kw, Cin, Cout), float32.

    ``g`` = (sh, sw, pt, pl, has_bias); ``acc`` (Ho, Wo, Cout) float32 holds the sums of one batch (so ``y``
    is written only at the end, as ``clamp(sum + bias)``)."""
    sh, sw, pt, pl, has_bias = g[0], g[1], g[2], g[3], g[4]
    n_, h, wd, cin = x.shape
    kh, kw = wt.shape[0], wt.shape[1]
    ho, wo, cout = y.shape[1], y.shape[2], y.shape[3]
    af = acc.reshape(-1)
    zero = np.float32(0.0)
    for n in range(n_):
        for j in range(af.shape[0]):
            af[j] = zero
        for iy in range(h):
            for ix in range(wd):
                xr = x[n, iy, ix]
                for fy in range(kh):
                    oy = iy * sh - pt + fy
                    if oy < 0 or oy >= ho:
                        continue
                    for fx in range(kw):
                        ox = ix * sw - pl + fx
                        if ox < 0 or ox >= wo:
                            continue
                        dst = acc[oy, ox]
                        for ci in range(cin):
                            v = xr[ci]
                            wr = wt[fy, fx, ci]
                            for co in range(cout):
                                dst[co] = dst[co] + v * wr[co]
        for oy in range(ho):
            for ox in range(wo):
                src = acc[oy, ox]
                out = y[n, oy, ox]
                for co in range(cout):
                    v = src[co]
                    if has_bias:
                        v = v + bias[co]
                    if v < lo:
                        v = lo
                    if hi < v:
                        v = hi
                    out[co] = v
