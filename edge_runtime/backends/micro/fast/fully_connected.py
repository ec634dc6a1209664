"""Compiled FULLY_CONNECTED (int8): dot products per row, then the requantization tail.

``x`` (rows, k) int8; ``w`` (units, k) holds the weights widened to the compute dtype of
:func:`~edge_runtime.backends.micro.kernels.conv.exact_dtype` (float32 up to 1024 terms, else
float64), in which every partial sum of int8 products is an exact integer, so the reductions
may run in any order (vectorised). The bias (with the input zero point folded in) is part of the packed
constants. Each row's outputs are computed into ``acc`` before any is written, so the op may
run in place when an output row is no larger than an input row (or there is one row).
"""
from __future__ import annotations

from edge_runtime.backends.micro.fast.jit import kernel_reassoc
from edge_runtime.backends.micro.fast.requant import requant


@kernel_reassoc
def fully_connected(x, w, q, xf, acc, y):  # type: ignore[no-untyped-def]
    """``y[r] = requant(x[r] @ w.T)`` row by row; ``xf`` (k,) and ``acc`` (units,) workspace in w's dtype."""
    rows, k = x.shape
    units = w.shape[0]
    zp, lo, hi = q[5, 0], q[5, 1], q[5, 2]
    for r in range(rows):
        for i in range(k):
            xf[i] = x[r, i]
        for u in range(units):
            s = w.dtype.type(0)
            for i in range(k):
                s += xf[i] * w[u, i]
            acc[u] = s
        for u in range(units):
            y[r, u] = requant(acc[u], q, u, zp, lo, hi)
