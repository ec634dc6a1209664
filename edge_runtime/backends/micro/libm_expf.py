"""``expf`` as glibc computes it, in numpy: the float32 exponential tflite-micro's float kernels call.

tflite-micro's float SOFTMAX calls ``std::exp`` on floats, which is the C library's ``expf``. glibc's
``expf`` (the algorithm of Szabolcs Nagy's optimized-routines, shared with musl and LLVM's libc) is not
correctly rounded: about 1 value in 1,300 differs in the last bit from the float64 exponential rounded to
float32. To give tflite-micro's results bit for bit, micro evaluates the same algorithm in float64:

- ``z = x * 32 / ln 2``, split as ``k + r`` with ``k`` the nearest integer (the ``1.5 * 2^52`` shift) and
  ``|r| <= 1/2``;
- ``2^(k/32)`` from a 32-entry table of ``2^(i/32)`` (as float64 bit patterns) whose exponent field gets
  ``k // 32`` added;
- ``2^(r/32) ~ 1 + c2 r + (c1 + c0 r) r^2``, the algorithm's published degree-3 coefficients;
- the float64 product rounded once to float32.

Beyond the algorithm's limits the results are glibc's: inf above ``log(2^128)``, +0 below ``log(2^-150)``,
+0 for -inf, NaN for NaN. glibc may evaluate the polynomial with fused multiply-adds (an x86 CPU with FMA);
the float64 results then differ in the last bits, which changes the float32 result only when it lies within
about 2^-28 of a rounding boundary.
"""
from __future__ import annotations

import numpy as np

TABLE_BITS = 5
N = 1 << TABLE_BITS
#: 1/ln 2 and the polynomial for 2^(r/N) of the published algorithm (facts of the method: its constants).
INV_LN2 = float.fromhex("0x1.71547652b82fep+0")
POLY = (float.fromhex("0x1.c6af84b912394p-5") / N ** 3, float.fromhex("0x1.ebfce50fac4f3p-3") / N ** 2,
        float.fromhex("0x1.62e42ff0c52d6p-1") / N)
SHIFT = float.fromhex("0x1.8p+52")
#: Largest float32 whose exp is finite, and smallest whose exp is not flushed to +0.
OVERFLOW = np.float32(float.fromhex("0x1.62e42ep6"))
UNDERFLOW = np.float32(-float.fromhex("0x1.9fe368p6"))


def _table() -> np.ndarray:
    """``bits(2^(i/N)) - (i << (52 - TABLE_BITS))`` for i < N: adding ``k << (52 - TABLE_BITS)`` to entry
    ``k % N`` gives the bits of ``2^(k/N)`` for any integer ``k`` in range."""
    powers = np.array([2.0 ** (i / N) for i in range(N)], np.float64)  # 2^(i/32), correctly rounded by pow
    return powers.view(np.uint64) - (np.arange(N, dtype=np.uint64) << np.uint64(52 - TABLE_BITS))


TABLE = _table()


#: Values per pass: the float64 and uint64 buffers stay small (about 170 KB) whatever the tensor's size.
CHUNK = 4096


class ExpF:
    """glibc's ``expf`` over float32 arrays of up to ``size`` values, in buffers made once (no allocation
    per call); large arrays are done :data:`CHUNK` values at a time."""

    def __init__(self, size: int) -> None:
        n = max(1, min(int(size), CHUNK))
        self.r = np.empty(n, np.float64)
        self.k = np.empty(n, np.float64)
        self.y = np.empty(n, np.float64)
        self.bits = np.empty(n, np.uint64)
        self.low = np.empty(n, np.uint64)
        self.index = np.empty(n, np.intp)
        self.over = np.empty(n, np.bool_)
        self.under = np.empty(n, np.bool_)

    def __call__(self, x: np.ndarray, out: np.ndarray) -> np.ndarray:
        """``out[...] = expf(x)`` for C-contiguous float32 ``x`` and ``out`` of one shape (may be one array)."""
        flat_x, flat_out = x.reshape(-1), out.reshape(-1)
        if not np.shares_memory(flat_out, out):  # (not C-contiguous: reshape copied)
            raise ValueError("ExpF writes into a C-contiguous output only")
        step = self.r.size
        for s in range(0, flat_x.size, step):
            self._chunk(flat_x[s:s + step], flat_out[s:s + step])
        return out

    def _chunk(self, x: np.ndarray, out: np.ndarray) -> None:
        n = x.size
        r, k, y, bits, low, index = self.r[:n], self.k[:n], self.y[:n], self.bits[:n], self.low[:n], self.index[:n]
        over, under = self.over[:n], self.under[:n]
        np.greater(x, OVERFLOW, out=over)
        np.less(x, UNDERFLOW, out=under)  # also -inf; NaN compares false in both and stays NaN
        np.multiply(x, INV_LN2 * N, out=r, dtype=np.float64)  # z = x * N / ln 2 (x widened exactly)
        np.add(r, SHIFT, out=k)
        np.copyto(bits, k.view(np.uint64))  # the low bits of z + 1.5 * 2^52 hold round(z)
        np.subtract(k, SHIFT, out=k)  # round(z) as a float64
        np.subtract(r, k, out=r)  # r = z - round(z)
        np.bitwise_and(bits, np.uint64(N - 1), out=low)
        np.copyto(index, low, casting="unsafe")
        np.left_shift(bits, np.uint64(52 - TABLE_BITS), out=bits)
        TABLE.take(index, out=low)
        np.add(bits, low, out=bits)  # the bits of 2^(round(z) / N) (unsigned wrap-around, as in C)
        np.multiply(r, POLY[0], out=y)
        np.add(y, POLY[1], out=y)  # c0 r + c1
        np.multiply(r, r, out=k)
        np.multiply(y, k, out=y)  # (c0 r + c1) r^2
        np.multiply(r, POLY[2], out=r)
        np.add(r, 1.0, out=r)  # c2 r + 1
        np.add(y, r, out=y)
        np.multiply(y, bits.view(np.float64), out=y)
        np.copyto(out, y, casting="same_kind")  # one rounding to float32
        np.copyto(out, np.float32(np.inf), where=over)
        np.copyto(out, np.float32(0.0), where=under)
