"""Compiled int8 and float32 BATCH_MATMUL, as TFLM's reference kernel (float32: :func:`batch_matmul_float`).

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


@kernel
def batch_matmul_float(a, b, acc, y):  # type: ignore[no-untyped-def]
    """``y[..., i, j] = 0 + a[..., i, 0] * b[..., 0, j] + a[..., i, 1] * b[..., 1, j] + ...`` in float32, for
    float32 ``a`` (.., m, K), ``b`` (.., K, n; rows contiguous) and ``y`` (.., m, n), all rank 5 (batch
    dimensions of 1 broadcast); ``acc`` (4, n) float32 workspace.

    tflite-micro's reference order: each sum runs along the depth from +0, one rounding per product and per
    sum. Four output rows at a time share each rhs row; the loops are vectorized across ``j`` only, and numba
    compiles without fast-math, so LLVM neither reorders the sums nor fuses a product and a sum (no FMA): the
    numpy kernel's bits and tflite-micro's."""
    d0, d1, d2, m, n = y.shape
    kk = a.shape[4]
    zero = np.float32(0.0)
    for i0 in range(d0):
        for i1 in range(d1):
            for i2 in range(d2):
                a2 = a[i0 if a.shape[0] > 1 else 0, i1 if a.shape[1] > 1 else 0, i2 if a.shape[2] > 1 else 0]
                b2 = b[i0 if b.shape[0] > 1 else 0, i1 if b.shape[1] > 1 else 0, i2 if b.shape[2] > 1 else 0]
                y2 = y[i0, i1, i2]
                r0, r1, r2, r3 = acc[0], acc[1], acc[2], acc[3]
                i = 0
                while i + 4 <= m:
                    for j in range(n):
                        r0[j] = zero
                        r1[j] = zero
                        r2[j] = zero
                        r3[j] = zero
                    for k in range(kk):
                        v0, v1, v2, v3 = a2[i, k], a2[i + 1, k], a2[i + 2, k], a2[i + 3, k]
                        br = b2[k]
                        for j in range(n):
                            bv = br[j]
                            r0[j] = r0[j] + v0 * bv
                            r1[j] = r1[j] + v1 * bv
                            r2[j] = r2[j] + v2 * bv
                            r3[j] = r3[j] + v3 * bv
                    for j in range(n):
                        y2[i, j] = r0[j]
                        y2[i + 1, j] = r1[j]
                        y2[i + 2, j] = r2[j]
                        y2[i + 3, j] = r3[j]
                    i += 4
                while i < m:
                    for j in range(n):
                        r0[j] = zero
                    for k in range(kk):
                        v0 = a2[i, k]
                        br = b2[k]
                        for j in range(n):
                            r0[j] = r0[j] + v0 * br[j]
                    for j in range(n):
                        y2[i, j] = r0[j]
                    i += 1
