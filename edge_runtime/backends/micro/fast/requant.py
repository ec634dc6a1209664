"""The int8 output stage shared by the compiled kernels: TFLM's MultiplyByQuantizedMultiplier per channel.

Constants come from :class:`~edge_runtime.backends.micro.fixedpoint.Requantizer` (bias folded in),
packed as one int64 array ``q`` of shape (6, max(channels, 16)): rows factor, offset, half, neg_fix,
shift per channel, and a last row (output zero point, activation min, activation max, then up to 13
integers of the kernel's geometry), so that a kernel call passes few arrays. For an
accumulator ``a`` the result is ``(z + half - [z < 0] * neg_fix) >> shift`` with ``z = a * factor +
offset``; that single-shift form equals TFLM's two-step rounding for every input (proved and tested
with the numpy Requantizer). Then the output zero point and the activation clamp.
"""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.fast.jit import inline
from edge_runtime.backends.micro.fixedpoint import Requantizer


def pack(rq: Requantizer, extra: tuple[int, ...] = ()) -> np.ndarray:
    """The packed (6, max(C, 16)) int64 constants of a Requantizer plus ``extra`` geometry, C-contiguous."""
    if len(extra) > 13:
        raise ValueError("at most 13 extra integers fit the last row")
    c = rq.factor.size
    q = np.zeros((6, max(c, 16)), np.int64)
    for row, v in enumerate((rq.factor, rq.offset, rq.half, rq.neg_fix, rq.shift)):
        q[row, :c] = v
    q[5, :3 + len(extra)] = [int(rq.zero_point), int(rq.act_min), int(rq.act_max), *extra]
    q.flags.writeable = False
    return q


def with_extra(q: np.ndarray, extra: tuple[int, ...]) -> np.ndarray:
    """A copy of packed constants ``q`` with other geometry integers in the last row."""
    out = q.copy()
    out[5, 3:] = 0
    out[5, 3:3 + len(extra)] = extra
    out.flags.writeable = False
    return out


def tiled(q: np.ndarray, channels: int, reps: int) -> np.ndarray:
    """Packed constants for ``reps`` positions of ``channels`` channels side by side (rows of
    ``reps * channels`` values), so that layers with few channels requantize along long rows."""
    n = channels * reps
    out = np.zeros((6, max(n, 16)), np.int64)
    out[:5, :n] = np.tile(q[:5, :channels], (1, reps))
    out[5, :3] = q[5, :3]
    out.flags.writeable = False
    return out


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

