"""Compiled CONV_2D / DEPTHWISE_CONV_2D pieces: the requantization tail and the depthwise taps.

The numpy kernels keep their band (input rows widened to the compute dtype, padding set
to the input zero point, in-place line buffers) and, for CONV_2D, the BLAS product; these
loops replace what numpy spends many passes on:

- :func:`tail`: accumulators (float32/float64 holding exact integers, or int64) plus the
  folded bias -> int8, in one pass (:mod:`requant`);
- :func:`gather`: the im2col rows of a chunk from the band, one pass;
- :func:`depthwise`: the kh*kw taps of a chunk summed per channel (any depth multiplier),
  followed by the tail, in one call.
"""
from __future__ import annotations

from edge_runtime.backends.micro.fast.jit import kernel
from edge_runtime.backends.micro.fast.requant import requant


@kernel
def tail(acc, q, z, out):  # type: ignore[no-untyped-def]
    """``out[m, c] = requant(acc[m, c])``; ``z`` = (output zero point, act min, act max)."""
    zp, lo, hi = z[0], z[1], z[2]
    for i in range(acc.shape[0]):
        for c in range(acc.shape[1]):
            out[i, c] = requant(acc[i, c], q, c, zp, lo, hi)


@kernel
def gather(band, g, cols):  # type: ignore[no-untyped-def]
    """im2col: ``cols[(r, x), (ky, kx, c)] = band[r*sh + ky*dh, x*sw + kx*dw, c]``; ``g`` = (sh, sw, dh, dw, kh, kw, wo)."""
    sh, sw, dh, dw, kh, kw, wo = g[0], g[1], g[2], g[3], g[4], g[5], g[6]
    cin = band.shape[2]
    for i in range(cols.shape[0]):
        r, x = i // wo, i % wo
        j = 0
        for ky in range(kh):
            row = r * sh + ky * dh
            for kx in range(kw):
                col = x * sw + kx * dw
                for c in range(cin):
                    cols[i, j] = band[row, col, c]
                    j += 1


@kernel
def depthwise(band, w, g, q, z, acc, out):  # type: ignore[no-untyped-def]
    """Depthwise taps of one chunk, then the tail into ``out`` (m, cout).

    ``band`` (rows, wp, cin) in the compute dtype, ``w`` (kh, kw, cout), ``acc`` (>= m, cout)
    workspace, ``g`` = (sh, sw, dh, dw, wo, mult)."""
    sh, sw, dh, dw, wo, mult = g[0], g[1], g[2], g[3], g[4], g[5]
    kh, kw, cout = w.shape[0], w.shape[1], w.shape[2]
    cin = band.shape[2]
    zp, lo, hi = z[0], z[1], z[2]
    for i in range(out.shape[0]):
        r, x = i // wo, i % wo
        a = acc[i]
        for c in range(cout):
            a[c] = 0
        for ky in range(kh):
            row = band[r * sh + ky * dh]
            for kx in range(kw):
                v = row[x * sw + kx * dw]
                wt = w[ky, kx]
                if mult == 1:
                    for c in range(cout):
                        a[c] += v[c] * wt[c]
                else:
                    for ci in range(cin):
                        vc = v[ci]
                        for j in range(mult):
                            a[ci * mult + j] += vc * wt[ci * mult + j]
        o = out[i]
        for c in range(cout):
            o[c] = requant(a[c], q, c, zp, lo, hi)

