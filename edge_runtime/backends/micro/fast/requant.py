"""The int8 output stage shared by the compiled kernels: TFLM's MultiplyByQuantizedMultiplier per channel.

Constants come from :class:`~edge_runtime.backends.micro.fixedpoint.Requantizer` (bias folded in),
packed as one int64 array ``q`` of shape (5, channels): factor, offset, half, neg_fix, shift. For an
accumulator ``a`` the result is ``(z + half - [z < 0] * neg_fix) >> shift`` with ``z = a * factor +
offset``; that single-shift form equals TFLM's two-step rounding for every input (proved and tested
with the numpy Requantizer). Then the output zero point and the activation clamp.
"""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.fast.jit import inline
from edge_runtime.backends.micro.fixedpoint import Requantizer


def pack(rq: Requantizer) -> np.ndarray:
    """The (5, C) int64 constants of a Requantizer, C-contiguous."""
    return np.ascontiguousarray(np.stack([rq.factor, rq.offset, rq.half, rq.neg_fix, rq.shift]).astype(np.int64))


@inline
def requant(a, q, c, zp, lo, hi):  # type: ignore[no-untyped-def]
    """One accumulator ``a`` of channel ``c`` to its clamped output value (an int64)."""
    z = np.int64(a) * q[0, c] + q[1, c]
    if z < 0:
        z -= q[3, c]
    r = ((z + q[2, c]) >> q[4, c]) + zp
    if r < lo:
        r = lo
    elif r > hi:
        r = hi
    return r


def limits(rq: Requantizer) -> np.ndarray:
    """(output zero point, activation min, activation max) as an int64 array."""
    return np.array([int(rq.zero_point), int(rq.act_min), int(rq.act_max)], np.int64)
