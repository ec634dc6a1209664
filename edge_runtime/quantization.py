"""Affine quantization, written once: real = scale * (q - zero_point).

Used by :class:`edge_runtime.model.TensorSpec`, the converter's ``QParams`` and its
quality reports, so that every part of the toolkit rounds the same way. (The streaming
preprocessors keep their own in-place variant in :mod:`edge_runtime.preprocess.quantize`,
which writes into a preallocated buffer and can also reproduce the MLPerf truncation.)
"""
from __future__ import annotations

import numpy as np


def quantize_affine(x: np.ndarray, scale: float, zero_point: int, dtype: "np.dtype | type") -> np.ndarray:
    """Real values -> integers of ``dtype``: round half away from zero (TFLite's QUANTIZE), then clamp."""
    info = np.iinfo(dtype)
    v = np.asarray(x, dtype=np.float64) / scale
    q = np.sign(v) * np.floor(np.abs(v) + 0.5) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize_affine(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Integers -> real values in float32."""
    return ((np.asarray(q, dtype=np.float32) - np.float32(zero_point)) * np.float32(scale)).astype(np.float32)
