"""REDUCE_MAX over constant axes: float32 and int8 (equal input and output quantization)."""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.kernels.base import OpContext
from edge_runtime.backends.micro.kernels.spatial.common import Reduction, same_quantization


class ReduceMax(Reduction):
    """REDUCE_MAX."""

    types = ("FLOAT32", "INT8")
    ufunc = np.maximum

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        same_quantization(ctx, self.xt, self.yt)

    def run(self) -> None:
        """Reduce."""
        self.ufunc.reduce(self.x, axis=self.axes, keepdims=True, out=self.y)
