"""Compiled CONV_2D and DEPTHWISE_CONV_2D (int8).

- :func:`conv_gemm`: CONV_2D in one call per op: per chunk of output rows, the im2col rows
  gathered from the int8 input (padding taps get the input zero point, cancelled by the folded
  bias; with y-stride 1 only the kw taps of each input row, then kh shorter products summed),
  numba's ``np.dot`` (BLAS) in the exact compute dtype, and the output stage.
- :func:`tail`: the output stage alone (CONV_2D without SciPy, after numpy's product).
- :func:`depthwise_columns` / :func:`depthwise_rows` / :func:`depthwise_direct`: DEPTHWISE_CONV_2D
  from the int8 input in int32 (TFLM's accumulator): one pass over the whole image per tap for
  one-column kernels, one pass per output row and pair of taps for x-stride 1 and multiplier 1
  (weights tiled along the run), else per output pixel.

(Per-pixel and per-tap loops over few channels are dominated by loop set-up and accumulator
loads/stores; long contiguous runs, indexed with unsigned offsets, are what make these loops fast.)
"""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.fast.jit import inline, kernel
from edge_runtime.backends.micro.fast.requant import float_part, requant_row


@kernel
def tail(acc, q, out):  # type: ignore[no-untyped-def]
    """``out[m, c] = requant(acc[m, c])`` (``q``: :func:`requant.pack`)."""
    zp, lo, hi = q[5, 0], q[5, 1], q[5, 2]
    qf, mode, soff, flo, fhi = float_part(q)
    for i in range(acc.shape[0]):
        requant_row(acc[i], q, qf, out[i], zp, lo, hi, mode, soff, flo, fhi)


@inline
def _source(x, xcopy):  # type: ignore[no-untyped-def]
    """The input to read: ``x``, or (when the op runs in place: ``xcopy`` is not empty) ``x`` copied first
    into ``xcopy``, since the output overwrites input rows that later outputs still need."""
    if xcopy.size == 0:
        return x
    a, b = x.reshape(-1), xcopy.reshape(-1)
    for j in range(a.shape[0]):
        b[j] = a[j]
    return xcopy


@kernel
def depthwise_direct(xin, xcopy, w, q, zrow, acc, y):  # type: ignore[no-untyped-def]
    """DEPTHWISE_CONV_2D read straight from the int8 input ``x`` (N, H, W, cin) into ``y`` (N, Ho, Wo, cout).

    ``w`` (kh, kw, cout) int32; ``q`` packed with the geometry (sh, sw, dh, dw, pt, pl, mult);
    ``zrow`` (cin,) int8 filled with the input zero point stands for a tap in the padding (the
    folded bias then cancels it, as TFLM skips such taps); ``acc`` (cout,) int32 workspace.
    Sums of int8 products in int32 are exact (TFLM's accumulator)."""
    x = _source(xin, xcopy)
    zp, lo, hi = q[5, 0], q[5, 1], q[5, 2]
    qf, mode, soff, flo, fhi = float_part(q)
    sh, sw, dh, dw, pt, pl, mult = q[5, 3], q[5, 4], q[5, 5], q[5, 6], q[5, 7], q[5, 8], q[5, 9]
    n_, h, wd, cin = x.shape
    kh, kw, cout = w.shape[0], w.shape[1], w.shape[2]
    ho, wo = y.shape[1], y.shape[2]
    for n in range(n_):
        for oy in range(ho):
            for ox in range(wo):
                for c in range(cout):
                    acc[c] = 0
                for ky in range(kh):
                    iy = oy * sh - pt + ky * dh
                    row_ok = 0 <= iy < h
                    for kx in range(kw):
                        ix = ox * sw - pl + kx * dw
                        if row_ok and 0 <= ix < wd:
                            v = x[n, iy, ix]
                        else:
                            v = zrow
                        wt = w[ky, kx]
                        if mult == 1:
                            for c in range(cout):
                                acc[c] += np.int32(v[c]) * wt[c]
                        else:
                            for ci in range(cin):
                                vc = np.int32(v[ci])
                                for j in range(mult):
                                    acc[ci * mult + j] += vc * wt[ci * mult + j]
                requant_row(acc, q, qf, y[n, oy, ox], zp, lo, hi, mode, soff, flo, fhi)


