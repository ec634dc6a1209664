"""Shared pieces of TFLM's Signal* custom ops: options, integer helpers and KissFFT.

Options: TFLM reads a Signal op's FlexBuffers map as a vector, by position, the keys
sorted alphabetically (``FlexbufferWrapper::ElementAsInt32(index)``); :func:`signal_options`
does the same. Integer helpers reproduce TFLM's ``MostSignificantBit32``, ``Sqrt32/64``
and ``Log32`` bit for bit, on numpy arrays.

:class:`KissFFT` is KissFFT v1.3.0 as TFLM builds it (``FIXED_POINT=16``, ``=32`` and float):
the mixed-radix decimation-in-time complex FFT (radices 4, 2, 3 and 5; TFLM's patched build
has no allocator, so a length with another prime factor crashes there and is refused here),
plus the real-FFT wrappers ``kiss_fftr`` and ``kiss_fftri``. Fixed point scales every stage
by 1/radix (``C_FIXDIV``) and rounds products half up (``sround``), storing every
intermediate in the 16/32-bit scalar type (wrapping, as C stores do). Each stage runs
vectorized over all butterflies and over the rows of a batch.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from edge_runtime.backends.micro.kernels.base import OpContext
from edge_runtime.errors import ModelFormatError
from edge_runtime.formats.flexbuffers import decode

I64 = np.int64
U64 = np.uint64
MASK32 = 0xFFFFFFFF


# ---------------------------------------------------------------------------
# options

def signal_options(ctx: OpContext, names: tuple[str, ...]) -> dict[str, Any]:
    """The op's FlexBuffers options read as TFLM does: by position in key order.

    ``names`` lists the keys TFLM expects, in alphabetical order; the value at each
    position is returned under that name (``T`` is also read by key when present).
    """
    raw = ctx.op.custom_options
    if raw is None or raw.size == 0:
        raise ctx.fail("the custom options (a FlexBuffers map) are missing")
    try:
        m = decode(raw.tobytes())
    except ModelFormatError as exc:
        raise ctx.fail(str(exc)) from None
    if not isinstance(m, dict):
        raise ctx.fail("the custom options are not a FlexBuffers map")
    keys = sorted(m, key=lambda k: k.encode() if isinstance(k, str) else bytes(k))
    if len(keys) < len(names):
        raise ctx.fail(f"the options hold {len(keys)} entries; expected {', '.join(names)}")
    out: dict[str, Any] = {}
    for pos, name in enumerate(names):
        v = m[keys[pos]]
        if v is None or isinstance(v, (bytes, str, list, dict)):
            raise ctx.fail(f"option '{name}' (entry {pos}) is not a number")
        out[name] = v
    if "T" in m:
        out["T"] = m["T"]
    return out


def int32_option(v: Any) -> int:
    """A FlexBuffers number as TFLM's ``ElementAsInt32`` gives it (truncated to 32 bits)."""
    x = int(v) & MASK32
    return x - (1 << 32) if x >= 1 << 31 else x


def require_rank(ctx: OpContext, t: Any, rank: int | None, what: str) -> None:
    """Check a tensor's number of dimensions (``None``: at least one)."""
    n = len(t.shape)
    if (rank is None and n < 1) or (rank is not None and n != rank):
        raise ctx.fail(f"the {what} must have {'>= 1' if rank is None else rank} dimension(s), got {n}")


def require_io_count(ctx: OpContext, n_in: int, n_out: int) -> None:
    """Check the op's input and output counts."""
    if len(ctx.op.inputs) != n_in or len(ctx.op.outputs) != n_out:
        raise ctx.fail(f"expects {n_in} input(s) and {n_out} output(s), got {len(ctx.op.inputs)} and "
                       f"{len(ctx.op.outputs)}")
    for i in range(n_in):
        if ctx.input(i) is None:
            raise ctx.fail(f"input {i} is missing")


def check_type(ctx: OpContext, t: Any, type_name: str, what: str) -> None:
    """Check a tensor's type."""
    if t is None or t.type_name != type_name:
        raise ctx.fail(f"the {what} must be {type_name.lower()}, got {getattr(t, 'type_name', 'none')}")


