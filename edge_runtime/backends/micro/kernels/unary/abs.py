"""ABS: float32; int8 (affine); int16, quantized (zero points 0) or plain integers.

Quantized: ``|q - zp_in|``, rescaled by MultiplyByQuantizedMultiplier with
``scale_in / scale_out`` when the scales differ, plus ``zp_out``, clamped. Plain
int16 is ``std::abs`` truncated to int16 (so -32768 stays -32768).
"""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.fixedpoint import multiply_by_quantized_multiplier, quantize_multiplier
from edge_runtime.backends.micro.kernels.base import TensorInfo
from edge_runtime.backends.micro.kernels.unary.common import UnaryKernel, affine, is_quantized


class Abs(UnaryKernel):
    """ABS."""

    max_version = 5
    TYPES = ("FLOAT32", "INT8", "INT16")

    def prepare(self, x: TensorInfo, y: TensorInfo) -> None:
        """Build the table for integer inputs."""
        if x.type_name == "FLOAT32":
            return
        v = self.table_inputs()
        info = np.iinfo(x.dtype)
        if x.type_name == "INT16" and not is_quantized(x):
            self.set_table(np.abs(v).astype(np.int16))
            return
        sx, zx = affine(self.ctx, x, "input")
        sy, zy = affine(self.ctx, y, "output")
        if x.type_name == "INT16" and (zx != 0 or zy != 0):
            raise self.ctx.fail("int16 ABS needs zero points 0")
        a = np.abs(v - zx)
        if sx != sy:
            mult, shift = quantize_multiplier(sx / sy)
            a = multiply_by_quantized_multiplier(a, mult, shift)
        self.set_table(np.clip(a + zy, info.min, info.max))

    def run_float(self) -> None:
        """``|x|``."""
        np.abs(self.x, out=self.y)