@inline
def _madd(acc, a0, xf, x0, w2, w0, n):  # type: ignore[no-untyped-def]
    """``acc[a0 + j] += xf[x0 + j] * w2[w0 + j]`` for j < n, in int32 (flat arrays, unsigned offsets)."""
    for j in range(n):
        u = np.uint64(j)
        acc[a0 + u] += np.int32(xf[x0 + u]) * w2[w0 + u]


@inline
def _madd2(acc, a0, xf, x0, x1, w2, w0, w1, n):  # type: ignore[no-untyped-def]
    """Two taps in one pass: ``acc[a0 + j] += xf[x0 + j] * w2[w0 + j] + xf[x1 + j] * w2[w1 + j]`` (int32)."""
    for j in range(n):
        u = np.uint64(j)
        acc[a0 + u] += np.int32(xf[x0 + u]) * w2[w0 + u] + np.int32(xf[x1 + u]) * w2[w1 + u]


@inline
def _zadd(acc, a0, z, w2, w0, n):  # type: ignore[no-untyped-def]
    """``acc[a0 + j] += z * w2[w0 + j]`` for j < n (a tap in the padding reads the input zero point ``z``)."""
    for j in range(n):
        u = np.uint64(j)
        acc[a0 + u] += z * w2[w0 + u]


@inline
def _madd3(acc, a0, xf, x0, x1, x2, w2, w0, w1, w2_, n):  # type: ignore[no-untyped-def]
    """Three taps in one pass (int32)."""
    for j in range(n):
        u = np.uint64(j)
        acc[a0 + u] += (np.int32(xf[x0 + u]) * w2[w0 + u] + np.int32(xf[x1 + u]) * w2[w1 + u]
                        + np.int32(xf[x2 + u]) * w2[w2_ + u])


@kernel
def depthwise_rows(xin, xcopy, w2, q, corr, rowsel, acc, yf):  # type: ignore[no-untyped-def]
    """DEPTHWISE_CONV_2D with stride 1 along x and depth multiplier 1, one output row at a time.

    A tap's (output column, channel) values are one contiguous run of the input row, so the taps of
    one kernel column add long runs into the int32 row accumulator ``acc`` (wo * c,), up to three
    taps per pass; ``w2`` (kh * kw * wo * c,) int32 holds each tap's weights tiled along the row.
    Taps in the padding read the input zero point: their sum is data-independent and precomputed
    per kind of output row (``corr`` (kinds, wo * c) int32, ``rowsel`` (Ho,): the kind of each
    row), and starts the accumulator. ``xf`` (N * H * W * c,) and ``yf`` (N * Ho * wo * c,) are the
    flat input and output; ``q`` the requantization constants tiled along the row, with the
    geometry (sh, dh, dw, pt, pl, kh, kw, H, W, Ho, input zero point, c) after the output zero point
    and clamp. (Flat arrays with unsigned offsets: numba's negative-index handling of signed ones,
    or a view per run, would cost more than the runs.)"""
    xf = _source(xin, xcopy)
    zp, lo, hi = q[5, 0], q[5, 1], q[5, 2]
    qf, mode, soff, flo, fhi = float_part(q)
    sh, dh, dw, pt, pl = q[5, 3], q[5, 4], q[5, 5], q[5, 6], q[5, 7]
    kh, kw, h, wd, ho = q[5, 8], q[5, 9], q[5, 10], q[5, 11], q[5, 12]
    c = q[5, 14]
    L = acc.shape[0]
    wo = L // c
    rows = yf.shape[0] // L
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
            ac, bc = a * c, b * c
            if bc <= ac:
                continue
            ky = ky0
            while ky < ky1:
                xb = (n * h + oy * sh - pt + ky * dh) * wd + a + off
                t0 = np.uint64((ky * kw + kx) * L + ac)
                if ky + 2 < ky1:
                    _madd3(acc, np.uint64(ac), xf, np.uint64(xb * c), np.uint64((xb + dh * wd) * c),
                           np.uint64((xb + 2 * dh * wd) * c), w2, t0, t0 + np.uint64(kw * L),
                           t0 + np.uint64(2 * kw * L), bc - ac)
                    ky += 3
                elif ky + 1 < ky1:
                    _madd2(acc, np.uint64(ac), xf, np.uint64(xb * c), np.uint64((xb + dh * wd) * c), w2, t0,
                           t0 + np.uint64(kw * L), bc - ac)
                    ky += 2
                else:
                    _madd(acc, np.uint64(ac), xf, np.uint64(xb * c), w2, t0, bc - ac)
                    ky += 1
        requant_row(acc, q, qf, yf[r * L:(r + 1) * L], zp, lo, hi, mode, soff, flo, fhi)