# ---------------------------------------------------------------------------
# integer helpers

def msb32(x: np.ndarray) -> np.ndarray:
    """``MostSignificantBit32`` of non-negative values (< 2**53): the bit length, 32 for zero."""
    _, e = np.frexp(x.astype(np.float64))
    return np.where(x == 0, 32, e).astype(I64)


def sqrt_rounded(n: int) -> int:
    """TFLM's ``Sqrt64``: the integer square root rounded to nearest (``Sqrt32`` below 2**32)."""
    if n == 0:
        return 0
    r = math.isqrt(n)
    cap = 0xFFFF if n < 1 << 32 else 0xFFFFFFFF
    return r + 1 if n - r * r > r and r != cap else r


LOG_LUT = np.array([
    0, 224, 442, 654, 861, 1063, 1259, 1450, 1636, 1817, 1992, 2163, 2329, 2490, 2646, 2797, 2944, 3087, 3224,
    3358, 3487, 3611, 3732, 3848, 3960, 4068, 4172, 4272, 4368, 4460, 4549, 4633, 4714, 4791, 4864, 4934, 5001,
    5063, 5123, 5178, 5231, 5280, 5326, 5368, 5408, 5444, 5477, 5507, 5533, 5557, 5578, 5595, 5610, 5622, 5631,
    5637, 5640, 5641, 5638, 5633, 5626, 5615, 5602, 5586, 5568, 5547, 5524, 5498, 5470, 5439, 5406, 5370, 5332,
    5291, 5249, 5203, 5156, 5106, 5054, 5000, 4944, 4885, 4825, 4762, 4697, 4630, 4561, 4490, 4416, 4341, 4264,
    4184, 4103, 4020, 3935, 3848, 3759, 3668, 3575, 3481, 3384, 3286, 3186, 3084, 2981, 2875, 2768, 2659, 2549,
    2437, 2323, 2207, 2090, 1971, 1851, 1729, 1605, 1480, 1353, 1224, 1094, 963, 830, 695, 559, 421, 282, 142, 0,
    0], dtype=I64)
"""The 129-entry correction table of TFLM's ``Log32`` (log2 minus its linear part, in 1/65536)."""


def msb32_into(x: np.ndarray, f64: np.ndarray, e32: np.ndarray, out: np.ndarray) -> None:
    """:func:`msb32` of positive values into ``out`` without allocating (``f64``/``e32``: scratch)."""
    np.copyto(f64, x)
    np.frexp(f64, out=(f64, e32))
    np.copyto(out, e32)


class Log32:
    """TFLM's ``Log32(x, out_scale)`` on a fixed-size int64 vector of values > 1, allocation-free."""

    def __init__(self, n: int, out_scale: int) -> None:
        self.scale = out_scale & MASK32
        self.f64 = np.zeros(n, np.float64)
        self.e32 = np.zeros(n, np.int32)
        self.it, self.frac, self.b, self.c0, self.c1, self.t = (np.zeros(n, I64) for _ in range(6))

    def __call__(self, x: np.ndarray, out: np.ndarray) -> None:
        """``out = Log32(x)`` (int64 arrays)."""
        it, frac, b, c0, c1, t = self.it, self.frac, self.b, self.c0, self.c1, self.t
        msb32_into(x, self.f64, self.e32, it)
        np.subtract(it, 1, out=it)                       # integer part of log2
        np.left_shift(1, it, out=t)
        np.subtract(x, t, out=frac)                      # x - 2**integer, then to 16 fractional bits
        np.subtract(16, it, out=t)
        np.maximum(t, 0, out=b)
        np.left_shift(frac, b, out=frac)
        np.negative(t, out=t)
        np.maximum(t, 0, out=t)
        np.right_shift(frac, t, out=frac)
        np.right_shift(frac, 9, out=b)                   # table segment
        np.take(LOG_LUT, b, out=c0)
        np.add(b, 1, out=t)
        np.take(LOG_LUT, t, out=c1)
        np.subtract(c1, c0, out=c1)
        np.left_shift(b, 9, out=t)
        np.subtract(frac, t, out=t)
        np.multiply(c1, t, out=c1)
        np.right_shift(c1, 16, out=c1)                   # interpolated correction
        np.add(frac, c0, out=frac)
        np.add(frac, c1, out=frac)
        np.bitwise_and(frac, MASK32, out=frac)
        np.left_shift(it, 16, out=t)
        np.add(t, frac, out=t)
        np.bitwise_and(t, MASK32, out=t)                 # log2 in Q16
        np.multiply(t, 45426, out=t)
        np.add(t, 32768, out=t)
        np.right_shift(t, 16, out=t)
        np.bitwise_and(t, MASK32, out=t)                 # ln in Q16
        np.multiply(t, self.scale, out=t)                # wraps past 2**63: only the low 32 bits matter
        np.bitwise_and(t, MASK32, out=t)
        np.add(t, 32768, out=t)
        np.bitwise_and(t, MASK32, out=t)
        np.right_shift(t, 16, out=out)


