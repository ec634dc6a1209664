"""REDUCE_ALL over constant axes on bool tensors (logical AND)."""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.kernels.spatial.common import Reduction


class ReduceAll(Reduction):
    """REDUCE_ALL."""

    max_version = 1
    types = ("BOOL",)

    def run(self) -> None:
        """Reduce."""
        np.logical_and.reduce(self.x, axis=self.axes, keepdims=True, out=self.y)