@kernel
def depthwise_columns(xin, xcopy, w2, q, acc, yf):  # type: ignore[no-untyped-def]
    """DEPTHWISE_CONV_2D with a one-column kernel (kw 1), strides 1, no padding along x and multiplier 1:
    a tap's values for every output row are one contiguous run of the image, so each tap is one pass
    over the whole image.

    ``w2`` (kh * Ho * W * c,) int32: each tap's weights tiled over the image; ``acc`` (Ho * W * c,)
    int32 workspace; ``xf`` / ``yf`` the flat input / output; ``q`` the requantization constants tiled
    along one row (W * c), with the geometry as :func:`depthwise_rows`."""
    xf = _source(xin, xcopy)
    zp, lo, hi = q[5, 0], q[5, 1], q[5, 2]
    qf, mode, soff, flo, fhi = float_part(q)
    dh, pt = q[5, 4], q[5, 6]
    kh, h, wd, ho = q[5, 8], q[5, 10], q[5, 11], q[5, 12]
    z, c = np.int32(q[5, 13]), q[5, 14]
    rw = wd * c
    L = ho * rw
    n_img = yf.shape[0] // L
    for n in range(n_img):
        for j in range(L):
            acc[j] = 0
        for ky in range(kh):
            a = min(max(0, pt - ky * dh), ho)  # output rows whose tap row is inside the image
            b = max(min(ho, h + pt - ky * dh), a)
            w0 = np.uint64(ky * L)
            x0 = np.uint64((n * h + a - pt + ky * dh) * rw)
            _madd(acc, np.uint64(a * rw), xf, x0, w2, w0 + np.uint64(a * rw), (b - a) * rw)
            if a > 0:
                _zadd(acc, np.uint64(0), z, w2, w0, a * rw)
            if b < ho:
                _zadd(acc, np.uint64(b * rw), z, w2, w0 + np.uint64(b * rw), (ho - b) * rw)
        for r in range(ho):
            requant_row(acc[r * rw:(r + 1) * rw], q, qf, yf[(n * ho + r) * rw:(n * ho + r + 1) * rw], zp, lo, hi,
                        mode, soff, flo, fhi)


@inline
def _im2col(xf, kh, kw, sh, sw, dh, dw, pt, pl, wo, zp, h, wd, cin, n, r0, m, lhs):  # type: ignore[no-untyped-def]
    """CONV_2D's im2col rows (``m`` output positions from output row ``r0`` of image ``n``) gathered from
    the flat int8 input ``xf`` into the flat ``lhs`` (m * kh * kw * cin) in the compute dtype; taps in the
    padding get the input zero point ``zp`` (cancelled by the folded bias). (Flat arrays indexed with
    unsigned offsets: numba's negative-index handling of signed ones, or a view per run, would cost
    more than the copy.)"""
    zf = lhs.dtype.type(zp)
    run = kw * cin
    k = kh * run
    if kh == 1 and kw == 1 and sh == 1 and sw == 1 and pt == 0 and pl == 0 and wo == wd and r0 >= 0 \
            and r0 * wo + m <= h * wo:
        s0 = np.uint64((n * h + r0) * wd * cin)  # (pointwise, inside the image: one contiguous block)
        for j in range(m * cin):
            lhs[np.uint64(j)] = xf[s0 + np.uint64(j)]
        return
    for i in range(m):
        oy = r0 + i // wo
        ox = i % wo
        ix0 = ox * sw - pl
        inside = dw == 1 and ix0 >= 0 and ix0 + kw <= wd
        for ky in range(kh):
            iy = oy * sh - pt + ky * dh
            d0 = np.uint64(i * k + ky * run)
            if iy < 0 or iy >= h:
                for j in range(run):
                    lhs[d0 + np.uint64(j)] = zf
            elif inside:  # the kw taps of this row are one contiguous run
                s0 = np.uint64(((n * h + iy) * wd + ix0) * cin)
                for j in range(run):
                    lhs[d0 + np.uint64(j)] = xf[s0 + np.uint64(j)]
            else:
                for kx in range(kw):
                    ix = ix0 + kx * dw
                    d1 = d0 + np.uint64(kx * cin)
                    if 0 <= ix < wd:
                        s1 = np.uint64(((n * h + iy) * wd + ix) * cin)
                        for c in range(cin):
                            lhs[d1 + np.uint64(c)] = xf[s1 + np.uint64(c)]
                    else:
                        for c in range(cin):
                            lhs[d1 + np.uint64(c)] = zf


