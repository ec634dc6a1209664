"""One widened copy of each constant weight per interpreter, shared by every kernel that reads it.

Kernels widen their int8 weights once at bind time (int64 for the 16x8 products, float or int16
for the int8 ones). A model that reuses one weight tensor in many ops (an unrolled LSTM: every
time step's FULLY_CONNECTED reads the same gate weights) would otherwise hold one widened copy
per op. :class:`WeightCache` keys a widened array by the constant's memory (address, shape,
strides, dtype: one entry per buffer, so two tensors over the same buffer share too) and by how
it was widened, and keeps the source view alive so its address cannot be reused while cached.
The interpreter owns one cache (``Interpreter.weight_cache``) and hands it to the kernels that
ask for it in ``attach``; a kernel bound without one widens privately, as before.
"""
from __future__ import annotations

from typing import Any, Callable, Hashable, Optional

import numpy as np


class WeightCache:
    """Widened constant arrays, built once per (source buffer, widening) and shared."""

    def __init__(self) -> None:
        self._entries: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}

    def get(self, src: np.ndarray, kind: Hashable, make: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """The read-only result of ``make(src)``, built on the first request for this buffer and ``kind``.

        ``kind`` names the widening (its dtype, layout and any scale), so different widenings of one
        buffer stay apart."""
        key = (src.__array_interface__["data"][0], src.shape, src.strides, src.dtype.str, kind)
        hit = self._entries.get(key)
        if hit is None:
            out = make(src)
            out.flags.writeable = False
            hit = (src, out)
            self._entries[key] = hit
        return hit[1]

    @property
    def nbytes(self) -> int:
        """Bytes of the widened arrays held (each counted once, however many kernels share it)."""
        return int(sum(w.nbytes for _, w in self._entries.values()))

    def __len__(self) -> int:
        return len(self._entries)


def shared(cache: Optional[WeightCache], src: np.ndarray, kind: Hashable,
           make: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``make(src)`` through ``cache`` when there is one, else a private read-only copy."""
    if cache is not None:
        return cache.get(src, kind, make)
    out = make(src)
    out.flags.writeable = False
    return out


def cache_of(interp: Any) -> Optional[WeightCache]:
    """The interpreter's shared weight cache (None for an interpreter without one)."""
    return getattr(interp, "weight_cache", None)
