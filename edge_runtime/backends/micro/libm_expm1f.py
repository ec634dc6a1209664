"""``expm1f`` as glibc computes it, in numpy: ``e^x - 1`` in float32, for tflite-micro's float ELU (and ``tanhf``).

glibc up to 2.40 keeps the Sun fdlibm ``expm1f`` (2.41 moved to CORE-MATH's correctly rounded one): all
float32 arithmetic (each operation rounded to float32, no fused multiply-adds), not correctly rounded. The method:

- reduction ``x = k ln2 + r``: ``k = +-1`` for ``0.5 ln2 < |x| < 1.5 ln2``, else
  ``k = (int)(x / ln2 +- 0.5)`` above ``0.5 ln2``, ``k = 0`` below; ``ln2`` as ``ln2_hi + ln2_lo`` so that
  ``hi = x - k ln2_hi`` is exact; ``r = hi - lo`` and the correction ``c = (hi - r) - lo``;
- a rational approximation of ``expm1(r)`` from the scaled polynomial ``r1 = 1 + hxs (Q1 + ... Q5)`` with
  ``hxs = r^2/2``;
- the scaling by ``2^k``, in the algorithm's cases for ``k = 0``, ``-1``, ``1``, ``k <= -2`` or ``k > 56``,
  ``2 <= k < 23`` and ``23 <= k <= 56`` (``2^k`` added to the exponent field).

Limits: x for ``|x| < 2^-25`` (also +-0 and subnormals), -1 below ``-27 ln2`` (and -inf), inf from
``0x1.62e43p6`` up (and +inf), NaN for NaN.
"""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.libm_common import ChunkedFunction


def _f32(bits: int) -> np.float32:
    return np.array([bits], np.uint32).view(np.float32)[0]


#: The method's constants, by their float32 bit patterns.
LN2_HI, LN2_LO, INV_LN2 = _f32(0x3F317180), _f32(0x3717F7D1), _f32(0x3FB8AA3B)
Q = (_f32(0xBD088889), _f32(0x3AD00D01), _f32(0xB8A670CD), _f32(0x36867E54), _f32(0xB457EDBB))
F = np.float32


