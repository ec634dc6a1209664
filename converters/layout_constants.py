"""Constant operands under layout changes: the numpy side of moving a TRANSPOSE past an elementwise op
and of folding a per-channel scale or offset into the op that computes its input.

Pure array helpers (no graph types), used by :func:`converters.ir.simplify`:

- :func:`permuted_operand`: the constant ``c'`` with ``op(x, c')`` transposed by ``perm`` equal to
  ``op(TRANSPOSE_perm(x), c)`` under numpy broadcasting;
- :func:`channel_vector`: a constant that only varies along the last axis of a tensor, as one value per
  channel (``CONV_2D``'s output channels are the IR's last axis).
"""
from __future__ import annotations

from typing import Optional

import numpy as np


def inverse_perm(perm: tuple[int, ...]) -> tuple[int, ...]:
    """The permutation undoing ``perm``."""
    return tuple(perm.index(d) for d in range(len(perm)))


def at_rank(data: np.ndarray, rank: int) -> Optional[np.ndarray]:
    """``data`` with leading size-1 axes added (or dropped) to have ``rank`` dimensions, as numpy
    broadcasting aligns it against a tensor of that rank; None when it has more non-unit leading axes."""
    a = np.asarray(data)
    while a.ndim > rank:
        if a.shape[0] != 1:
            return None
        a = a.reshape(a.shape[1:])
    return a.reshape((1,) * (rank - a.ndim) + a.shape)


def permuted_operand(data: np.ndarray, perm: tuple[int, ...]) -> Optional[np.ndarray]:
    """The constant to use when ``op(TRANSPOSE_perm(x), data)`` becomes ``TRANSPOSE_perm(op(x, c'))``.

    ``data`` broadcasts against ``TRANSPOSE_perm(x)`` (numpy rules); the result has the rank of ``perm``
    and broadcasts against ``x``: ``c'.transpose(perm)`` equals ``data`` aligned to that rank. Broadcast
    axes stay size 1 (nothing is materialised). None when ``data`` has more dimensions than ``perm``
    (beyond leading size-1 axes).
    """
    full = at_rank(data, len(perm))
    if full is None:
        return None
    return np.ascontiguousarray(full.transpose(inverse_perm(tuple(perm))))


def channel_vector(data: np.ndarray, out_shape: tuple[int, ...]) -> Optional[np.ndarray]:
    """One value per channel (``out_shape[-1]`` float32 values) when constant ``data`` broadcast against a
    tensor of ``out_shape`` varies along the last axis only and does not enlarge the tensor; else None."""
    if not out_shape or np.ndim(data) > len(out_shape):
        return None
    full = at_rank(data, len(out_shape))
    if full is None or any(d != 1 for d in full.shape[:-1]) or full.shape[-1] not in (1, out_shape[-1]):
        return None
    return np.broadcast_to(full.reshape(-1).astype(np.float32), (out_shape[-1],)).copy()
