"""Compiled DEPTHWISE_CONV_2D for many channels (x-stride 1, multiplier 1): untiled weights.

:func:`conv.depthwise_rows` adds each tap along a whole output row against that tap's weights tiled
along the row (``kh * kw * Wo * C`` int32). With many channels that tiled copy is megabytes (5x5 taps
over 80 columns of 240 channels: 1.9 MB), read again for every output row from L2/L3. Here each
tap's run is split per output column: one run of C channels (long enough for the loop to vectorise
when C >= 32) against the tap's C weights, which stay in L1 (``kh * kw * C`` int32); likewise the
output stage runs per pixel on C-wide constants instead of constants tiled along the row (80 B per
output value). Same int32 sums, same precomputed padding correction, same output stage, so the results
are the same bit for bit.
"""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.fast.conv import _madd, _madd2, _madd3, _source
from edge_runtime.backends.micro.fast.jit import kernel
from edge_runtime.backends.micro.fast.requant import float_part, requant_row

#: Fewest channels for which this kernel beats the tiled one (runs shorter than that vectorise poorly).
MIN_CHANNELS = 32


@kernel
def depthwise_rows_wide(xin, xcopy, w, q, corr, rowsel, acc, yf):  # type: ignore[no-untyped-def]
    """As :func:`conv.depthwise_rows`, with ``w`` (kh * kw * c,) int32 untiled (tap-major) and ``q`` the
    packed constants untiled (c wide; the geometry as there), applied pixel by pixel."""
    xf = _source(xin, xcopy)
    zp, lo, hi = q[5, 0], q[5, 1], q[5, 2]
    qf, mode, soff, flo, fhi = float_part(q)
    sh, dh, dw, pt, pl = q[5, 3], q[5, 4], q[5, 5], q[5, 6], q[5, 7]
    kh, kw, h, wd, ho = q[5, 8], q[5, 9], q[5, 10], q[5, 11], q[5, 12]
    c = q[5, 14]
    L = acc.shape[0]
    wo = L // c
    rows = yf.shape[0] // L
    uc = np.uint64(c)
    for r in range(rows):
        n, oy = r // ho, r % ho
        cr = corr[rowsel[oy]]
        for j in range(L):
            acc[j] = cr[j]
        ky0 = 0  # the kernel rows inside the image: ky0 <= ky < ky1
        while ky0 < kh and oy * sh - pt + ky0 * dh < 0:
            ky0 += 1
        ky1 = ky0
        while ky1 < kh and oy * sh - pt + ky1 * dh < h:
            ky1 += 1
        for kx in range(kw):
            off = kx * dw - pl  # input column of output column 0
            a = min(max(0, -off), wo)
            b = max(min(wo, wd - off), a)
            if b <= a:
                continue
            ky = ky0
            while ky < ky1:
                xb = (n * h + oy * sh - pt + ky * dh) * wd + off
                t0 = np.uint64((ky * kw + kx) * c)
                tk = np.uint64(kw * c)
                if ky + 2 < ky1:
                    r1, r2 = np.uint64(dh * wd * c), np.uint64(2 * dh * wd * c)
                    for ox in range(a, b):
                        x0 = np.uint64((xb + ox) * c)
                        _madd3(acc, np.uint64(ox * c), xf, x0, x0 + r1, x0 + r2, w, t0, t0 + tk, t0 + tk + tk, uc)
                    ky += 3
                elif ky + 1 < ky1:
                    r1 = np.uint64(dh * wd * c)
                    for ox in range(a, b):
                        x0 = np.uint64((xb + ox) * c)
                        _madd2(acc, np.uint64(ox * c), xf, x0, x0 + r1, w, t0, t0 + tk, uc)
                    ky += 2
                else:
                    for ox in range(a, b):
                        _madd(acc, np.uint64(ox * c), xf, np.uint64((xb + ox) * c), w, t0, uc)
                    ky += 1
        for ox in range(wo):  # (per pixel: the constants stay C wide, in L1)
            o = ox * c
            requant_row(acc[o:o + c], q, qf, yf[r * L + o:r * L + o + c], zp, lo, hi, mode, soff, flo, fhi)
