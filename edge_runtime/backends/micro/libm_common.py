"""Shared machinery of micro's C-library float functions (``libm_*.py``): chunked evaluation in buffers made once.

Each function (glibc's ``logf``, ``sinf``, ``expm1f``, ...) is a class whose ``_chunk`` computes up to
:data:`CHUNK` values into views of buffers allocated in ``__init__``; :class:`ChunkedFunction` walks a
C-contiguous float32 array of any size through it, so a call allocates nothing whatever the tensor's size.
"""
from __future__ import annotations

import numpy as np

#: Values per pass: each float64 buffer is 64 KB whatever the tensor's size (a function's buffers: 0.3 to 0.7 MB).
#: The functions take 30 to 90 numpy calls per pass, so larger passes are faster (4096: about 1.5x slower).
CHUNK = 8192


class ChunkedFunction:
    """Base of a float32 -> float32 function evaluated :data:`CHUNK` values at a time in its own buffers.

    A subclass lists its buffers in ``BUFFERS`` (name -> dtype) and implements ``_chunk(x, out)``, reading
    ``self.<name>[:n]`` views of those buffers."""

    BUFFERS: dict[str, type] = {}

    def __init__(self, size: int) -> None:
        n = max(1, min(int(size), CHUNK))
        self.capacity = n
        for name, dtype in self.BUFFERS.items():
            setattr(self, name, np.empty(n, dtype))

    def __call__(self, x: np.ndarray, out: np.ndarray) -> np.ndarray:
        """``out[...] = f(x)`` for C-contiguous float32 ``x`` and ``out`` of one shape (may be one array)."""
        flat_x, flat_out = x.reshape(-1), out.reshape(-1)
        if not np.shares_memory(flat_out, out):  # (not C-contiguous: reshape copied)
            raise ValueError(f"{type(self).__name__} writes into a C-contiguous output only")
        step = self.capacity
        with np.errstate(all="ignore"):  # C's inf and NaN are results, not warnings
            for s in range(0, flat_x.size, step):
                self._chunk(flat_x[s:s + step], flat_out[s:s + step])
        return out

    def views(self, n: int, names: str) -> list[np.ndarray]:
        """The first ``n`` values of the buffers named in ``names`` (space-separated)."""
        return [getattr(self, name)[:n] for name in names.split()]

    def _chunk(self, x: np.ndarray, out: np.ndarray) -> None:
        raise NotImplementedError


def split_high(value: float, bits: int) -> tuple[float, float]:
    """``value`` as ``high + low`` with ``high`` keeping the leading ``bits`` bits of the significand: a product
    of ``high`` and a number of at most ``53 - bits`` significant bits is exact in float64 (used to evaluate a
    fused multiply-add ``a * b + c`` without rounding ``a * b`` first, as glibc's FMA builds do)."""
    raw = np.array([value], np.float64).view(np.uint64)
    high = (raw & ~np.uint64((1 << (52 - bits + 1)) - 1)).view(np.float64)[0]
    return float(high), float(value - high)
