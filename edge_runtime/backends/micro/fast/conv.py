"""Compiled CONV_2D / DEPTHWISE_CONV_2D pieces: the requantization tail and the depthwise taps.

The numpy kernels keep their band (input rows widened to the compute dtype, padding set
to the input zero point, in-place line buffers) and, for CONV_2D, the BLAS product; these
loops replace what numpy spends many passes on (the im2col gather stays numpy's strided
copy: compiled gathers, tried for short and long runs, were slower on these layers):

- :func:`tail`: accumulators (float32/float64 holding exact integers, or int64) plus the
  folded bias -> int8, in one pass (:mod:`requant`);
- :func:`depthwise`: the kh*kw taps of a chunk summed per channel (any depth multiplier),
  followed by the tail, in one call.
"""
from __future__ import annotations

from edge_runtime.backends.micro.fast.jit import kernel
from edge_runtime.backends.micro.fast.requant import requant


@kernel
def tail(acc, q, out):  # type: ignore[no-untyped-def]
    """``out[m, c] = requant(acc[m, c])`` (``q``: :func:`requant.pack`)."""
    zp, lo, hi = q[5, 0], q[5, 1], q[5, 2]
    for i in range(acc.shape[0]):
        for c in range(acc.shape[1]):
            out[i, c] = requant(acc[i, c], q, c, zp, lo, hi)


@kernel
def depthwise(band, w, q, acc, out):  # type: ignore[no-untyped-def]
    """Depthwise taps of one chunk, then the tail into ``out`` (m, cout).

    ``band`` (rows, wp, cin) in the compute dtype, ``w`` (kh, kw, cout), ``acc`` (>= m, cout)
    workspace, ``q`` packed with the geometry (sh, sw, dh, dw, wo, mult)."""
    zp, lo, hi = q[5, 0], q[5, 1], q[5, 2]
    sh, sw, dh, dw, wo, mult = q[5, 3], q[5, 4], q[5, 5], q[5, 6], q[5, 7], q[5, 8]
    kh, kw, cout = w.shape[0], w.shape[1], w.shape[2]
    cin = band.shape[2]
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

