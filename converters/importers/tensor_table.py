"""The IR tensors an importer builds up, with fresh names for the ones it adds (both importers' contexts)."""
from __future__ import annotations

from typing import Any

import numpy as np

from converters.ir import Tensor


class TensorTable:
    """``tensors`` (IR name -> :class:`~converters.ir.Tensor`) and a counter that makes added names unique."""

    def __init__(self) -> None:
        self.tensors: dict[str, Tensor] = {}
        self._n = 0

    def _fresh(self, base: str) -> str:
        self._n += 1
        return f"{base}/{self._n}"

    def tmp(self, base: str, shape: tuple[int, ...]) -> str:
        """A fresh intermediate IR activation of ``shape``; its name starts with ``base``."""
        name = self._fresh(base)
        self.tensors[name] = Tensor(name, tuple(int(d) for d in shape))
        return name

    def add_const(self, base: str, data: np.ndarray, dtype: Any = np.float32) -> str:
        """A fresh IR constant holding ``data`` as ``dtype`` (C-contiguous); its name starts with ``base``."""
        name = self._fresh(base)
        arr = np.ascontiguousarray(np.asarray(data), dtype=dtype)
        self.tensors[name] = Tensor(name, tuple(arr.shape), arr)
        return name
