"""Compiled FULLY_CONNECTED (int8) for many rows: one float32 BLAS product, then the output stage.

With several input rows (a sequence model's time steps) FULLY_CONNECTED is a matrix product, where
BLAS beats per-row dot products (2.5x on a 40 x 120 x 6625 layer). Every product of int8 values is
at most 2**14 in magnitude, so with at most 1024 terms every partial sum is an integer below 2**24
and float32 holds it exactly, in any summation order (``kernels.conv.exact_dtype``): the sums are
TFLM's int32 accumulators. The bias (with the input zero point folded in) is in the packed
constants, as in :mod:`fully_connected`. The whole input is widened before any output is written,
so the op may run in place. (numba's ``np.dot`` needs SciPy's BLAS bindings.)
"""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.fast.jit import kernel
from edge_runtime.backends.micro.fast.requant import float_part, requant_row

#: Fewest rows for which the BLAS product beats per-row dot products.
MIN_ROWS = 8
#: Most terms per sum that float32 holds exactly (int8 x int8 products).
MAX_TERMS = 1024


@kernel
def fully_connected_gemm(x, wf, q, xf, accf, acc, y):  # type: ignore[no-untyped-def]
    """``y = requant(x @ wf)`` for ``x`` (rows, k) int8, ``wf`` (k, units) float32; ``xf`` (rows, k) and
    ``accf`` (rows, units) float32 and ``acc`` (units,) int32 workspaces."""
    rows, k = x.shape
    zp, lo, hi = q[5, 0], q[5, 1], q[5, 2]
    qf, mode, soff, flo, fhi = float_part(q)
    for r in range(rows):
        for i in range(k):
            xf[r, i] = x[r, i]
    np.dot(xf, wf, accf)
    units = wf.shape[1]
    for r in range(rows):
        for u in range(units):
            acc[u] = np.int32(accf[r, u])
        requant_row(acc, q, qf, y[r], zp, lo, hi, mode, soff, flo, fhi)
