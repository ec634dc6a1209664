"""Compiled int8 ADD / SUB / MUL with broadcasting: one pass gathering from the op's 256x256 result table.

As for equal shapes (:mod:`elementwise`), the numpy kernel's table holds TFLM's integer result
(ADD/SUB: the left-shift-20 rescaling path; MUL: MultiplyByQuantizedMultiplier of the offset
product) for every pair of input values, so the gather is exact by construction. Here the two
inputs may broadcast (a scalar, a per-channel vector [1, 1, 1, C], [N, H, W, 1] ...): the shapes
are collapsed at bind time (:func:`geometry`) into at most four dimensions with element strides
(0 along a broadcast dimension), and the innermost run is one of three loops: both inputs advance,
only the first, or only the second (the other's byte read once per run).
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np

from edge_runtime.backends.micro.fast.jit import kernel

#: Dimensions of the collapsed iteration space.
RANK = 4


def geometry(a_shape: tuple[int, ...], b_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> np.ndarray:
    """The collapsed iteration space of ``a`` op ``b`` -> ``out``: int64 (12,) = 4 sizes, then the element
    strides of ``a`` and of ``b`` per dimension (0 where that input broadcasts); raises ValueError when
    more than four dimensions remain after merging."""
    r = len(out_shape)
    shapes = [(1,) * (r - len(s)) + tuple(s) for s in (a_shape, b_shape)]
    # per output dim: size and, for each input, whether it runs along it (1) or broadcasts (0)
    dims = [(out_shape[d], int(shapes[0][d] == out_shape[d]), int(shapes[1][d] == out_shape[d]))
            for d in range(r) if out_shape[d] != 1]
    merged: list[list[int]] = []
    for size, fa, fb in dims:
        if merged and merged[-1][1] == fa and merged[-1][2] == fb:
            merged[-1][0] *= size
        else:
            merged.append([size, fa, fb])
    if len(merged) > RANK:
        raise ValueError(f"broadcast of {a_shape} and {b_shape} needs {len(merged)} dimensions (at most {RANK})")
    merged = [[1, 0, 0]] * (RANK - len(merged)) + merged
    g = np.zeros(3 * RANK, np.int64)
    sa = sb = 1
    for d in range(RANK - 1, -1, -1):
        size, fa, fb = merged[d]
        g[d] = size
        g[RANK + d] = sa if fa else 0
        g[2 * RANK + d] = sb if fb else 0
        sa *= size if fa else 1
        sb *= size if fb else 1
    return g


@kernel
def binary_broadcast(a, b, table, y, g):  # type: ignore[no-untyped-def]
    """``y = table[a << 8 | b]`` over the broadcast iteration space ``g`` (:func:`geometry`); ``a``, ``b``:
    the inputs' bytes as flat uint8, ``y`` the flat int8 output. Each element of ``a`` / ``b`` is read
    before the output element at the same offset is written, so the op may run in place."""
    d0, d1, d2, n = g[0], g[1], g[2], np.uint64(g[3])
    a0, a1, a2, a3 = g[4], g[5], g[6], g[7]
    b0, b1, b2, b3 = g[8], g[9], g[10], g[11]
    o = np.uint64(0)
    for i0 in range(d0):
        for i1 in range(d1):
            for i2 in range(d2):
                pa = np.uint64(i0 * a0 + i1 * a1 + i2 * a2)
                pb = np.uint64(i0 * b0 + i1 * b1 + i2 * b2)
                if a3 != 0 and b3 != 0:
                    for j in range(n):
                        u = np.uint64(j)
                        y[o + u] = table[(np.intp(a[pa + u]) << 8) | np.intp(b[pb + u])]
                elif a3 != 0:
                    bv = np.intp(b[pb])
                    for j in range(n):
                        u = np.uint64(j)
                        y[o + u] = table[(np.intp(a[pa + u]) << 8) | bv]
                elif b3 != 0:
                    av = np.intp(a[pa]) << 8
                    for j in range(n):
                        u = np.uint64(j)
                        y[o + u] = table[av | np.intp(b[pb + u])]
                else:
                    v = table[(np.intp(a[pa]) << 8) | np.intp(b[pb])]
                    for j in range(n):
                        y[o + np.uint64(j)] = v
                o += n


def bound_binary(a: Any, b: Any, table: Any, y: Any, out_shape: tuple[int, ...]) -> Optional[Callable[[], None]]:
    """The compiled broadcast op bound to the int8 views ``a``, ``b`` (C-contiguous), ``y``: with a
    one-element operand and AVX512-VBMI, 64 lookups at a time in that operand's row of the table
    (:func:`lut_simd.binary_scalar_simd`, a private 256-byte buffer); else :func:`binary_broadcast`;
    None when the pattern needs more than four dimensions."""
    from functools import partial

    from edge_runtime.backends.micro.fast import jit_prepare, lut_simd

    au, bu, yf = a.reshape(-1).view(np.uint8), b.reshape(-1).view(np.uint8), y.reshape(-1)
    if (a.size == 1) != (b.size == 1) and lut_simd.available():
        args = (au, bu, table, np.empty(256, np.int8), yf, np.int64(a.size == 1))
        try:
            return partial(jit_prepare(lut_simd.binary_scalar_simd, *args), *args)
        except Exception:  # noqa: BLE001  # (an LLVM that cannot emit the instruction: the scalar loop)
            pass
    try:
        g = geometry(a.shape, b.shape, out_shape)
    except ValueError:
        return None
    args = (au, bu, table, yf, g)
    return partial(jit_prepare(binary_broadcast, *args), *args)
