"""Compiled int8 SOFTMAX: TFLM's integer algorithm (gemmlowp fixed point), bit for bit.

Per row: ``diff = x - max(row)`` indexes two 256-entry tables built at prepare time by the
numpy kernel (the exp in Q0.31, and its Q12.19 share of the sum; both 0 below ``diff_min``);
the Q12.19 sum (wrapped to int32 as C does) goes through ``GetReciprocal``
(``one_over_one_plus_x_for_x_in_0_1``: three Newton-Raphson steps in Q2.29); each exp is
scaled by the reciprocal, shifted down with rounding, offset by -128 and clamped; entries
below ``diff_min`` give -128. The same steps as :mod:`edge_runtime.backends.micro.fixedpoint`'s
scalar helpers, on int64 holding int32 values.
"""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.fast.jit import inline, kernel

_I32_MIN = -(1 << 31)
_I32_MAX = (1 << 31) - 1


@inline
def _wrap32(v):  # type: ignore[no-untyped-def]
    return ((v + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


@inline
def _srdhm(a, b):  # type: ignore[no-untyped-def]
    """SaturatingRoundingDoublingHighMul of two int32 values (as int64)."""
    if a == _I32_MIN and b == _I32_MIN:
        return np.int64(_I32_MAX)
    return (a * b + (1 << 30)) >> 31


@inline
def _rdbpot(x, exponent):  # type: ignore[no-untyped-def]
    """RoundingDivideByPOT."""
    if exponent == 0:
        return x
    return (x + (np.int64(1) << (exponent - 1)) - (1 if x < 0 else 0)) >> exponent


@inline
def _sat_mul_pot(x, exponent):  # type: ignore[no-untyped-def]
    """SaturatingRoundingMultiplyByPOT."""
    if exponent <= 0:
        return _rdbpot(x, -exponent)
    threshold = (np.int64(1) << (31 - exponent)) - 1
    if x > threshold:
        return np.int64(_I32_MAX)
    if x < -threshold:
        return np.int64(_I32_MIN)
    return x << exponent


@inline
def _one_over_one_plus_x(a):  # type: ignore[no-untyped-def]
    """``one_over_one_plus_x_for_x_in_0_1`` (Q0.31 in and out)."""
    s = a + _I32_MAX
    hd = s + (1 if s >= 0 else -1)
    hd = hd // 2 if hd >= 0 else -((-hd) // 2)
    x = _wrap32(1515870810 + _srdhm(hd, np.int64(-1010580540)))
    for _ in range(3):
        one_minus = _wrap32((np.int64(1) << 29) - _srdhm(hd, x))
        x = _wrap32(x + _sat_mul_pot(_srdhm(x, one_minus), 2))
    return _sat_mul_pot(x, 1)


@kernel
def softmax(x, exp_t, acc_t, valid, y):  # type: ignore[no-untyped-def]
    """int8 softmax of each row of ``x`` (rows, depth) into ``y``; ``exp_t``/``acc_t`` (256,) int64 and
    ``valid`` (256,) uint8 are indexed by ``diff + 255``."""
    rows, depth = x.shape
    for r in range(rows):
        top = np.int64(x[r, 0])
        for i in range(1, depth):
            if x[r, i] > top:
                top = np.int64(x[r, i])
        total = np.int64(0)
        for i in range(depth):
            total += acc_t[np.int64(x[r, i]) - top + 255]
        total = _wrap32(total)
        bits = 0
        v = total if total >= 0 else -total
        while v > 0:
            bits += 1
            v >>= 1
        headroom_plus_one = 32 - bits
        shifted = _wrap32(((total << headroom_plus_one) & 0xFFFFFFFF) - (1 << 31))
        scale = _one_over_one_plus_x(shifted)
        exponent = 12 - headroom_plus_one + 31 - 8  # (ACCUMULATION_INTEGER_BITS = 12)
        half = (np.int64(1) << (exponent - 1)) if exponent > 0 else np.int64(0)
        for i in range(depth):
            k = np.int64(x[r, i]) - top + 255
            if valid[k] == 0:
                y[r, i] = -128
                continue
            o = (exp_t[k] * scale + (1 << 30)) >> 31
            if exponent > 0:
                o = (o + half - (1 if o < 0 else 0)) >> exponent
            o -= 128
            y[r, i] = -128 if o < -128 else (127 if o > 127 else o)
