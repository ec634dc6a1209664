"""FLOOR_DIV (float32, as TFLM): ``floor(a / b)`` with the division done in double precision."""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.kernels.binary.common import ElementwiseKernel


class FloorDiv(ElementwiseKernel):
    """FLOOR_DIV: float32 only (TFLM's kernel). TFLM refuses a zero divisor at run time; micro gives inf/nan."""

    max_version = 3

    def prepare(self) -> None:
        """Types: float32."""
        self.require_types(("FLOAT32",))
        self.temps = {"q": np.dtype(np.float64)}

    def compute(self, ins: tuple[np.ndarray, ...], y: np.ndarray, t: dict[str, np.ndarray]) -> None:
        """One chunk: float64 quotient, floor, back to float32."""
        q = t["q"]
        with np.errstate(divide="ignore", invalid="ignore"):
            np.divide(ins[0], ins[1], out=q)
        np.floor(q, out=q)
        np.copyto(y, q, casting="same_kind")
