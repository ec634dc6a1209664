"""Constant GATHER indices shared by the ONNX and TFLite importers: negative indices counted from the end of
the gathered axis (ONNX Gather and numpy semantics), out-of-range ones refused, and the output shape
``params[:axis] + indices.shape + params[axis + 1:]`` for indices of any rank."""
from __future__ import annotations

import numpy as np


def normalized_indices(indices: np.ndarray, size: int, axis: int) -> np.ndarray:
    """``indices`` (any rank) as int32 in ``[0, size)``, negatives wrapped once; raises ``IndexError`` with a
    one-line reason naming the first bad index when one lies outside ``[-size, size)``."""
    idx = np.asarray(indices).astype(np.int64)
    bad = (idx < -size) | (idx >= size)
    if np.any(bad):
        first = int(idx[bad].reshape(-1)[0])
        raise IndexError(f"index {first} is out of range for axis {axis} of size {size}")
    return np.where(idx < 0, idx + size, idx).astype(np.int32)


def gather_shape(params: tuple[int, ...], indices: tuple[int, ...], axis: int) -> tuple[int, ...]:
    """Output shape of a gather of ``params`` along ``axis`` (non-negative) by indices of shape ``indices``."""
    return tuple(params[:axis]) + tuple(indices) + tuple(params[axis + 1:])
