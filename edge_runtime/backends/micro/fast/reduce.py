"""Compiled int8 MEAN / SUM over the spatial axes (1, 2) of an NHWC tensor (global average pooling).

TFLM's ``QuantizedMeanOrSum`` as the numpy kernel computes it: per (batch, channel) the sum of the
int8 inputs (int32: exact while ``128 * H * W < 2**31``), minus the input zero point times the
count, then one MultiplyByQuantizedMultiplier whose multiplier absorbs ``1 / count`` (MEAN) or not
(SUM), the output zero point and the clamp (:func:`requant.requant`, the integer form of the
numpy path's Requantizer). The sums run along whole rows of channels, so the inner loop follows memory.
"""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.fast.jit import kernel
from edge_runtime.backends.micro.fast.requant import requant

#: Largest H * W whose int8 sums stay exact in int32.
MAX_COUNT = (1 << 31) // 128 - 1


@kernel
def mean_hw(x, q, zxn, acc, y):  # type: ignore[no-untyped-def]
    """``y[n, c] = requant(sum_i x[n, i, c] - zxn)`` for ``x`` (N, H * W, C) int8 into ``y`` (N, C) int8;
    ``q``: :func:`requant.pack` of the op's Requantizer (one channel), ``acc`` (C,) int32 workspace."""
    zp, lo, hi = q[5, 0], q[5, 1], q[5, 2]
    n_, m, c = x.shape
    for n in range(n_):
        for ch in range(c):
            acc[ch] = 0
        for i in range(m):
            row = x[n, i]
            for ch in range(c):
                acc[ch] += row[ch]
        for ch in range(c):
            y[n, ch] = requant(np.int64(acc[ch]) - zxn, q, 0, zp, lo, hi)


@kernel
def sum_f32(x, y):  # type: ignore[no-untyped-def]
    """``y[a, c]`` = the float32 sum over ``r`` of ``x[a, r, c]`` for ``x`` (A, R, C) float32 into ``y``
    (A, C) float32, TFLM's ``ReduceSumImpl`` order: from 0.0f, one float32 addition per term in
    increasing ``r`` (numba does not reassociate without fastmath; only the independent outputs
    along ``c`` run side by side)."""
    a_, r_, c_ = x.shape
    if c_ < 8 and a_ > 1:  # few outputs per row: interleave the rows' chains of dependent additions
        for a in range(a_):
            for c in range(c_):
                y[a, c] = np.float32(0.0)
        for r in range(r_):
            for a in range(a_):
                for c in range(c_):
                    y[a, c] += x[a, r, c]
        return
    for a in range(a_):
        for c in range(c_):
            y[a, c] = np.float32(0.0)
        for r in range(r_):
            for c in range(c_):
                y[a, c] += x[a, r, c]
