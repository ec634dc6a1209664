"""``sinf`` and ``cosf`` as glibc computes them, in numpy: tflite-micro's float SIN and COS call them.

glibc (2.28 and later; the reference machine has 2.36) takes ``sinf``/``cosf`` from Szabolcs Nagy's
optimized-routines; they are not correctly rounded. The method, in float64 as the C code does:

- ``|x| < 2^-12``: ``sinf(x) = x``, ``cosf(x) = 1``;
- ``|x| < 120`` (exponent test on the top 12 bits): ``n`` the nearest multiple of pi/2, from
  ``((int32) (x 2^24 2/pi) + 2^23) >> 24``, and ``r = x - n pi/2``;
- larger finite ``|x|``: a 192-bit fixed-point product of the significand with 4/pi (the published table of its
  bits, 8 new bits an entry) gives ``n`` and ``r`` (``r = (int64) residue * 2pi 2^-64``); the sign of x joins
  the quadrant;
- by quadrant: the sine polynomial ``r + S1 r^3 + r^7 (S2 + S3 r^2)`` of ``+-r`` or the cosine polynomial
  ``C0 + C1 r^2 + C2 r^4 + r^6 (C3 + C4 r^2)``, negated in the quadrants where the result is;
- rounded once to float32; NaN for +-inf and NaN.

x86-64 CPUs with FMA run glibc's ``-mfma`` build, whose ``x - n pi/2`` is one fused operation: a cancellation
whose rounding matters, so it is evaluated exactly here (``pi/2`` split so ``n`` times its high part is exact).
"""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.libm_common import ChunkedFunction, split_high

HPI_INV = float.fromhex("0x1.45F306DC9C883p+23")  # 2/pi 2^24
HPI = float.fromhex("0x1.921FB54442D18p0")  # pi/2
HPI_HIGH, HPI_LOW = split_high(HPI, 45)  # |n| < 2^7: n * HPI_HIGH is exact
PI63 = float.fromhex("0x1.921FB54442D18p-62")  # 2 pi 2^-64
C0, C1, C2, C3, C4 = (1.0, float.fromhex("-0x1.ffffffd0c621cp-2"), float.fromhex("0x1.55553e1068f19p-5"),
                      float.fromhex("-0x1.6c087e89a359dp-10"), float.fromhex("0x1.99343027bf8c3p-16"))
S1, S2, S3 = (float.fromhex("-0x1.555545995a603p-3"), float.fromhex("0x1.1107605230bc4p-7"),
              float.fromhex("-0x1.994eb3774cf24p-13"))


