"""Shared pieces of TFLM's Signal* custom ops: options, integer helpers and KissFFT.

Options: TFLM reads a Signal op's FlexBuffers map as a vector, by position, the keys
sorted alphabetically (``FlexbufferWrapper::ElementAsInt32(index)``); :func:`signal_options`
does the same. Integer helpers reproduce TFLM's ``MostSignificantBit32`` and ``Log32`` bit
for bit on numpy arrays, without allocating at run time.

:class:`KissFFT` is KissFFT v1.3.0 as TFLM builds it (``FIXED_POINT=16``, ``=32`` and float):
the mixed-radix decimation-in-time complex FFT (radices 4, 2, 3 and 5; TFLM's patched build
has no allocator, so a length with another prime factor crashes there and is refused here),
plus the real-FFT wrappers ``kiss_fftr`` and ``kiss_fftri``. Fixed point scales every stage
by 1/radix (``C_FIXDIV``) and rounds products half up (``sround``), storing every
intermediate in the 16/32-bit scalar type (wrapping, as C stores do). Each stage runs
vectorized over all butterflies and over the rows of a batch, in preallocated buffers.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from edge_runtime.backends.micro.kernels.base import OpContext
from edge_runtime.errors import ModelFormatError
from edge_runtime.formats.flexbuffers import decode

I64 = np.int64
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


def check_tensor(ctx: OpContext, t: Any, type_name: str, rank: int | None, what: str) -> None:
    """Check a tensor's type and number of dimensions (``rank`` None: at least one)."""
    check_type(ctx, t, type_name, what)
    require_rank(ctx, t, rank, what)


class ResetWithModel:
    """Mixin for kernels with state between invocations: ``Model.reset()`` calls their ``reset()``."""

    def attach(self, interp: Any) -> None:
        """Register :meth:`reset` with the interpreter's reset hooks."""
        interp.state.on_reset(self.reset)  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------
