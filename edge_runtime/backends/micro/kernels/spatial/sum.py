"""SUM over constant axes: float32, int8 and int16 (TFLite's ``QuantizedMeanOrSum`` with
``compute_sum``: sum, minus zero point times count, 32-bit MultiplyByQuantizedMultiplier by
``s_in / s_out``, output zero point, clamp)."""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.kernels.base import OpContext
from edge_runtime.backends.micro.kernels.reduce import mean_or_sum_requantizer
from edge_runtime.backends.micro.kernels.spatial.common import F64, I64, Reduction


class Sum(Reduction):
    """SUM."""

    max_version = 2
    types = ("FLOAT32", "INT8", "INT16")

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        self.quantized = self.xt.type_name != "FLOAT32"
        if self.quantized:
            self.requant = mean_or_sum_requantizer(self.xt, self.yt, self.count, mean=False)
            self.zx_n = np.int64(self.xt.quantization.zero_point[0] * self.count) if self.xt.quantization else 0
            self.workspace = {"acc": (self.kshape, I64), "tmp": (self.kshape, I64)}
        else:
            self.workspace = {"acc": (self.kshape, F64)}

    def run(self) -> None:
        """Reduce."""
        acc = self.ws["acc"]
        np.add.reduce(self.x, axis=self.axes, keepdims=True, dtype=acc.dtype, out=acc)
        if self.quantized:
            acc -= self.zx_n
            self.requant.apply(acc, self.ws["tmp"], self.y)
        else:
            np.copyto(self.y, acc, casting="same_kind")