def _inv_pio4() -> np.ndarray:
    """Entry i: bits ``8 i`` to ``8 i + 31`` of the binary fraction of 2/pi (so 4/pi shifted), from 2/pi to
    more than 224 bits (Machin's formula in integers)."""
    prec = 300
    one = 1 << (prec + 20)

    def arctan_inv(m: int) -> int:
        total, term, k, sign = 0, one // m, 1, 1
        while term:
            total += sign * (term // k)
            term //= m * m
            k += 2
            sign = -sign
        return total

    pi_fixed = 4 * (4 * arctan_inv(5) - arctan_inv(239))  # pi 2^(prec + 20)
    two_over_pi = (2 * one * one) // pi_fixed  # 2/pi 2^(prec + 20)
    frac = two_over_pi >> 20  # 2/pi 2^prec
    return np.array([(frac >> (prec - 8 * (i + 1))) & 0xFFFFFFFF for i in range(24)], np.uint64)


INV_PIO4 = _inv_pio4()
SIGN = np.array([1.0, -1.0, -1.0, 1.0], np.float64)
_TOP_TINY, _TOP_FAST, _TOP_INF = 0x398, 0x42F, 0x7F8  # top 12 bits of 2^-12, 120 and inf


def _reduce_large(bits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, r) of the 192-bit reduction for float32 bit patterns of finite ``|x| >= 120`` (a few values: arrays
    made per call)."""
    b = bits.astype(np.uint64)
    table = ((b >> np.uint64(26)) & np.uint64(15)).astype(np.intp)
    shift = (b >> np.uint64(23)) & np.uint64(7)
    m = ((b & np.uint64(0xFFFFFF)) | np.uint64(0x800000)) << shift
    low32 = np.uint64(0xFFFFFFFF)
    res0 = (m * INV_PIO4[table]) & low32
    res1 = m * INV_PIO4[table + 4]
    res2 = m * INV_PIO4[table + 8]
    res0 = (res2 >> np.uint64(32)) | (res0 << np.uint64(32))
    res0 = res0 + res1  # wraps modulo 2^64, as in C
    n = (res0 + np.uint64(1 << 61)) >> np.uint64(62)
    res0 = res0 - (n << np.uint64(62))
    return n.astype(np.int64), res0.view(np.int64).astype(np.float64) * PI63


class _SinCosF(ChunkedFunction):
    """The shared evaluation; ``COS`` picks the function."""

    COS = False
    BUFFERS = {"top": np.uint32, "xd": np.float64, "r": np.float64, "t": np.float64, "x2": np.float64,
               "ps": np.float64, "pc": np.float64, "u": np.float64, "n": np.intp, "q": np.intp,
               "m": np.bool_, "kind": np.bool_, "neg": np.bool_}

    def _chunk(self, x: np.ndarray, out: np.ndarray) -> None:
        n_ = x.size
        top, xd, r, t, x2 = self.top[:n_], self.xd[:n_], self.r[:n_], self.t[:n_], self.x2[:n_]
        ps, pc, u, n, q = self.ps[:n_], self.pc[:n_], self.u[:n_], self.n[:n_], self.q[:n_]
        m, kind, neg = self.m[:n_], self.kind[:n_], self.neg[:n_]
        np.right_shift(x.view(np.uint32), np.uint32(20), out=top)
        np.bitwise_and(top, np.uint32(0x7FF), out=top)
        np.copyto(xd, x)
        large = bool(np.greater_equal(top, np.uint32(_TOP_FAST), out=m).any())
        if large:
            np.putmask(xd, m, 0.0)  # the large and non-finite values: done below
        # n = ((int32) (x 2^24 2/pi) + 2^23) >> 24; r = fma(-n, pi/2, x)
        np.multiply(xd, HPI_INV, out=r)
        np.trunc(r, out=r)
        np.copyto(n, r, casting="unsafe")
        np.add(n, 0x800000, out=n)
        np.right_shift(n, 24, out=n)
        np.copyto(q, n)
        np.copyto(t, n)
        np.multiply(t, HPI_HIGH, out=r)
        np.subtract(xd, r, out=r)  # exact
        np.multiply(t, HPI_LOW, out=t)
        np.subtract(r, t, out=r)
        if large:
            big = np.flatnonzero(m)
            bits = x.view(np.uint32)[big]
            finite = bits & np.uint32(0x7FFFFFFF) < np.uint32(0x7F800000)
            nl, rl = _reduce_large(np.where(finite, bits, np.uint32(0x43000000)))
            n[big] = nl
            q[big] = nl + (bits >> np.uint32(31)).astype(np.int64)  # the sign joins the quadrant
            r[big] = rl
        # the polynomial's kind by n (cosine for odd n in sinf, even n in cosf), its signs by q
        np.bitwise_and(n, 1, out=n)
        np.copyto(kind, n, casting="unsafe")
        if self.COS:
            np.logical_not(kind, out=kind)
        np.bitwise_and(q, 3, out=q)
        SIGN.take(q, out=t, mode="wrap")
        np.multiply(r, r, out=x2)
        np.multiply(r, t, out=r)  # +-r
        # sine: s = r + r^3 S1; s + r^7 (S2 + r^2 S3)
        np.multiply(r, x2, out=t)  # x3
        np.multiply(x2, S3, out=ps)
        np.add(ps, S2, out=ps)  # s1
        np.multiply(t, x2, out=u)  # x7
        np.multiply(ps, u, out=ps)
        np.multiply(t, S1, out=t)
        np.add(t, r, out=t)  # s
        np.add(t, ps, out=ps)
        # cosine: c = (C0 + r^2 C1) + r^4 C2; c + r^6 (C3 + r^2 C4)
        np.multiply(x2, x2, out=t)  # x4
        np.multiply(x2, C4, out=pc)
        np.add(pc, C3, out=pc)  # c2
        np.multiply(t, x2, out=u)  # x6
        np.multiply(pc, u, out=pc)
        np.multiply(x2, C1, out=u)
        np.add(u, C0, out=u)  # c1
        np.multiply(t, C2, out=t)
        np.add(u, t, out=u)  # c
        np.add(u, pc, out=pc)
        np.greater_equal(q, 2, out=neg)  # the second table: the cosine negated
        np.negative(pc, out=u)
        np.putmask(pc, neg, u)
        np.putmask(ps, kind, pc)
        # tiny, then non-finite (decided before out, which may be x, is written)
        if np.less(top, np.uint32(_TOP_TINY), out=kind).any():
            np.putmask(ps, kind, 1.0 if self.COS else xd)  # sinf: x itself (exactly, as float64)
        np.copyto(out, ps, casting="same_kind")
        if large and np.greater_equal(top, np.uint32(_TOP_INF), out=m).any():
            np.putmask(out, m, np.float32(np.nan))


class SinF(_SinCosF):
    """glibc's ``sinf`` over float32 arrays, in buffers made once (see the module docstring)."""

    COS = False


class CosF(_SinCosF):
    """glibc's ``cosf`` over float32 arrays, in buffers made once (see the module docstring)."""

    COS = True
