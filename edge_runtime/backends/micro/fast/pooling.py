"""Compiled AVERAGE_POOL_2D / MAX_POOL_2D (int8), as TFLM's reference pooling.

Windows are clipped to the input (padding positions are not counted). The average rounds
half away from zero (``(sum +- count/2) / count`` with C's truncating division); then the
activation clamp. ``g`` = (stride_h, stride_w, filter_h, filter_w, pad_top, pad_left, act_min, act_max).
The average sums each window row as one contiguous run of channels (:func:`average_pool_rows`).
"""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.fast.jit import kernel


@kernel
def max_pool(x, g, y):  # type: ignore[no-untyped-def]
    """int8 max pooling of ``x`` (N, H, W, C) into ``y`` (N, Ho, Wo, C)."""
    sh, sw, fh, fw, pt, pl, lo, hi = g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7]
    n_, h, w, c = x.shape
    ho, wo = y.shape[1], y.shape[2]
    for n in range(n_):
        for oy in range(ho):
            y0 = oy * sh - pt
            ya, yb = max(y0, 0), min(y0 + fh, h)
            for ox in range(wo):
                x0 = ox * sw - pl
                xa, xb = max(x0, 0), min(x0 + fw, w)
                for ch in range(c):
                    m = -128
                    for iy in range(ya, yb):
                        for ix in range(xa, xb):
                            v = x[n, iy, ix, ch]
                            if v > m:
                                m = v
                    y[n, oy, ox, ch] = min(max(m, lo), hi)


@kernel
def average_pool_rows(x2, g, s, y):  # type: ignore[no-untyped-def]
    """int8 average pooling of ``x2`` (N * H, W * C) into ``y`` (N, Ho, Wo, C), channels innermost.

    Each window row is summed as one contiguous run into the int32 channel sums ``s`` (C,), so
    the inner loop runs along memory; ``g`` as :func:`max_pool` plus (H, W) at the end."""
    sh, sw, fh, fw, pt, pl, lo, hi = g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7]
    h, w = g[8], g[9]
    n_, ho, wo, c = y.shape
    for n in range(n_):
        for oy in range(ho):
            y0 = oy * sh - pt
            ya, yb = max(y0, 0), min(y0 + fh, h)
            for ox in range(wo):
                x0 = ox * sw - pl
                xa, xb = max(x0, 0), min(x0 + fw, w)
                count = (yb - ya) * (xb - xa)
                half = count // 2
                for ch in range(c):
                    s[ch] = 0
                for iy in range(ya, yb):
                    xv = x2[n * h + iy, xa * c:xb * c]
                    for t in range(xb - xa):
                        for ch in range(c):
                            s[ch] += xv[t * c + ch]
                yo = y[n, oy, ox]
                for ch in range(c):
                    v = np.int64(s[ch])
                    if v > 0:
                        v = (v + half) // count
                    else:
                        v = -((half - v) // count)
                    yo[ch] = min(max(v, lo), hi)
