"""Compiled int8 TRANSPOSE_CONV, as TFLM's reference kernel.

Every input pixel, offset by the input zero point, is multiplied by each tap's (cout, cin) weights
and added into an int32 canvas the size of the full scatter (TFLM's int32 scratch accumulator;
positions outside the output window are dropped when the window is cut). Each output value of the
window is then requantized per output channel (:func:`requant.requant`, bias folded in), offset and
clamped. Each tap adds the input channels' products along the output channels (int32 runs), or, with
fewer than 8 output channels, dot products along the input channels.
"""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.fast.jit import kernel
from edge_runtime.backends.micro.fast.requant import requant


@kernel
def transpose_conv(x, w2, w3, q, xv, canvas, y):  # type: ignore[no-untyped-def]
    """``x`` (N, H, W, cin) int8 into ``y`` (N, Ho, Wo, cout) int8.

    ``w2`` (kh * kw * cout, cin) and ``w3`` (kh * kw, cin, cout) int32: the weights, tap-major; ``q``: :func:`requant.pack` of the
    per-channel Requantizer with the geometry (sh, sw, pt, pl, kh, kw, input zero point) in row 5;
    ``xv`` (cin,) int32 and ``canvas`` (fh, fw, cout) int32 workspaces."""
    zp, lo, hi = q[5, 0], q[5, 1], q[5, 2]
    sh, sw, pt, pl, kh, kw, zx = q[5, 3], q[5, 4], q[5, 5], q[5, 6], q[5, 7], q[5, 8], q[5, 9]
    n_, h, wd, cin = x.shape
    ho, wo, cout = y.shape[1], y.shape[2], y.shape[3]
    cf = canvas.reshape(-1)
    fw = canvas.shape[1]
    for n in range(n_):
        for j in range(cf.shape[0]):
            cf[j] = 0
        for iy in range(h):
            for ix in range(wd):
                xr = x[n, iy, ix]
                for ci in range(cin):
                    xv[ci] = np.int32(xr[ci]) - zx
                for ky in range(kh):
                    for kx in range(kw):
                        base = ((iy * sh + ky) * fw + ix * sw + kx) * cout
                        t = ky * kw + kx
                        if cout >= 8:  # (runs along the output channels: no horizontal sums)
                            dst = cf[base:base + cout]
                            wt = w3[t]
                            for ci in range(cin):
                                xc = xv[ci]
                                wr = wt[ci]
                                for co in range(cout):
                                    u = np.uint64(co)
                                    dst[u] += xc * wr[u]
                        else:  # (few output channels: dot products along the input channels)
                            for co in range(cout):
                                wr = w2[t * cout + co]
                                s = np.int32(0)
                                for ci in range(cin):
                                    s += xv[ci] * wr[ci]
                                cf[base + co] += s
        for oy in range(ho):
            for ox in range(wo):
                src = canvas[pt + oy, pl + ox]
                dst = y[n, oy, ox]
                for co in range(cout):
                    dst[co] = requant(src[co], q, co, zp, lo, hi)


#: Most input channels whose zero-point-offset sums stay exact in float32 (|(x - zx) * w| <= 255 * 128).
MAX_GEMM_CIN = (1 << 24) // (255 * 128)


@kernel
def transpose_conv_gemm(x, wmat, q, rows, xf, prod, canvas, y):  # type: ignore[no-untyped-def]
    """As :func:`transpose_conv`, with every (pixel, tap, output channel) product of a chunk of ``rows`` input
    rows from one float32 BLAS product: ``xf`` (rows * W, cin) = input - zero point, ``wmat`` (cin,
    kh * kw * cout) float32, ``prod`` (rows * W, kh * kw * cout) float32 workspace. Each product sum has
    ``cin`` terms of magnitude at most 255 * 128, so with ``cin <= MAX_GEMM_CIN`` it is an exact integer in
    float32, whatever the summation order; the taps are then added into the int32 canvas."""
    zp, lo, hi = q[5, 0], q[5, 1], q[5, 2]
    sh, sw, pt, pl, kh, kw, zx = q[5, 3], q[5, 4], q[5, 5], q[5, 6], q[5, 7], q[5, 8], q[5, 9]
    n_, h, wd, cin = x.shape
    ho, wo, cout = y.shape[1], y.shape[2], y.shape[3]
    cf = canvas.reshape(-1)
    fw = canvas.shape[1]
    zf = np.float32(zx)
    for n in range(n_):
        for j in range(cf.shape[0]):
            cf[j] = 0
        for r0 in range(0, h, rows):
            r = min(rows, h - r0)
            m = r * wd
            for i in range(m):
                xr = x[n, r0 + i // wd, i % wd]
                for ci in range(cin):
                    xf[i, ci] = np.float32(xr[ci]) - zf
            np.dot(xf[:m], wmat, prod[:m])
            for i in range(m):
                iy, ix = r0 + i // wd, i % wd
                pr = prod[i]
                for ky in range(kh):
                    for kx in range(kw):
                        base = np.uint64(((iy * sh + ky) * fw + ix * sw + kx) * cout)
                        t = (ky * kw + kx) * cout
                        for co in range(cout):
                            cf[base + np.uint64(co)] += np.int32(pr[t + co])
        for oy in range(ho):
            for ox in range(wo):
                src = canvas[pt + oy, pl + ox]
                dst = y[n, oy, ox]
                for co in range(cout):
                    dst[co] = requant(src[co], q, co, zp, lo, hi)
