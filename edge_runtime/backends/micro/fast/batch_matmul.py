"""Compiled int8 BATCH_MATMUL, as TFLM's reference kernel.

Per output row, ``sum_k (lhs[.., i, k] - zl) * (rhs[.., k, j] - zr)`` in int32 (TFLM's accumulator),
accumulated along the output row (a run over ``j``), then one MultiplyByQuantizedMultiplier
(:func:`requant.requant`, the integer form of the numpy path's Requantizer), the output zero
point and the clamp. The operands are the numpy kernel's views (adjoints already swapped in,
so they may be strided) padded to rank 5; batch dimensions of size 1 broadcast.
"""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.fast.jit import kernel
from edge_runtime.backends.micro.fast.requant import requant


@kernel
def batch_matmul(a, b, q, acc, y):  # type: ignore[no-untyped-def]
    """``y[..., i, j] = requant(sum_k (a[..., i, k] - za) * (b[..., k, j] - zb))`` for int8 ``a`` (.., m, K),
    ``b`` (.., K, n) and ``y`` (.., m, n), all rank 5; ``q``: :func:`requant.pack` with (za, zb) in row 5;
    ``acc`` (n,) int32 workspace."""
    zp, lo, hi = q[5, 0], q[5, 1], q[5, 2]
    za, zb = np.int32(q[5, 3]), np.int32(q[5, 4])
    d0, d1, d2, m, n = y.shape
    kk = a.shape[4]
    for i0 in range(d0):
        for i1 in range(d1):
            for i2 in range(d2):
                a2 = a[i0 if a.shape[0] > 1 else 0, i1 if a.shape[1] > 1 else 0, i2 if a.shape[2] > 1 else 0]
                b2 = b[i0 if b.shape[0] > 1 else 0, i1 if b.shape[1] > 1 else 0, i2 if b.shape[2] > 1 else 0]
                y2 = y[i0, i1, i2]
                for i in range(m):
                    for j in range(n):
                        acc[j] = 0
                    for k in range(kk):
                        av = np.int32(a2[i, k]) - za
                        br = b2[k]
                        for j in range(n):
                            acc[j] += av * (np.int32(br[j]) - zb)
                    yr = y2[i]
                    for j in range(n):
                        yr[j] = requant(acc[j], q, 0, zp, lo, hi)