@kernel
def conv_gemm(xin, xcopy, g, wmat, q, lhs, acc, tmp, yf):  # type: ignore[no-untyped-def]
    """CONV_2D (int8) in one call: per chunk of output rows, the im2col rows from the flat int8 input
    ``xf``, the BLAS product with ``wmat`` (k, cout) in the exact compute dtype (numba's ``np.dot``), and
    the requantization tail into the flat int8 output ``yf``.

    With y-stride 1 (``rowshift``) the chunk gathers only the kw taps of each input row once
    (``E``: (rows + (kh - 1) * dh) * wo rows of kw * cin values) and sums kh products: the rows of
    ``E`` that kernel row ``ky`` needs are one contiguous block, ``ky * dh * wo`` rows down. That
    gathers kh times less and, for these narrow layers, BLAS runs the short products faster than
    one long one; every partial sum is an exact integer (see ``exact_dtype``), so the result is the
    same. ``lhs`` (rows * wo, k), ``acc`` and ``tmp`` (rows * wo, cout) are workspace; ``g`` = (kh, kw,
    sh, sw, dh, dw, pt, pl, wo, input zero point, H, W, cin, rows per chunk, N, Ho, tiled, rowshift);
    ``q`` packed constants, tiled along output rows (``wo * cout`` wide) when ``tiled`` is 1."""
    xf = _source(xin, xcopy)
    kh, kw, sh, sw, dh, dw, pt, pl, wo = g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7], g[8]
    zpi, h, wd, cin = g[9], g[10], g[11], g[12]
    rows, n_img, ho, tiled, rowshift = g[13], g[14], g[15], g[16], g[17]
    cout = wmat.shape[1]
    zp, lo, hi = q[5, 0], q[5, 1], q[5, 2]
    qf, mode, soff, flo, fhi = float_part(q)
    L = wo * cout
    run = kw * cin
    lf = lhs.reshape(-1)
    af = acc.reshape(-1)
    for n in range(n_img):
        for r0 in range(0, ho, rows):
            r = min(rows, ho - r0)
            m = r * wo
            if rowshift == 1:
                ne = (r + (kh - 1) * dh) * wo
                _im2col(xf, 1, kw, 1, sw, 1, dw, 0, pl, wo, zpi, h, wd, cin, n, r0 - pt, ne, lf)
                e = lf[:ne * run].reshape(ne, run)
                np.dot(e[:m], wmat[:run], acc[:m])
                for ky in range(1, kh):
                    e0 = ky * dh * wo
                    np.dot(e[e0:e0 + m], wmat[ky * run:(ky + 1) * run], tmp[:m])
                    for i in range(m):
                        for c in range(cout):
                            acc[i, c] += tmp[i, c]
            else:
                _im2col(xf, kh, kw, sh, sw, dh, dw, pt, pl, wo, zpi, h, wd, cin, n, r0, m, lf)
                np.dot(lhs[:m], wmat, acc[:m])
            base = (n * ho + r0) * L
            if tiled == 1:
                for rr in range(r):
                    requant_row(af[rr * L:(rr + 1) * L], q, qf, yf[base + rr * L:base + (rr + 1) * L], zp, lo, hi,
                                mode, soff, flo, fhi)
            else:
                for i in range(m):
                    requant_row(acc[i], q, qf, yf[base + i * cout:base + (i + 1) * cout], zp, lo, hi, mode, soff,
                                flo, fhi)
