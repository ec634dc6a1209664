"""Compiled float32 CONV_2D and DEPTHWISE_CONV_2D in tflite-micro's summation order.

tflite-micro's float reference kernels (``reference_ops::Conv``, ``reference_ops::DepthwiseConv``) compute
each output as ``total = 0.0f``, then ``total += input * filter`` over filter row, filter column and (CONV_2D)
input channel, in that order, skipping taps outside the input; then ``total + bias`` (``0.0f`` without a bias)
and the clamp ``min(max(v, lo), hi)``. One float32 rounding per product and per sum, no fused multiply-add.

The loops below keep every output's chain of operations in that order: they are vectorized only across
outputs (output channels, and for CONV_2D a block of :data:`BLOCK` output columns sharing each weight load),
never along a chain, and numba compiles without fast-math, so LLVM neither reassociates the sums nor contracts
a product and a sum into an FMA. Both read a zero-padded copy of the input (``xp``) when the op has padding or
runs in place: a tap in the padding then adds ``0 * w``, a zero, which leaves a sum that started at ``+0.0``
unchanged, exactly as skipping the tap does, provided every weight is finite (the kernels in
:mod:`~edge_runtime.backends.micro.kernels.conv_float` route filters holding inf or NaN elsewhere).
"""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.fast.jit import inline, kernel

#: output columns of CONV_2D summed together (each weight row loaded once for all of them)
BLOCK = 4


@inline
def _copy_into_padded(x, xp, pt, pl):  # type: ignore[no-untyped-def]
    """``x`` (N, H, W, C) into ``xp`` at rows ``pt``.., columns ``pl``.. (the padding stays zero)."""
    n_, h, wd, cin = x.shape
    for n in range(n_):
        for i in range(h):
            for j in range(wd):
                for c in range(cin):
                    xp[n, pt + i, pl + j, c] = x[n, i, j, c]


@kernel
def conv_float(x, xp, wt, bias, g, lo, hi, acc, y):  # type: ignore[no-untyped-def]
    """``y`` (N, Ho, Wo, Cout) = CONV_2D of ``x`` (N, H, W, Cin) by ``wt`` (kh, kw, Cin, Cout), float32.

    ``g`` = (sh, sw, dh, dw, pt, pl, copy): strides, dilations, the padding before, and 1 when ``x`` is first
    copied into the interior of the zero-padded ``xp`` (else ``xp`` is ``x``). ``acc`` (BLOCK, Cout) float32."""
    sh, sw, dh, dw, pt, pl, copy = g[0], g[1], g[2], g[3], g[4], g[5], g[6]
    n_, h, wd, cin = x.shape
    kh, kw = wt.shape[0], wt.shape[1]
    ho, wo, cout = y.shape[1], y.shape[2], y.shape[3]
    if copy:
        _copy_into_padded(x, xp, pt, pl)
    zero = np.float32(0.0)
    for n in range(n_):
        for oy in range(ho):
            for ox0 in range(0, wo, BLOCK):
                nb = min(BLOCK, wo - ox0)
                for j in range(BLOCK):
                    for co in range(cout):
                        acc[j, co] = zero
                a0, a1, a2, a3 = acc[0], acc[1], acc[2], acc[3]
                for fy in range(kh):
                    row = xp[n, oy * sh + fy * dh]
                    for fx in range(kw):
                        ix = ox0 * sw + fx * dw
                        if nb == BLOCK:
                            x0, x1, x2, x3 = row[ix], row[ix + sw], row[ix + 2 * sw], row[ix + 3 * sw]
                            for ci in range(cin):
                                wr = wt[fy, fx, ci]
                                v0, v1, v2, v3 = x0[ci], x1[ci], x2[ci], x3[ci]
                                for co in range(cout):
                                    w = wr[co]
                                    a0[co] = a0[co] + v0 * w
                                    a1[co] = a1[co] + v1 * w
                                    a2[co] = a2[co] + v2 * w
                                    a3[co] = a3[co] + v3 * w
                        else:
                            for j in range(nb):
                                xr = row[ix + j * sw]
                                aj = acc[j]
                                for ci in range(cin):
                                    wr = wt[fy, fx, ci]
                                    v = xr[ci]
                                    for co in range(cout):
                                        aj[co] = aj[co] + v * wr[co]
                for j in range(nb):
                    out = y[n, oy, ox0 + j]
                    aj = acc[j]
                    for co in range(cout):
                        v = aj[co] + bias[co]
                        if v < lo:
                            v = lo
                        if hi < v:
                            v = hi
                        out[co] = v


@kernel
def depthwise_float(x, xp, wt, bias, g, lo, hi, acc, y):  # type: ignore[no-untyped-def]
    """``y`` (N, Ho, Wo, Cout) = DEPTHWISE_CONV_2D of ``x`` (N, H, W, Cin) by ``wt`` (kh, kw, Cout), float32;
    output channel ``c`` reads input channel ``c // (Cout / Cin)``. ``g`` and ``xp`` as in :func:`conv_float`;
    ``acc`` (Wo, Cout) float32: one output row of sums."""
    sh, sw, dh, dw, pt, pl, copy = g[0], g[1], g[2], g[3], g[4], g[5], g[6]
    n_, h, wd, cin = x.shape
    kh, kw = wt.shape[0], wt.shape[1]
    ho, wo, cout = y.shape[1], y.shape[2], y.shape[3]
    mult = cout // cin
    if copy:
        _copy_into_padded(x, xp, pt, pl)
    zero = np.float32(0.0)
    for n in range(n_):
        for oy in range(ho):
            for ox in range(wo):
                for co in range(cout):
                    acc[ox, co] = zero
            for fy in range(kh):
                row = xp[n, oy * sh + fy * dh]
                for fx in range(kw):
                    wr = wt[fy, fx]
                    for ox in range(wo):
                        xr = row[ox * sw + fx * dw]
                        a = acc[ox]
                        if mult == 1:
                            for c in range(cout):
                                a[c] = a[c] + xr[c] * wr[c]
                        else:
                            for c in range(cout):
                                a[c] = a[c] + xr[c // mult] * wr[c]
            for ox in range(wo):
                out = y[n, oy, ox]
                a = acc[ox]
                for co in range(cout):
                    v = a[co] + bias[co]
                    if v < lo:
                        v = lo
                    if hi < v:
                        v = hi
                    out[co] = v