# ---------------------------------------------------------------------------
# KissFFT

def kiss_factors(n: int) -> list[tuple[int, int]]:
    """KissFFT's factorization: (radix, remaining length) pairs, powers of 4 first, then 2, 3, 5, ..."""
    p, out = 4, []
    floor_sqrt = math.floor(math.sqrt(n))
    while True:
        while n % p:
            p = 2 if p == 4 else 3 if p == 2 else p + 2
            if p > floor_sqrt:
                p = n
        n //= p
        out.append((p, n))
        if n <= 1:
            return out


def _input_order(factors: list[tuple[int, int]]) -> np.ndarray:
    """Where each position of KissFFT's work buffer reads the input from (its recursive decimation)."""
    def work(offset: int, fstride: int, level: int) -> list[int]:
        p, m = factors[level]
        if m == 1:
            return [offset + j * fstride for j in range(p)]
        res: list[int] = []
        for j in range(p):
            res += work(offset + j * fstride, fstride * p, level + 1)
        return res
    return np.array(work(0, 1, 0), dtype=np.intp)


class KissFFT:
    """KissFFT (v1.3.0) on rows of complex values, as TFLM builds it for one scalar type.

    ``kind``: ``"int16"``, ``"int32"`` or ``"float32"``. Complex values travel as (re, im)
    pairs of int64 arrays (fixed point, holding values of the scalar type) or float32 arrays.
    """

    def __init__(self, nfft: int, inverse: bool, kind: str) -> None:
        self.n, self.inverse, self.kind = nfft, inverse, kind
        self.fixed = kind != "float32"
        if self.fixed:
            bits = 16 if kind == "int16" else 32
            self.bits = bits
            self.frac = bits - 1
            self.samp_max = (1 << (bits - 1)) - 1
            self.half = 1 << (bits - 1)
            self.mask = (1 << bits) - 1
            self.round = 1 << (self.frac - 1)
        self.factors = kiss_factors(nfft)
        bad = [p for p, _ in self.factors if p not in (2, 3, 4, 5)]
        if bad:
            raise ValueError(f"length {nfft} has the prime factor {bad[0]}; TFLM's KissFFT build handles "
                             "radices 2, 3, 4 and 5 only")
        self.order = _input_order(self.factors)
        i = np.arange(nfft, dtype=np.float64)
        phase = -2 * np.pi * i / nfft
        if inverse:
            phase = -phase
        self.tw_r, self.tw_i = self.cexp(phase)
        # per stage: (p, m, fstride, twiddle rows (p-1, m) re/im)
        self.stages = []
        fstride = 1
        for p, m in self.factors:
            u = np.arange(m)
            idx = (np.arange(1, p)[:, None] * u[None, :] * fstride) % nfft
            self.stages.append((p, m, fstride, self.tw_r[idx], self.tw_i[idx]))
            fstride *= p
        self.stages.reverse()

    # -- scalar arithmetic of the build -------------------------------------------------------
    def cexp(self, phase: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Twiddles ``kf_cexp``: rounded to the scalar type (fixed) or cast to float."""
        if self.fixed:
            return (np.floor(0.5 + self.samp_max * np.cos(phase)).astype(I64),
                    np.floor(0.5 + self.samp_max * np.sin(phase)).astype(I64))
        return np.cos(phase).astype(np.float32), np.sin(phase).astype(np.float32)

    def wrap(self, x: np.ndarray) -> np.ndarray:
        """Store into the scalar type (two's complement wrap)."""
        if not self.fixed:
            return x
        return ((x + self.half) & self.mask) - self.half

    def sround(self, x: np.ndarray) -> np.ndarray:
        """``sround``: drop FRACBITS rounding half up, stored as a scalar."""
        return self.wrap((x + self.round) >> self.frac)

    def smul(self, a: np.ndarray, b: Any) -> np.ndarray:
        """``S_MUL``."""
        return self.sround(a * b) if self.fixed else a * b

    def cmul(self, ar: np.ndarray, ai: np.ndarray, br: Any, bi: Any) -> tuple[np.ndarray, np.ndarray]:
        """``C_MUL``."""
        if self.fixed:
            return self.sround(ar * br - ai * bi), self.sround(ar * bi + ai * br)
        return ar * br - ai * bi, ar * bi + ai * br

    def fixdiv(self, x: np.ndarray, k: int) -> np.ndarray:
        """``C_FIXDIV`` on one component (identity for float)."""
        return self.sround(x * (self.samp_max // k)) if self.fixed else x

    def half_of(self, x: np.ndarray) -> np.ndarray:
        """``HALF_OF``."""
        return x >> 1 if self.fixed else x * np.float32(0.5)

    # -- the complex FFT ---------------------------------------------------------------------
    def fft(self, xr: np.ndarray, xi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Transform rows (…, n) of complex values; returns new (re, im) arrays."""
        fr, fi = xr[..., self.order], xi[..., self.order]
        lead = fr.shape[:-1]
        for p, m, fstride, twr, twi in self.stages:
            shape = lead + (fstride, p, m)
            fr, fi = fr.reshape(shape), fi.reshape(shape)
            getattr(self, f"_bfly{p}")(fr, fi, m, fstride, twr, twi)
        return fr.reshape(lead + (self.n,)), fi.reshape(lead + (self.n,))

    def _bfly2(self, fr, fi, m, fstride, twr, twi) -> None:
        a_r, a_i = self.fixdiv(fr[..., 0, :], 2), self.fixdiv(fi[..., 0, :], 2)
        b_r, b_i = self.fixdiv(fr[..., 1, :], 2), self.fixdiv(fi[..., 1, :], 2)
        t_r, t_i = self.cmul(b_r, b_i, twr[0], twi[0])
        fr[..., 1, :], fi[..., 1, :] = self.wrap(a_r - t_r), self.wrap(a_i - t_i)
        fr[..., 0, :], fi[..., 0, :] = self.wrap(a_r + t_r), self.wrap(a_i + t_i)

    def _bfly4(self, fr, fi, m, fstride, twr, twi) -> None:
        w = self.wrap
        f = [(self.fixdiv(fr[..., q, :], 4), self.fixdiv(fi[..., q, :], 4)) for q in range(4)]
        s0 = self.cmul(*f[1], twr[0], twi[0])
        s1 = self.cmul(*f[2], twr[1], twi[1])
        s2 = self.cmul(*f[3], twr[2], twi[2])
        s5 = (w(f[0][0] - s1[0]), w(f[0][1] - s1[1]))
        f0 = (w(f[0][0] + s1[0]), w(f[0][1] + s1[1]))
        s3 = (w(s0[0] + s2[0]), w(s0[1] + s2[1]))
        s4 = (w(s0[0] - s2[0]), w(s0[1] - s2[1]))
        fr[..., 2, :], fi[..., 2, :] = w(f0[0] - s3[0]), w(f0[1] - s3[1])
        fr[..., 0, :], fi[..., 0, :] = w(f0[0] + s3[0]), w(f0[1] + s3[1])
        if self.inverse:
            fr[..., 1, :], fi[..., 1, :] = w(s5[0] - s4[1]), w(s5[1] + s4[0])
            fr[..., 3, :], fi[..., 3, :] = w(s5[0] + s4[1]), w(s5[1] - s4[0])
        else:
            fr[..., 1, :], fi[..., 1, :] = w(s5[0] + s4[1]), w(s5[1] - s4[0])
            fr[..., 3, :], fi[..., 3, :] = w(s5[0] - s4[1]), w(s5[1] + s4[0])

    def _bfly3(self, fr, fi, m, fstride, twr, twi) -> None:
        w = self.wrap
        epi_i = self.tw_i[fstride * m]
        f = [(self.fixdiv(fr[..., q, :], 3), self.fixdiv(fi[..., q, :], 3)) for q in range(3)]
        s1 = self.cmul(*f[1], twr[0], twi[0])
        s2 = self.cmul(*f[2], twr[1], twi[1])
        s3 = (w(s1[0] + s2[0]), w(s1[1] + s2[1]))
        s0 = (w(s1[0] - s2[0]), w(s1[1] - s2[1]))
        f1 = (w(f[0][0] - self.half_of(s3[0])), w(f[0][1] - self.half_of(s3[1])))
        s0 = (self.smul(s0[0], epi_i), self.smul(s0[1], epi_i))
        fr[..., 0, :], fi[..., 0, :] = w(f[0][0] + s3[0]), w(f[0][1] + s3[1])
        fr[..., 2, :], fi[..., 2, :] = w(f1[0] + s0[1]), w(f1[1] - s0[0])
        fr[..., 1, :], fi[..., 1, :] = w(f1[0] - s0[1]), w(f1[1] + s0[0])

    def _bfly5(self, fr, fi, m, fstride, twr, twi) -> None:
        w, sm = self.wrap, self.smul
        ya_r, ya_i = self.tw_r[fstride * m], self.tw_i[fstride * m]
        yb_r, yb_i = self.tw_r[2 * fstride * m], self.tw_i[2 * fstride * m]
        f = [(self.fixdiv(fr[..., q, :], 5), self.fixdiv(fi[..., q, :], 5)) for q in range(5)]
        s0 = (f[0][0].copy(), f[0][1].copy())  # scratch[0] is a copy (float views alias the buffer)
        s1 = self.cmul(*f[1], twr[0], twi[0])
        s2 = self.cmul(*f[2], twr[1], twi[1])
        s3 = self.cmul(*f[3], twr[2], twi[2])
        s4 = self.cmul(*f[4], twr[3], twi[3])
        s7 = (w(s1[0] + s4[0]), w(s1[1] + s4[1]))
        s10 = (w(s1[0] - s4[0]), w(s1[1] - s4[1]))
        s8 = (w(s2[0] + s3[0]), w(s2[1] + s3[1]))
        s9 = (w(s2[0] - s3[0]), w(s2[1] - s3[1]))
        fr[..., 0, :], fi[..., 0, :] = w(s0[0] + w(s7[0] + s8[0])), w(s0[1] + w(s7[1] + s8[1]))
        s5 = (w(s0[0] + sm(s7[0], ya_r) + sm(s8[0], yb_r)), w(s0[1] + sm(s7[1], ya_r) + sm(s8[1], yb_r)))
        s6 = (w(sm(s10[1], ya_i) + sm(s9[1], yb_i)), w(-sm(s10[0], ya_i) - sm(s9[0], yb_i)))
        fr[..., 1, :], fi[..., 1, :] = w(s5[0] - s6[0]), w(s5[1] - s6[1])
        fr[..., 4, :], fi[..., 4, :] = w(s5[0] + s6[0]), w(s5[1] + s6[1])
        s11 = (w(s0[0] + sm(s7[0], yb_r) + sm(s8[0], ya_r)), w(s0[1] + sm(s7[1], yb_r) + sm(s8[1], ya_r)))
        s12 = (w(-sm(s10[1], yb_i) + sm(s9[1], ya_i)), w(sm(s10[0], yb_i) - sm(s9[0], ya_i)))
        fr[..., 2, :], fi[..., 2, :] = w(s11[0] + s12[0]), w(s11[1] + s12[1])
        fr[..., 3, :], fi[..., 3, :] = w(s11[0] - s12[0]), w(s11[1] - s12[1])


class KissFFTR:
    """KissFFT's real FFT (``kiss_fftr``) or its inverse (``kiss_fftri``) of even length ``fft_length``."""

    def __init__(self, fft_length: int, inverse: bool, kind: str) -> None:
        if fft_length < 2 or fft_length % 2:
            raise ValueError(f"the FFT length {fft_length} must be even and >= 2")
        self.ncfft = n = fft_length // 2
        self.sub = KissFFT(n, inverse, kind)
        i = np.arange(n // 2, dtype=np.float64)
        phase = -np.pi * ((i + 1) / n + 0.5)
        if inverse:
            phase = -phase
        self.st_r, self.st_i = self.sub.cexp(phase)
        self.k = np.arange(1, n // 2 + 1)

    def forward(self, x: np.ndarray, out_r: np.ndarray, out_i: np.ndarray) -> None:
        """Real rows ``x`` (…, 2n) -> ``out_r/out_i`` (…, n+1) (int64 or float32 arrays)."""
        f, n, k = self.sub, self.ncfft, self.k
        tr, ti = f.fft(x[..., 0::2], x[..., 1::2])
        dc_r, dc_i = f.fixdiv(tr[..., 0], 2), f.fixdiv(ti[..., 0], 2)
        out_r[..., 0] = f.wrap(dc_r + dc_i)
        out_r[..., n] = f.wrap(dc_r - dc_i)
        out_i[..., 0] = 0
        out_i[..., n] = 0
        if not len(k):
            return
        pk_r, pk_i = f.fixdiv(tr[..., k], 2), f.fixdiv(ti[..., k], 2)
        pn_r, pn_i = f.fixdiv(tr[..., n - k], 2), f.fixdiv(f.wrap(-ti[..., n - k]), 2)
        f1_r, f1_i = f.wrap(pk_r + pn_r), f.wrap(pk_i + pn_i)
        f2_r, f2_i = f.wrap(pk_r - pn_r), f.wrap(pk_i - pn_i)
        tw_r, tw_i = f.cmul(f2_r, f2_i, self.st_r, self.st_i)

        def half(v: np.ndarray) -> np.ndarray:
            # HALF_OF(a + b): the sum is an int (int16 build) or int32 (int32 build, wraps)
            if f.fixed and f.bits == 32:
                v = f.wrap(v)
            return f.wrap(f.half_of(v))
        out_r[..., k], out_i[..., k] = half(f1_r + tw_r), half(f1_i + tw_i)
        out_r[..., n - k], out_i[..., n - k] = half(f1_r - tw_r), half(tw_i - f1_i)

    def inverse(self, xr: np.ndarray, xi: np.ndarray) -> np.ndarray:
        """Complex rows (…, n+1) -> real rows (…, 2n) (fixed point: scaled by 1/n as KissFFT does)."""
        f, n, k = self.sub, self.ncfft, self.k
        tr = np.zeros(xr.shape[:-1] + (n,), xr.dtype)
        ti = np.zeros_like(tr)
        tr[..., 0] = f.fixdiv(f.wrap(xr[..., 0] + xr[..., n]), 2)
        ti[..., 0] = f.fixdiv(f.wrap(xr[..., 0] - xr[..., n]), 2)
        if len(k):
            fk_r, fk_i = f.fixdiv(xr[..., k], 2), f.fixdiv(xi[..., k], 2)
            fn_r, fn_i = f.fixdiv(xr[..., n - k], 2), f.fixdiv(f.wrap(-xi[..., n - k]), 2)
            fe_r, fe_i = f.wrap(fk_r + fn_r), f.wrap(fk_i + fn_i)
            t_r, t_i = f.wrap(fk_r - fn_r), f.wrap(fk_i - fn_i)
            fo_r, fo_i = f.cmul(t_r, t_i, self.st_r, self.st_i)
            tr[..., k], ti[..., k] = f.wrap(fe_r + fo_r), f.wrap(fe_i + fo_i)
            tr[..., n - k], ti[..., n - k] = f.wrap(fe_r - fo_r), f.wrap(-f.wrap(fe_i - fo_i))
        yr, yi = f.fft(tr, ti)
        out = np.empty(xr.shape[:-1] + (2 * n,), xr.dtype)
        out[..., 0::2], out[..., 1::2] = yr, yi
        return out