class ExpM1F(ChunkedFunction):
    """glibc's ``expm1f`` over float32 arrays, in buffers made once (see the module docstring).

    Every value goes through the same float32 operations (special values through harmless ones); the result
    of each scaling case is computed only when the chunk holds a value of that case, and put in place with
    ``np.putmask``."""

    BUFFERS = {"hx": np.uint32, "k": np.float32, "ki": np.int32, "kb": np.int32, "hi": np.float32,
               "xr": np.float32, "c": np.float32, "hfx": np.float32, "hxs": np.float32, "r1": np.float32,
               "t": np.float32, "e": np.float32, "y": np.float32, "w": np.float32, "m": np.bool_, "m2": np.bool_,
               "tiny": np.bool_, "minus1": np.bool_, "inf": np.bool_, "nan": np.bool_}

    def _chunk(self, x: np.ndarray, out: np.ndarray) -> None:
        n = x.size
        hx, k, hi, xr, c, hfx, hxs, r1, t, e, y, w = self.views(n, "hx k hi xr c hfx hxs r1 t e y w")
        m, m2, tiny, minus1, inf, nan = self.views(n, "m m2 tiny minus1 inf nan")
        tb = t.view(np.uint32)
        np.bitwise_and(x.view(np.uint32), np.uint32(0x7FFFFFFF), out=hx)
        # the special results, decided before out (which may be x) is written
        has_tiny = bool(np.less(hx, np.uint32(0x33000000), out=tiny).any())  # x itself
        special = bool(np.greater_equal(hx, np.uint32(0x4195B844), out=m).any())
        if special:  # (|x| >= 27 ln2 somewhere)
            np.signbit(x, out=m2)
            np.logical_and(m, m2, out=minus1)  # below -27 ln2: -1
            np.greater_equal(hx, np.uint32(0x42B17218), out=m)
            np.greater(m, m2, out=inf)  # from 0x1.62e43p6 up: inf
            np.greater(hx, np.uint32(0x7F800000), out=nan)
            special = bool(minus1.any() or inf.any() or nan.any())
        # k: (int)(x / ln2 +- 0.5) above 1.5 ln2, +-1 above 0.5 ln2, 0 below
        np.bitwise_and(x.view(np.uint32), np.uint32(0x80000000), out=tb)
        np.bitwise_or(tb, np.uint32(0x3F000000), out=tb)  # +-0.5 with x's sign
        np.multiply(x, INV_LN2, out=k)
        np.add(k, t, out=k)
        np.trunc(k, out=k)
        np.bitwise_or(tb, np.uint32(0x3F800000), out=tb)  # +-1
        np.less(hx, np.uint32(0x3F851592), out=m)
        np.putmask(k, m, t)
        np.less_equal(hx, np.uint32(0x3EB17218), out=m)
        np.putmask(k, m, F(0.0))
        if special:  # keep the arithmetic of the special values quiet and finite
            np.logical_or(minus1, inf, out=m)
            np.logical_or(m, nan, out=m)
            np.putmask(k, m, F(0.0))
        # r = hi - lo, c = (hi - r) - lo
        np.multiply(k, LN2_HI, out=t)
        np.subtract(x, t, out=hi)
        np.multiply(k, LN2_LO, out=t)  # lo
        np.subtract(hi, t, out=xr)
        np.subtract(hi, xr, out=c)
        np.subtract(c, t, out=c)
        # the rational approximation
        np.multiply(xr, F(0.5), out=hfx)
        np.multiply(xr, hfx, out=hxs)
        np.multiply(hxs, Q[4], out=r1)
        for q in (Q[3], Q[2], Q[1], Q[0]):
            np.add(r1, q, out=r1)
            np.multiply(r1, hxs, out=r1)
        np.add(r1, F(1.0), out=r1)
        np.multiply(r1, hfx, out=t)
        np.subtract(F(3.0), t, out=t)  # t = 3 - r1 hfx
        np.multiply(xr, t, out=w)
        np.subtract(F(6.0), w, out=w)
        np.subtract(r1, t, out=e)
        np.divide(e, w, out=e)
        np.multiply(e, hxs, out=e)  # e = hxs ((r1 - t) / (6 - x t))
        # k == 0: x - (x e - hxs)
        np.multiply(xr, e, out=y)
        np.subtract(y, hxs, out=y)
        np.subtract(xr, y, out=y)
        if k.any():
            # k != 0: e = (x (e - c) - c) - hxs
            np.subtract(e, c, out=e)
            np.multiply(e, xr, out=e)
            np.subtract(e, c, out=e)
            np.subtract(e, hxs, out=e)
            self._scaled(xr, e, k, t, w, m, m2, y, n)
        if has_tiny:
            np.putmask(y, tiny, x)
        if special:
            np.putmask(y, minus1, F(-1.0))
            np.putmask(y, inf, F(np.inf))
            np.putmask(y, nan, F(np.nan))
        np.copyto(out, y)

    def _scaled(self, xr: np.ndarray, e: np.ndarray, k: np.ndarray, t: np.ndarray, w: np.ndarray,
                m: np.ndarray, m2: np.ndarray, y: np.ndarray, n: int) -> None:
        """The results for k != 0 into ``y`` (whose k == 0 entries already hold theirs)."""
        ki, kb = self.ki[:n], self.kb[:n]
        wb, tb = w.view(np.int32), t.view(np.int32)
        np.copyto(ki, k, casting="unsafe")
        np.left_shift(ki, 23, out=kb)  # k in the exponent field
        # k == -1: 0.5 (x - e) - 0.5
        if np.equal(k, F(-1.0), out=m).any():
            np.subtract(xr, e, out=w)
            np.multiply(w, F(0.5), out=w)
            np.subtract(w, F(0.5), out=w)
            np.putmask(y, m, w)
        # k == 1: x < -0.25 ? -2 (e - (x + 0.5)) : 1 + 2 (x - e)
        if np.equal(k, F(1.0), out=m).any():
            np.add(xr, F(0.5), out=w)
            np.subtract(e, w, out=w)
            np.multiply(w, F(-2.0), out=w)
            np.subtract(xr, e, out=t)
            np.multiply(t, F(2.0), out=t)
            np.add(t, F(1.0), out=t)
            np.less(xr, F(-0.25), out=m2)
            np.putmask(t, m2, w)
            np.putmask(y, m, t)
        # k <= -2 or k > 56: (1 - (e - x)) 2^k - 1 (k added to the exponent; k == 128 by two products)
        np.less_equal(k, F(-2.0), out=m)
        np.greater(k, F(56.0), out=m2)
        if np.logical_or(m, m2, out=m).any():
            np.subtract(e, xr, out=w)
            np.subtract(F(1.0), w, out=w)
            if np.equal(k, F(128.0), out=m2).any():
                np.multiply(w, F(2.0), out=t)
                np.multiply(t, F(2.0 ** 127), out=t)
                np.add(wb, kb, out=wb)
                np.putmask(w, m2, t)
            else:
                np.add(wb, kb, out=wb)
            np.subtract(w, F(1.0), out=w)
            np.putmask(y, m, w)
        # 2 <= k <= 56, with p = 2^-k: k < 23: (1 - p) - (e - x); from 23: (x - (e + p)) + 1; k added to the exponent
        np.greater_equal(k, F(2.0), out=m)
        np.less_equal(k, F(56.0), out=m2)
        if np.logical_and(m, m2, out=m).any():
            np.subtract(np.int32(0x7F << 23), kb, out=tb)  # p
            np.add(e, t, out=w)
            np.subtract(xr, w, out=w)
            np.add(w, F(1.0), out=w)  # (x - (e + p)) + 1
            np.subtract(F(1.0), t, out=t)  # 1 - p
            np.subtract(e, xr, out=e)
            np.subtract(t, e, out=t)  # (1 - p) - (e - x)
            np.less(k, F(23.0), out=m2)
            np.putmask(w, m2, t)
            np.add(wb, kb, out=wb)
            np.putmask(y, m, w)
