"""Compiled FULLY_CONNECTED (int8): integer dot products per row, then the requantization tail.

``x`` (rows, k) int8 and ``w`` (units, k) int8 (the model's weights, not widened); products are
summed in int64 (exact). The bias (with the input zero point folded in) is part of the packed
constants. Each row's outputs are computed into ``acc`` before any is written, so the op may
run in place when an output row is no larger than an input row (or there is one row).
"""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.fast.jit import kernel
from edge_runtime.backends.micro.fast.requant import requant


@kernel
def fully_connected(x, w, q, z, acc, y):  # type: ignore[no-untyped-def]
    """``y[r] = requant(x[r] @ w.T)`` row by row; ``acc`` (units,) int64 workspace."""
    rows, k = x.shape
    units = w.shape[0]
    zp, lo, hi = z[0], z[1], z[2]
    for r in range(rows):
        xr = x[r]
        for u in range(units):
            wu = w[u]
            s = np.int64(0)
            for i in range(k):
                s += np.int64(xr[i]) * np.int64(wu[i])
            acc[u] = s
        yr = y[r]
        for u in range(units):
            yr[u] = requant(acc[u], q, u, zp, lo, hi)
