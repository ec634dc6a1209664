"""Compiled FULLY_CONNECTED (int8): int32 dot products per row, then the requantization tail.

``x`` (rows, k) int8; ``w`` (units, k) holds the weights widened once to int16, and each input
row is widened to int16 in ``xs``: LLVM turns the int32 sums of int16 products into ``pmaddwd``
(16-bit multiply-adds), and int16 weights take half the cache of float32 ones. Sums of int8
products in int32 are TFLM's accumulator, exact. The bias (with the input zero point folded in)
is part of the packed constants. Each row's outputs are computed into ``acc`` before any is
written, so the op may run in place when an output row is no larger than an input row (or
there is one row).
"""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.fast.jit import kernel
from edge_runtime.backends.micro.fast.requant import float_part, requant_row


@kernel
def fully_connected(x, w, q, xs, acc, y):  # type: ignore[no-untyped-def]
    """``y[r] = requant(x[r] @ w.T)`` row by row; ``xs`` (k,) int16 and ``acc`` (units,) int32 workspace."""
    rows, k = x.shape
    units = w.shape[0]
    zp, lo, hi = q[5, 0], q[5, 1], q[5, 2]
    qf, mode, soff, flo, fhi = float_part(q)
    for r in range(rows):
        for i in range(k):
            xs[i] = x[r, i]
        for u in range(units):
            s = np.int32(0)
            for i in range(k):
                s += np.int32(xs[i]) * np.int32(w[u, i])
            acc[u] = s
        requant_row(acc, q, qf, y[r], zp, lo, hi, mode, soff, flo, fhi)
