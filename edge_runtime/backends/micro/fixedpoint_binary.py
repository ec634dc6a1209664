"""Fixed-point steps of TFLM's binary kernels, on int32 values held in int64 numpy arrays.

Every function works in place on preallocated buffers (``x`` and ``tmp``), so that
kernels can call them from ``run()``; at prepare time they also build lookup tables.
They follow TFLM's default (double rounding) arithmetic:

- :func:`mbqm`: MultiplyByQuantizedMultiplier (``x * 2**left`` wrapped to int32,
  SaturatingRoundingDoublingHighMul, RoundingDivideByPOT). With a shift <= 0 it is
  also MultiplyByQuantizedMultiplierSmallerThanOneExp.
- :func:`count_leading_sign_bits` / :func:`reciprocal_q31`: CountLeadingSignBits and
  GetReciprocal (x_integer_digits = 31), as DIV uses them.
"""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.fixedpoint import (
    one_over_one_plus_x_for_x_in_0_1, rounding_divide_by_pot, wrap32,
)


def mbqm(x: np.ndarray, multiplier: int, shift: int, tmp: np.ndarray) -> np.ndarray:
    """MultiplyByQuantizedMultiplier of int32 values ``x`` (int64 array), in place; ``tmp``: int64 scratch."""
    if shift > 0:
        np.left_shift(x, shift, out=x)
        wrap32(x)
    np.multiply(x, np.int64(multiplier), out=x)
    np.add(x, np.int64(1 << 30), out=x)
    np.right_shift(x, 31, out=x)  # (multipliers are >= 0: the doubling high multiply cannot saturate)
    if shift < 0:
        rounding_divide_by_pot(x, -shift, out=x, tmp=tmp)
    return x


def mbqm_array(x: np.ndarray, multiplier: int, shift: int) -> np.ndarray:
    """:func:`mbqm` on a new int64 array (prepare time)."""
    out = np.array(x, dtype=np.int64, copy=True)
    return mbqm(out, multiplier, shift, np.empty_like(out))


def count_leading_sign_bits(x: np.ndarray) -> np.ndarray:
    """CountLeadingSignBits of int32 values (new int64 array; prepare time)."""
    x = np.asarray(x, dtype=np.int64)
    mag = np.where(x >= 0, x, ~x)  # same leading-bit count as 2|x| - 1 for negatives
    bits = np.zeros(x.shape, np.int64)
    v = mag.copy()
    while np.any(v):
        nz = v != 0
        bits += nz
        v >>= 1
    return 31 - bits


def reciprocal_q31(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """GetReciprocal(x, 31): (Q0.31 reciprocal raw value, num_bits_over_unit) of positive int32 ``x``."""
    x = np.asarray(x, dtype=np.int64)
    bits = 31 - count_leading_sign_bits(x)  # bit length of positive x
    headroom_plus_one = 32 - bits
    shifted = ((x << headroom_plus_one) & 0xFFFFFFFF) - (1 << 31)
    shifted = wrap32(shifted)
    return np.asarray(one_over_one_plus_x_for_x_in_0_1(shifted), np.int64), 31 - headroom_plus_one
