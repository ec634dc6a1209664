"""SELECT_V2: ``condition ? x : y`` elementwise, the three inputs broadcast together (up to rank 5).

Values are copied as they are (float32, int8, int16), as TFLM does."""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.kernels.binary.common import ElementwiseKernel


class SelectV2(ElementwiseKernel):
    """SELECT_V2: bool condition; float32, int8 or int16 values."""

    max_version = 2
    n_inputs = 3
    min_inputs = 3
    inplace_inputs = (2,)  # (y is copied first, then x where the condition holds)

    def prepare(self) -> None:
        """Types: bool condition, x and y of one type, the output of that type."""
        if self.ins[0].type_name != "BOOL":
            raise self.ctx.fail(f"the condition tensor '{self.ins[0].name}' has type {self.ins[0].type_name}; "
                                "it must be BOOL")
        self.require_types(("FLOAT32", "INT8", "INT16"), inputs=[1, 2])

    def compute(self, ins: tuple[np.ndarray, ...], y: np.ndarray, t: dict[str, np.ndarray]) -> None:
        """One chunk."""
        np.copyto(y, ins[2])
        np.copyto(y, ins[1], where=ins[0])
