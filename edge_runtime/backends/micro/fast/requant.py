"""The int8 output stage shared by the compiled kernels: TFLM's MultiplyByQuantizedMultiplier per channel.

Constants come from :class:`~edge_runtime.backends.micro.fixedpoint.Requantizer` (bias folded in),
packed as one int64 array ``q`` of shape (10, max(channels, 16)): rows factor, offset, half, neg_fix,
shift per channel; row 5: output zero point, activation min, activation max, then up to 13
integers of the kernel's geometry; rows 6-9 hold float64 values (bit patterns): the
:class:`~edge_runtime.backends.micro.fixedpoint.FloatRequantizer` constants g, h, d per channel and
(mode, steep offset, min, max). A kernel call passes few arrays.

Integer form (mode 0): for an accumulator ``a`` the result is ``(z + half - [z < 0] * neg_fix) >>
shift`` with ``z = a * factor + offset``; that single-shift form equals TFLM's two-step rounding for
every input (proved and tested with the numpy Requantizer); then the zero point and the clamp.

Float form (mode 1, or 2 with the tie correction), used where the FloatRequantizer is provably
exact for every accumulator the layer's weights can produce: ``y = a * g + h`` is exact in float64,
then (mode 2) ``y = max(y - d, min(y, 2**32 * y + steep_offset))``, floor and clamp, the numpy
path's float requantizer step for step. It needs no 64-bit integer multiply and runs about 1.6x
faster (float64 lanes vectorise better than int64 multiplies).
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

from edge_runtime.backends.micro.fast.jit import inline
from edge_runtime.backends.micro.fixedpoint import FloatRequantizer, Requantizer


ROWS = 10


def pack(rq: Requantizer, extra: tuple[int, ...] = (), frq: Optional[FloatRequantizer] = None) -> np.ndarray:
    """The packed (10, max(C, 16)) int64 constants of a Requantizer plus ``extra`` geometry, C-contiguous;
    with ``frq`` (exact for the layer) the float form's constants too (mode 1 or 2), else mode 0."""
    if len(extra) > 13:
        raise ValueError("at most 13 extra integers fit the last row")
    c = rq.factor.size
    q = np.zeros((ROWS, max(c, 16)), np.int64)
    for row, v in enumerate((rq.factor, rq.offset, rq.half, rq.neg_fix, rq.shift)):
        q[row, :c] = v
    q[5, :3 + len(extra)] = [int(rq.zero_point), int(rq.act_min), int(rq.act_max), *extra]
    if frq is not None:
        f = q[6:10].view(np.float64)
        for row, v in enumerate((frq.g, frq.h, frq.d)):
            f[row, :c] = np.broadcast_to(v, (c,))
        f[3, :4] = [2.0 if frq.correct else 1.0, frq.steep_offset, float(frq.lo), float(frq.hi)]
    q.flags.writeable = False
    return q


def with_extra(q: np.ndarray, extra: tuple[int, ...]) -> np.ndarray:
    """A copy of packed constants ``q`` with other geometry integers in row 5."""
    out = q.copy()
    out[5, 3:] = 0
    out[5, 3:3 + len(extra)] = extra
    out.flags.writeable = False
    return out


def tiled(q: np.ndarray, channels: int, reps: int) -> np.ndarray:
    """Packed constants for ``reps`` positions of ``channels`` channels side by side (rows of
    ``reps * channels`` values), so that layers with few channels requantize along long rows."""
    n = channels * reps
    out = np.zeros((ROWS, max(n, 16)), np.int64)
    out[:5, :n] = np.tile(q[:5, :channels], (1, reps))
    out[6:9, :n] = np.tile(q[6:9, :channels], (1, reps))
    out[5, :3] = q[5, :3]
    out[9, :4] = q[9, :4]
    out.flags.writeable = False
    return out


@inline
def requant(a, q, c, zp, lo, hi):  # type: ignore[no-untyped-def]
    """One accumulator ``a`` of channel ``c`` to its clamped output value, integer form (an int64)."""
    z = np.int64(a) * q[0, c] + q[1, c]
    if z < 0:
        z -= q[3, c]
    r = ((z + q[2, c]) >> q[4, c]) + zp
    if r < lo:
        r = lo
    elif r > hi:
        r = hi
    return r


@inline
def requant_row(acc, q, qf, out, zp, lo, hi, mode, soff, flo, fhi):  # type: ignore[no-untyped-def]
    """``out[j] = requant(acc[j])`` for channel ``j`` of one row, in the form ``mode`` selects (see the
    module docstring); ``qf`` = ``q[6:10]`` viewed as float64, ``mode``, ``soff``, ``flo``, ``fhi`` its
    row 3 (:func:`float_part`, read once per call). One loop per form, so that each vectorises."""
    n = out.shape[0]
    if mode == 0.0:
        for j in range(n):
            out[j] = requant(acc[j], q, j, zp, lo, hi)
    elif mode == 1.0:
        for j in range(n):
            y = min(max(np.float64(acc[j]) * qf[0, j] + qf[1, j], flo), fhi)
            out[j] = math.floor(y)  # (floor after the clamp equals the clamp after the floor: integer bounds)
    else:
        for j in range(n):
            y = np.float64(acc[j]) * qf[0, j] + qf[1, j]
            y = max(y - qf[2, j], min(y, 4294967296.0 * y + soff))
            out[j] = math.floor(min(max(y, flo), fhi))


@inline
def float_part(q):  # type: ignore[no-untyped-def]
    """``q``'s float rows (float64 (4, W)) and (mode, steep offset, min, max)."""
    qf = q[6:10].view(np.float64)
    return qf, qf[3, 0], qf[3, 1], qf[3, 2], qf[3, 3]
