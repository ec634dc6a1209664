"""FLOOR_DIV (float32, as TFLM): ``floor(a / b)`` with the division done in double precision."""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.kernels.binary.common import ElementwiseKernel, refuse_zero_divisor


class FloorDiv(ElementwiseKernel):
    """FLOOR_DIV: float32 (TFLM's kernel) and int32 (LiteRT's; TFLM refuses int32). A zero float divisor gives
    inf/nan (TFLM refuses it at run time); a zero int32 divisor is refused in one line."""

    max_version = 3

    def prepare(self) -> None:
        """Types: float32 (TFLM's kernel) and int32 (LiteRT's: TFLM has no int32 form; exact floor semantics)."""
        self.int32 = self.require_types(("FLOAT32", "INT32")) == "INT32"
        self.temps = {"q": np.dtype(np.float64)}

    def compute(self, ins: tuple[np.ndarray, ...], y: np.ndarray, t: dict[str, np.ndarray]) -> None:
        """One chunk: float64 quotient, floor, back to float32."""
        if self.int32:
            refuse_zero_divisor("FLOOR_DIV", self.out.name, ins[1])
            np.floor_divide(ins[0], ins[1], out=y)
            return
        q = t["q"]
        with np.errstate(divide="ignore", invalid="ignore"):
            np.divide(ins[0], ins[1], out=q)
        np.floor(q, out=q)
        np.copyto(y, q, casting="same_kind")
