"""FLOOR_MOD (float32, as TFLM): ``fmod(a, b)``, plus ``b`` when that remainder is non-zero and its sign
differs from ``b``'s — which is numpy's ``remainder`` (up to the sign of zero results)."""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.kernels.binary.common import ElementwiseKernel, refuse_zero_divisor


class FloorMod(ElementwiseKernel):
    """FLOOR_MOD: float32 (TFLM's kernel) and int32 (LiteRT's; TFLM refuses int32)."""

    max_version = 2

    def prepare(self) -> None:
        """Types: float32 (TFLM's kernel) and int32 (LiteRT's: TFLM has no int32 form; exact floor semantics)."""
        self.int32 = self.require_types(("FLOAT32", "INT32")) == "INT32"

    def compute(self, ins: tuple[np.ndarray, ...], y: np.ndarray, t: dict[str, np.ndarray]) -> None:
        """One chunk."""
        if self.int32:
            refuse_zero_divisor("FLOOR_MOD", self.out.name, ins[1])
            np.remainder(ins[0], ins[1], out=y)
            return
        with np.errstate(divide="ignore", invalid="ignore"):  # x mod 0 is nan, as fmod gives
            np.remainder(ins[0], ins[1], out=y)
