"""``tanhf`` as glibc computes it, in numpy: the float32 hyperbolic tangent tflite-micro's float TANH calls.

glibc up to 2.40 keeps the Sun fdlibm ``tanhf`` (2.41 moved to CORE-MATH's correctly rounded one): float32
arithmetic on top of ``expm1f`` (:mod:`edge_runtime.backends.micro.libm_expm1f`):

- ``|x| >= 1`` (and below 22): ``t = expm1f(2|x|)``, ``1 - 2 / (t + 2)``;
- ``|x| < 1``: ``t = expm1f(-2|x|)``, ``-t / (t + 2)``;
- the sign of x put back; ``+-1`` from ``|x| >= 22`` (and for +-inf), x itself below ``2^-55`` (``x (1 + x)``
  is x there; +-0 stay), NaN for NaN.
"""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.libm_common import ChunkedFunction
from edge_runtime.backends.micro.libm_expm1f import ExpM1F

F = np.float32


class TanhF(ChunkedFunction):
    """glibc's ``tanhf`` over float32 arrays, in buffers made once (see the module docstring)."""

    BUFFERS = {"ax": np.uint32, "u": np.float32, "t": np.float32, "z": np.float32, "w": np.float32,
               "big": np.bool_, "m": np.bool_, "neg": np.bool_}

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.expm1 = ExpM1F(self.capacity)

    def _chunk(self, x: np.ndarray, out: np.ndarray) -> None:
        n = x.size
        ax, u, t, z, w = self.ax[:n], self.u[:n], self.t[:n], self.z[:n], self.w[:n]
        big, m, neg = self.big[:n], self.m[:n], self.neg[:n]
        np.bitwise_and(x.view(np.uint32), np.uint32(0x7FFFFFFF), out=ax)
        np.signbit(x, out=neg)
        np.abs(x, out=u)
        np.add(u, u, out=u)  # 2|x|, exact
        np.greater_equal(ax, np.uint32(0x3F800000), out=big)
        np.negative(u, out=t)
        np.putmask(t, big, u)  # +2|x| from 1 up, else -2|x|
        self.expm1(t, t)
        np.add(t, F(2.0), out=w)
        np.divide(F(2.0), w, out=u)
        np.subtract(F(1.0), u, out=z)  # 1 - 2 / (t + 2)
        np.negative(t, out=u)
        np.divide(u, w, out=u)  # -t / (t + 2)
        np.logical_not(big, out=m)
        np.putmask(z, m, u)
        if np.greater_equal(ax, np.uint32(0x41B00000), out=m).any():  # |x| >= 22 and inf: 1 (NaN below)
            np.putmask(z, m, F(1.0))
        np.negative(z, out=u)
        np.putmask(z, neg, u)
        if np.less(ax, np.uint32(0x24000000), out=m).any():  # tiny: x
            np.putmask(z, m, x)
        if np.greater(ax, np.uint32(0x7F800000), out=m).any():
            np.putmask(z, m, F(np.nan))
        np.copyto(out, z)
