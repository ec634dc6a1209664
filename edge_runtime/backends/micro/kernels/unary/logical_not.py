"""LOGICAL_NOT on bool tensors (the only type TFLM's kernel takes)."""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.kernels.unary.common import UnaryKernel


class LogicalNot(UnaryKernel):
    """LOGICAL_NOT."""

    TYPES = ("BOOL",)

    def run_float(self) -> None:
        """``not x``."""
        np.logical_not(self.x, out=self.y)
