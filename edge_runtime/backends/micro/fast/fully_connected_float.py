"""Compiled float32 FULLY_CONNECTED in tflite-micro's summation order.

tflite-micro's reference kernel computes ``total = 0.0f; total += x[d] * w[o][d]`` for d in file order,
one float32 rounding per product and per sum, then ``+ bias`` and the clamp. The loop below keeps every
output's chain of operations in that order (the accumulators are vectorized across output units, never
across the depth), and numba compiles without fast-math, so LLVM neither reassociates the sums nor
contracts a product and a sum into a fused multiply-add: each output is bit-identical to the numpy
kernel's (:mod:`edge_runtime.backends.micro.kernels.fully_connected_float`) and so to tflite-micro's.
"""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.fast.jit import kernel


@kernel
def fully_connected_float(x, wt, bias, lo, hi, acc, y):  # type: ignore[no-untyped-def]
    """``y[r, u] = clamp(bias[u] + sum_d x[r, d] * wt[d, u])``, each sum in depth order, in float32.

    ``acc`` (rows x units float32) holds every sum until all rows are done, so ``y`` may share ``x``'s
    memory. The clamp is ``min(max(v, lo), hi)`` as C++'s ``std::max``/``std::min`` take it (a NaN stays)."""
    rows, depth = x.shape
    units = wt.shape[1]
    for r in range(rows):
        for u in range(units):
            acc[r, u] = np.float32(0.0)
        for d in range(depth):
            xv = x[r, d]
            for u in range(units):
                acc[r, u] = acc[r, u] + xv * wt[d, u]
    for r in range(rows):
        for u in range(units):
            v = acc[r, u] + bias[u]
            if v < lo:
                v = lo
            if hi < v:
                v = hi
            y[r, u] = v