# integer helpers

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
    """TFLM's ``MostSignificantBit32`` (bit length) of positive values into ``out``, allocation-free
    (``f64``/``e32``: float64/int32 scratch)."""
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
        LOG_LUT.take(b, out=c0)
        np.add(b, 1, out=t)
        LOG_LUT.take(t, out=c1)
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
    """KissFFT (v1.3.0) on ``rows`` rows of complex values, as TFLM builds it for one scalar type.

    ``kind``: ``"int16"``, ``"int32"`` or ``"float32"``. Complex values travel as (re, im)
    pairs of int64 arrays (fixed point, holding values of the scalar type) or float32 arrays.
    Every buffer is allocated here: :meth:`fft` only writes into them.
    """

    POOL = 40

    def __init__(self, nfft: int, inverse: bool, kind: str, rows: int) -> None:
        self.n, self.inverse, self.kind, self.rows = nfft, inverse, kind, rows
        self.fixed = kind != "float32"
        self.dtype = np.dtype(I64) if self.fixed else np.dtype(np.float32)
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
        # per stage, deepest first: (p, m, fstride, twiddle rows (p-1, m) re/im)
        self.stages = []
        fstride = 1
        for p, m in self.factors:
            u = np.arange(m)
            idx = (np.arange(1, p)[:, None] * u[None, :] * fstride) % nfft
            self.stages.append((p, m, fstride, self.tw_r[idx], self.tw_i[idx]))
            fstride *= p
        self.stages.reverse()
        self.data_r = np.zeros((rows, nfft), self.dtype)
        self.data_i = np.zeros((rows, nfft), self.dtype)
        self.pool = np.zeros((self.POOL, rows * max(1, nfft // 2)), self.dtype)
        self.plan = []  # per stage: (butterfly, views of the data, m, fstride, twiddles, scratch shape)
        for p, m, fstride, twr, twi in self.stages:
            shape = (rows, fstride, p, m)
            self.plan.append((getattr(self, f"_bfly{p}"), self.data_r.reshape(shape), self.data_i.reshape(shape),
                              m, fstride, twr, twi, (rows, fstride, m)))

    def scratch(self, k: int, shape: tuple[int, ...]) -> np.ndarray:
        """Pool slot ``k`` viewed as ``shape``."""
        return self.pool[k, :int(np.prod(shape))].reshape(shape)

    # -- scalar arithmetic of the build, in place ----------------------------------------------
    def cexp(self, phase: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Twiddles ``kf_cexp``: rounded to the scalar type (fixed) or cast to float."""
        if self.fixed:
            return (np.floor(0.5 + self.samp_max * np.cos(phase)).astype(I64),
                    np.floor(0.5 + self.samp_max * np.sin(phase)).astype(I64))
        return np.cos(phase).astype(np.float32), np.sin(phase).astype(np.float32)

    def wrap(self, x: np.ndarray) -> np.ndarray:
        """Store into the scalar type (two's complement wrap), in place."""
        if self.fixed:
            np.add(x, self.half, out=x)
            np.bitwise_and(x, self.mask, out=x)
            np.subtract(x, self.half, out=x)
        return x

    def sround(self, x: np.ndarray) -> None:
        """``sround`` in place: drop FRACBITS rounding half up, stored as a scalar."""
        np.add(x, self.round, out=x)
        np.right_shift(x, self.frac, out=x)
        self.wrap(x)

    def smul(self, a: np.ndarray, b: Any, out: np.ndarray) -> np.ndarray:
        """``S_MUL``."""
        np.multiply(a, b, out=out)
        if self.fixed:
            self.sround(out)
        return out

    def cmul(self, ar: np.ndarray, ai: np.ndarray, br: Any, bi: Any, out_r: np.ndarray, out_i: np.ndarray,
             tmp: np.ndarray) -> None:
        """``C_MUL`` (outputs must not alias the operands)."""
        np.multiply(ar, br, out=out_r)
        np.multiply(ai, bi, out=tmp)
        np.subtract(out_r, tmp, out=out_r)
        np.multiply(ar, bi, out=out_i)
        np.multiply(ai, br, out=tmp)
        np.add(out_i, tmp, out=out_i)
        if self.fixed:
            self.sround(out_r)
            self.sround(out_i)

    def fixdiv(self, x: np.ndarray, k: int, out: np.ndarray) -> np.ndarray:
        """``C_FIXDIV`` on one component (a copy for float)."""
        if self.fixed:
            np.multiply(x, self.samp_max // k, out=out)
            self.sround(out)
        else:
            np.copyto(out, x)
        return out

    def add(self, a: Any, b: Any, out: np.ndarray) -> np.ndarray:
        """``a + b`` stored as a scalar."""
        return self.wrap(np.add(a, b, out=out))

    def sub(self, a: Any, b: Any, out: np.ndarray) -> np.ndarray:
        """``a - b`` stored as a scalar."""
        return self.wrap(np.subtract(a, b, out=out))

    def half_of(self, x: np.ndarray, out: np.ndarray) -> np.ndarray:
        """``HALF_OF``."""
        if self.fixed:
            return np.right_shift(x, 1, out=out)
        return np.multiply(x, np.float32(0.5), out=out)

    # -- the complex FFT ---------------------------------------------------------------------
    def fft(self, xr: np.ndarray, xi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Transform rows (rows, n) of complex values; returns the (re, im) buffers of this object."""
        xr.take(self.order, axis=-1, out=self.data_r)
        xi.take(self.order, axis=-1, out=self.data_i)
        for bfly, fr, fi, m, fstride, twr, twi, part in self.plan:
            bfly(fr, fi, m, fstride, twr, twi, part)
        return self.data_r, self.data_i

    def _load(self, fr: np.ndarray, fi: np.ndarray, p: int, part: tuple[int, ...]) -> list[tuple[np.ndarray, ...]]:
        """The p inputs of the butterflies, each divided by p (pool slots 0 .. 2p-1)."""
        out = []
        for q in range(p):
            out.append((self.fixdiv(fr[..., q, :], p, self.scratch(2 * q, part)),
                        self.fixdiv(fi[..., q, :], p, self.scratch(2 * q + 1, part))))
        return out

    def _pair(self, k: int, part: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        return self.scratch(k, part), self.scratch(k + 1, part)

    def _bfly2(self, fr, fi, m, fstride, twr, twi, part) -> None:
        (a_r, a_i), (b_r, b_i) = self._load(fr, fi, 2, part)
        t_r, t_i = self._pair(4, part)
        self.cmul(b_r, b_i, twr[0], twi[0], t_r, t_i, self.scratch(6, part))
        self.sub(a_r, t_r, fr[..., 1, :])
        self.sub(a_i, t_i, fi[..., 1, :])
        self.add(a_r, t_r, fr[..., 0, :])
        self.add(a_i, t_i, fi[..., 0, :])

    def _bfly4(self, fr, fi, m, fstride, twr, twi, part) -> None:
        f = self._load(fr, fi, 4, part)
        tmp = self.scratch(8, part)
        s0, s1, s2 = self._pair(9, part), self._pair(11, part), self._pair(13, part)
        s3, s4, s5 = self._pair(15, part), self._pair(17, part), self._pair(19, part)
        self.cmul(*f[1], twr[0], twi[0], *s0, tmp)
        self.cmul(*f[2], twr[1], twi[1], *s1, tmp)
        self.cmul(*f[3], twr[2], twi[2], *s2, tmp)
        for c in (0, 1):
            self.sub(f[0][c], s1[c], s5[c])
            self.add(f[0][c], s1[c], f[0][c])
            self.add(s0[c], s2[c], s3[c])
            self.sub(s0[c], s2[c], s4[c])
        self.sub(f[0][0], s3[0], fr[..., 2, :])
        self.sub(f[0][1], s3[1], fi[..., 2, :])
        self.add(f[0][0], s3[0], fr[..., 0, :])
        self.add(f[0][1], s3[1], fi[..., 0, :])
        q1, q3 = (3, 1) if self.inverse else (1, 3)
        self.add(s5[0], s4[1], fr[..., q1, :])
        self.sub(s5[1], s4[0], fi[..., q1, :])
        self.sub(s5[0], s4[1], fr[..., q3, :])
        self.add(s5[1], s4[0], fi[..., q3, :])

    def _bfly3(self, fr, fi, m, fstride, twr, twi, part) -> None:
        epi_i = self.tw_i[fstride * m]
        f = self._load(fr, fi, 3, part)
        tmp = self.scratch(6, part)
        s0, s1, s2, s3, f1 = (self._pair(k, part) for k in (7, 9, 11, 13, 15))
        self.cmul(*f[1], twr[0], twi[0], *s1, tmp)
        self.cmul(*f[2], twr[1], twi[1], *s2, tmp)
        for c in (0, 1):
            self.add(s1[c], s2[c], s3[c])
            self.sub(s1[c], s2[c], s0[c])
            self.sub(f[0][c], self.half_of(s3[c], tmp), f1[c])
        self.smul(s0[0], epi_i, s1[0])
        self.smul(s0[1], epi_i, s1[1])          # s1 now holds scratch[0] * epi3.i
        self.add(f[0][0], s3[0], fr[..., 0, :])
        self.add(f[0][1], s3[1], fi[..., 0, :])
        self.add(f1[0], s1[1], fr[..., 2, :])
        self.sub(f1[1], s1[0], fi[..., 2, :])
        self.sub(f1[0], s1[1], fr[..., 1, :])
        self.add(f1[1], s1[0], fi[..., 1, :])

    def _bfly5(self, fr, fi, m, fstride, twr, twi, part) -> None:
        ya_r, ya_i = self.tw_r[fstride * m], self.tw_i[fstride * m]
        yb_r, yb_i = self.tw_r[2 * fstride * m], self.tw_i[2 * fstride * m]
        f = self._load(fr, fi, 5, part)
        s0 = f[0]
        tmp, u, v = self.scratch(10, part), self.scratch(11, part), self.scratch(12, part)
        s1, s2, s3, s4 = (self._pair(k, part) for k in (13, 15, 17, 19))
        s7, s8, s9, s10 = (self._pair(k, part) for k in (21, 23, 25, 27))
        s5, s6, s11, s12 = (self._pair(k, part) for k in (29, 31, 33, 35))
        for q, s in zip((1, 2, 3, 4), (s1, s2, s3, s4)):
            self.cmul(*f[q], twr[q - 1], twi[q - 1], *s, tmp)
        for c in (0, 1):
            self.add(s1[c], s4[c], s7[c])
            self.sub(s1[c], s4[c], s10[c])
            self.add(s2[c], s3[c], s8[c])
            self.sub(s2[c], s3[c], s9[c])
        for c, (out_arr) in ((0, fr), (1, fi)):
            np.add(s7[c], s8[c], out=tmp)
            self.add(s0[c], tmp, out_arr[..., 0, :])
            # scratch[5] = s0 + s7*ya.r + s8*yb.r ; scratch[11] = s0 + s7*yb.r + s8*ya.r
            np.add(s0[c], self.smul(s7[c], ya_r, u), out=s5[c])
            self.add(s5[c], self.smul(s8[c], yb_r, v), s5[c])
            np.add(s0[c], self.smul(s7[c], yb_r, u), out=s11[c])
            self.add(s11[c], self.smul(s8[c], ya_r, v), s11[c])
        # scratch[6] = (s10.i*ya.i + s9.i*yb.i, -s10.r*ya.i - s9.r*yb.i)
        self.add(self.smul(s10[1], ya_i, u), self.smul(s9[1], yb_i, v), s6[0])
        np.negative(self.smul(s10[0], ya_i, u), out=u)
        self.sub(u, self.smul(s9[0], yb_i, v), s6[1])
        # scratch[12] = (-s10.i*yb.i + s9.i*ya.i, s10.r*yb.i - s9.r*ya.i)
        np.negative(self.smul(s10[1], yb_i, u), out=u)
        self.add(u, self.smul(s9[1], ya_i, v), s12[0])
        self.sub(self.smul(s10[0], yb_i, u), self.smul(s9[0], ya_i, v), s12[1])
        for c, out_arr in ((0, fr), (1, fi)):
            self.sub(s5[c], s6[c], out_arr[..., 1, :])
            self.add(s5[c], s6[c], out_arr[..., 4, :])
            self.add(s11[c], s12[c], out_arr[..., 2, :])
            self.sub(s11[c], s12[c], out_arr[..., 3, :])


class KissFFTR:
    """KissFFT's real FFT (``kiss_fftr``) or its inverse (``kiss_fftri``) of even ``fft_length``, on ``rows`` rows."""

    def __init__(self, fft_length: int, inverse: bool, kind: str, rows: int = 1) -> None:
        if fft_length < 2 or fft_length % 2:
            raise ValueError(f"the FFT length {fft_length} must be even and >= 2")
        self.ncfft = n = fft_length // 2
        self.rows = rows
        self.sub = f = KissFFT(n, inverse, kind, rows)
        i = np.arange(n // 2, dtype=np.float64)
        phase = -np.pi * ((i + 1) / n + 0.5)
        if inverse:
            phase = -phase
        self.st_r, self.st_i = f.cexp(phase)
        self.h = n // 2
        self.tmp_r = np.zeros((rows, n), f.dtype)
        self.tmp_i = np.zeros((rows, n), f.dtype)
        self.out = np.zeros((rows, 2 * n), f.dtype) if inverse else None

    def _views(self, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Bins k = 1..n/2 and n-k (same order), as views of ``a`` (…, >= n+1 or n)."""
        n, h = self.ncfft, self.h
        return a[..., 1:h + 1], a[..., n - 1:n - h - 1:-1]  # n - h - 1 >= 0: a plain reversed slice

    def forward(self, x: np.ndarray, out_r: np.ndarray, out_i: np.ndarray) -> None:
        """Real rows ``x`` (rows, 2n) -> ``out_r/out_i`` (rows, n+1) (int64 or float32 arrays)."""
        f, n, h = self.sub, self.ncfft, self.h
        tr, ti = f.fft(x[..., 0::2], x[..., 1::2])
        part = (self.rows, 1)
        a, b = f.scratch(0, part)[:, 0], f.scratch(1, part)[:, 0]
        f.fixdiv(tr[..., 0], 2, a)
        f.fixdiv(ti[..., 0], 2, b)
        f.add(a, b, out_r[..., 0])
        f.sub(a, b, out_r[..., n])
        out_i[..., 0] = 0
        out_i[..., n] = 0
        if not h:
            return
        part = (self.rows, h)
        (tk_r, tn_r), (tk_i, tn_i) = self._views(tr), self._views(ti)
        pk_r, pk_i, pn_r, pn_i = (f.scratch(k, part) for k in range(4))
        f1_r, f1_i, f2_r, f2_i, tw_r, tw_i, tmp = (f.scratch(k, part) for k in range(4, 11))
        f.fixdiv(tk_r, 2, pk_r)
        f.fixdiv(tk_i, 2, pk_i)
        f.fixdiv(tn_r, 2, pn_r)
        f.fixdiv(f.wrap(np.negative(tn_i, out=tmp)), 2, pn_i)
        f.add(pk_r, pn_r, f1_r)
        f.add(pk_i, pn_i, f1_i)
        f.sub(pk_r, pn_r, f2_r)
        f.sub(pk_i, pn_i, f2_i)
        f.cmul(f2_r, f2_i, self.st_r, self.st_i, tw_r, tw_i, tmp)
        (ok_r, on_r), (ok_i, on_i) = self._views(out_r), self._views(out_i)
        for a, b, sign, dst in ((f1_r, tw_r, 1, ok_r), (f1_i, tw_i, 1, ok_i), (f1_r, tw_r, -1, on_r),
                                (tw_i, f1_i, -1, on_i)):
            # HALF_OF(a +/- b): the sum is an int (int16 build) or an int32 (int32 build, wraps)
            (np.add if sign > 0 else np.subtract)(a, b, out=tmp)
            if f.fixed and f.bits == 32:
                f.wrap(tmp)
            f.wrap(f.half_of(tmp, tmp))
            np.copyto(dst, tmp)

    def inverse(self, xr: np.ndarray, xi: np.ndarray) -> np.ndarray:
        """Complex rows (rows, n+1) -> real rows (rows, 2n), a buffer of this object (fixed point:
        scaled by 1/n as KissFFT does)."""
        f, n, h = self.sub, self.ncfft, self.h
        tr, ti = self.tmp_r, self.tmp_i
        f.add(xr[..., 0], xr[..., n], tr[..., 0])
        f.fixdiv(tr[..., 0], 2, tr[..., 0])
        f.sub(xr[..., 0], xr[..., n], ti[..., 0])
        f.fixdiv(ti[..., 0], 2, ti[..., 0])
        if h:
            part = (self.rows, h)
            (xk_r, xn_r), (xk_i, xn_i) = self._views(xr), self._views(xi)
            fk_r, fk_i, fn_r, fn_i, fe_r, fe_i, t_r, t_i, fo_r, fo_i, tmp = (f.scratch(k, part) for k in range(11))
            f.fixdiv(xk_r, 2, fk_r)
            f.fixdiv(xk_i, 2, fk_i)
            f.fixdiv(xn_r, 2, fn_r)
            f.fixdiv(f.wrap(np.negative(xn_i, out=tmp)), 2, fn_i)
            f.add(fk_r, fn_r, fe_r)
            f.add(fk_i, fn_i, fe_i)
            f.sub(fk_r, fn_r, t_r)
            f.sub(fk_i, fn_i, t_i)
            f.cmul(t_r, t_i, self.st_r, self.st_i, fo_r, fo_i, tmp)
            (tk_r, tn_r), (tk_i, tn_i) = self._views(tr), self._views(ti)
            np.copyto(tk_r, f.add(fe_r, fo_r, tmp))
            np.copyto(tk_i, f.add(fe_i, fo_i, tmp))
            np.copyto(tn_r, f.sub(fe_r, fo_r, tmp))
            f.sub(fe_i, fo_i, tmp)
            np.copyto(tn_i, f.wrap(np.negative(tmp, out=tmp)))
        yr, yi = f.fft(tr, ti)
        np.copyto(self.out[..., 0::2], yr)
        np.copyto(self.out[..., 1::2], yi)
        return self.out
