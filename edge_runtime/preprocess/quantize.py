"""Quantize float features into a model's integer input, into preallocated memory.

The MLPerf Tiny reference front-ends convert with ``np.array(x/scale + zp, dtype=np.int8)``:
float32 arithmetic, truncation toward zero, and wrap-around outside the int8 range
(FEATURES.md 1.3 and 2.3). ``rounding="trunc", overflow="wrap"`` reproduces that bit for bit;
``rounding="round", overflow="saturate"`` is the TFLite convention (round half away from zero,
clamp). All work happens in buffers allocated at construction.
"""
from __future__ import annotations

from typing import Literal, Optional

import numpy as np

Rounding = Literal["trunc", "round"]
Overflow = Literal["wrap", "saturate"]

_DTYPES = {"int8": np.int8, "uint8": np.uint8, "int16": np.int16, "float32": np.float32}
# Values beyond this are clamped before the int32 step so the cast is always defined.
_INT32_GUARD = np.float32(2.0**30)


class Quantizer:
    """Write ``q = convert(x/scale + zero_point)`` into an output view without allocating.

    ``shape`` is the largest block this quantizer will handle; smaller blocks use a prefix
    of the scratch buffers. With ``dtype="float32"`` (or ``scale=None``) it only copies.
    """

    def __init__(self, shape: tuple[int, ...], dtype: str = "int8", scale: Optional[float] = None,
                 zero_point: int = 0, rounding: Rounding = "trunc", overflow: Overflow = "wrap") -> None:
        if dtype not in _DTYPES:
            raise ValueError(f"unsupported quantized dtype {dtype!r}; use one of {sorted(_DTYPES)}")
        self.dtype = np.dtype(_DTYPES[dtype])
        self.float_output = self.dtype.kind == "f" or scale is None
        self.scale = np.float32(scale if scale else 1.0)
        self.zero_point = np.float32(zero_point)
        self.rounding = rounding
        self.overflow = overflow
        n = int(np.prod(shape))
        self._f = np.empty(n, dtype=np.float32)
        self._half = np.empty(n, dtype=np.float32)
        self._i = np.empty(n, dtype=np.int32)
        if not self.float_output:
            info = np.iinfo(self.dtype)
            self._lo, self._hi = np.float32(info.min), np.float32(info.max)

    def __call__(self, x: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Quantize ``x`` (any float array) into ``out`` (same shape, this quantizer's dtype)."""
        n = x.size
        f = self._f[:n].reshape(x.shape)
        np.copyto(f, x, casting="unsafe")  # float64 features -> float32, as the reference does
        if self.float_output:
            np.copyto(out, f, casting="unsafe")
            return out
        np.divide(f, self.scale, out=f)
        np.add(f, self.zero_point, out=f)
        if self.rounding == "round":  # half away from zero
            h = self._half[:n].reshape(x.shape)
            np.copysign(np.float32(0.5), f, out=h)
            np.add(f, h, out=f)
        np.trunc(f, out=f)
        lo, hi = (self._lo, self._hi) if self.overflow == "saturate" else (-_INT32_GUARD, _INT32_GUARD)
        np.maximum(f, lo, out=f)
        np.minimum(f, hi, out=f)
        i = self._i[:n].reshape(x.shape)
        np.copyto(i, f, casting="unsafe")
        np.copyto(out, i, casting="unsafe")  # int32 -> int8 keeps the low bits (wrap)
        return out


def reference_quantize(x: np.ndarray, scale: float, zero_point: int, dtype: str = "int8") -> np.ndarray:
    """The reference conversion, allocating: ``np.array(float32(x)/scale + zp, dtype)`` with wrap."""
    v = np.trunc(np.asarray(x, dtype=np.float32) / np.float32(scale) + np.float32(zero_point))
    return v.astype(np.int64).astype(_DTYPES[dtype])
