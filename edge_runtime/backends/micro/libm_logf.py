"""``logf`` as glibc computes it, in numpy: the float32 logarithm tflite-micro's float LOG and LOG_SOFTMAX call.

glibc (2.28 and later; the reference machine has 2.36) takes ``logf`` from Szabolcs Nagy's optimized-routines
(shared with musl); it is not correctly rounded. The method, evaluated here in float64 as the C code does:

- ``x = 2^k z`` with ``z`` in ``[0x1.66p-1, 0x1.66p0)``: ``tmp = bits(x) - 0x3f330000``, ``k = tmp >> 23``
  (arithmetic), ``bits(z) = bits(x) - (tmp & 0xff800000)``; subnormals are first scaled by ``2^23``;
- a 16-entry table indexed by the 4 bits of ``tmp`` below the exponent gives ``1/c`` and ``log c`` for ``c``
  near ``z``;
- ``r = z/c - 1`` (``z * invc - 1``), ``log x = k ln2 + log c + r + A2 r^2 + A1 r^3 + A0 r^4`` in the published
  order of operations, rounded once to float32.

x86-64 CPUs with FMA run glibc's ``-mfma`` build, where ``z * invc - 1`` is one fused operation; it is the one
step whose rounding matters (a cancellation), so it is evaluated exactly here (``invc`` split so the product of
its high part with the 24-bit ``z`` is exact). Special values: ``logf(+-0) = -inf``, ``logf(inf) = inf``, NaN
for negatives and NaN.
"""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.libm_common import ChunkedFunction, split_high

#: (1/c, log c) per table entry, the method's published constants (facts of the method, as hex floats).
_TABLE = [
    ("0x1.661ec79f8f3bep+0", "-0x1.57bf7808caadep-2"), ("0x1.571ed4aaf883dp+0", "-0x1.2bef0a7c06ddbp-2"),
    ("0x1.49539f0f010bp+0", "-0x1.01eae7f513a67p-2"), ("0x1.3c995b0b80385p+0", "-0x1.b31d8a68224e9p-3"),
    ("0x1.30d190c8864a5p+0", "-0x1.6574f0ac07758p-3"), ("0x1.25e227b0b8eap+0", "-0x1.1aa2bc79c81p-3"),
    ("0x1.1bb4a4a1a343fp+0", "-0x1.a4e76ce8c0e5ep-4"), ("0x1.12358f08ae5bap+0", "-0x1.1973c5a611cccp-4"),
    ("0x1.0953f419900a7p+0", "-0x1.252f438e10c1ep-5"), ("0x1p+0", "0x0p+0"),
    ("0x1.e608cfd9a47acp-1", "0x1.aa5aa5df25984p-5"), ("0x1.ca4b31f026aap-1", "0x1.c5e53aa362eb4p-4"),
    ("0x1.b2036576afce6p-1", "0x1.526e57720db08p-3"), ("0x1.9c2d163a1aa2dp-1", "0x1.bc2860d22477p-3"),
    ("0x1.886e6037841edp-1", "0x1.1058bc8a07ee1p-2"), ("0x1.767dcf5534862p-1", "0x1.4043057b6ee09p-2"),
]
INVC = np.array([float.fromhex(a) for a, _ in _TABLE], np.float64)
LOGC = np.array([float.fromhex(b) for _, b in _TABLE], np.float64)
#: ``invc`` as high (24 significant bits: its product with a float32 is exact) plus low parts.
INVC_HIGH = np.array([split_high(v, 24)[0] for v in INVC], np.float64)
INVC_LOW = INVC - INVC_HIGH
LN2 = float.fromhex("0x1.62e42fefa39efp-1")
A0, A1, A2 = (float.fromhex("-0x1.00ea348b88334p-2"), float.fromhex("0x1.5575b0be00b6ap-2"),
              float.fromhex("-0x1.ffffef20a4123p-2"))
OFF = np.uint32(0x3F330000)


class LogF(ChunkedFunction):
    """glibc's ``logf`` over float32 arrays, in buffers made once (see the module docstring)."""

    BUFFERS = {"ix": np.uint32, "tmp": np.uint32, "scaled": np.float32, "index": np.intp, "r": np.float64,
               "y": np.float64, "t": np.float64, "c": np.float64, "bad": np.bool_, "mask": np.bool_,
               "pinf": np.bool_, "zero": np.bool_}

    def _chunk(self, x: np.ndarray, out: np.ndarray) -> None:
        n = x.size
        ix, tmp, scaled, index = self.ix[:n], self.tmp[:n], self.scaled[:n], self.index[:n]
        r, y, t, c, bad, mask = self.r[:n], self.y[:n], self.t[:n], self.c[:n], self.bad[:n], self.mask[:n]
        pinf, zero = self.pinf[:n], self.zero[:n]
        np.copyto(ix, x.view(np.uint32))
        np.greater_equal(ix, np.uint32(0x7F800000), out=bad)  # negatives, +inf and NaN: NaN ...
        np.equal(ix, np.uint32(0x7F800000), out=pinf)  # ... but +inf
        np.add(ix, ix, out=tmp)
        np.equal(tmp, 0, out=zero)  # +-0: -inf
        # subnormals (0 < bits < 2^23): the bits of x * 2^23, less 23 in the exponent field
        np.multiply(x, np.float32(2.0 ** 23), out=scaled)
        np.less(ix, np.uint32(0x00800000), out=mask)
        np.subtract(scaled.view(np.uint32), np.uint32(23 << 23), out=tmp)
        if mask.any():  # (also +0: its result is replaced below)
            np.putmask(ix, mask, tmp)
        np.subtract(ix, OFF, out=tmp)  # uint32 wrap-around, as in C
        np.right_shift(tmp, np.uint32(23 - 4), out=index, casting="unsafe")
        np.bitwise_and(index, 15, out=index)
        np.bitwise_and(tmp, np.uint32(0xFF800000), out=tmp)
        np.subtract(ix, tmp, out=ix)  # bits of z
        np.copyto(y, ix.view(np.float32))  # z, exactly
        INVC_HIGH.take(index, out=t, mode="wrap")
        np.multiply(y, t, out=r)  # exact
        np.subtract(r, 1.0, out=r)  # exact (Sterbenz)
        INVC_LOW.take(index, out=t, mode="wrap")
        np.multiply(y, t, out=t)
        np.add(r, t, out=r)  # r = fma(z, invc, -1)
        # k = (int32) tmp >> 23 with tmp = bits(x) - OFF: tmp & 0xff800000 holds it in its top 9 bits
        np.copyto(t, tmp.view(np.int32))
        np.multiply(t, 2.0 ** -23, out=t)  # k (exact: a multiple of 2^23 scaled)
        LOGC.take(index, out=c, mode="wrap")
        np.multiply(t, LN2, out=t)
        np.add(t, c, out=c)  # y0 = logc + k ln2
        np.add(c, r, out=c)  # y0 + r
        np.multiply(r, r, out=t)  # r2
        np.multiply(r, A1, out=y)
        np.add(y, A2, out=y)  # A1 r + A2
        np.multiply(t, A0, out=r)
        np.add(r, y, out=y)  # A0 r2 + y
        np.multiply(y, t, out=y)
        np.add(y, c, out=y)  # y r2 + (y0 + r)
        np.copyto(out, y, casting="same_kind")
        if bad.any() or zero.any():
            np.putmask(out, bad, np.float32(np.nan))
            np.putmask(out, pinf, np.float32(np.inf))
            np.putmask(out, zero, np.float32(-np.inf))
