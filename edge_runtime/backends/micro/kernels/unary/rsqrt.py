"""RSQRT: float32 (``1 / sqrt(x)``); int8 and int16 (zero points 0) with TFLM's integer algorithm.

Quantized: ``v = q - zp_in`` (TFLM refuses inputs below the zero point at invoke;
so does this kernel), ``v == 0`` gives the type's max; else
GetInvSqrtQuantizedMultiplierExp(v) gives 1/sqrt(v) as a multiplier, applied to 1
with a 2**20 headroom, then rescaled by ``1 / (sqrt(scale_in) * scale_out)``.
"""
from __future__ import annotations

import math

import numpy as np

from edge_runtime.backends.micro.fixedpoint import multiply_by_quantized_multiplier, quantize_multiplier
from edge_runtime.backends.micro.fixedpoint_lut import inv_sqrt_multiplier_exp_array
from edge_runtime.backends.micro.kernels.base import TensorInfo
from edge_runtime.backends.micro.kernels.unary.common import UnaryKernel, affine
from edge_runtime.errors import InputError

HEADROOM_SHIFT = 20


class Rsqrt(UnaryKernel):
    """RSQRT."""

    max_version = 3
    TYPES = ("FLOAT32", "INT8", "INT16")

    def prepare(self, x: TensorInfo, y: TensorInfo) -> None:
        """Build the table for quantized inputs."""
        if x.type_name == "FLOAT32":
            return
        sx, zx = affine(self.ctx, x, "input")
        sy, zy = affine(self.ctx, y, "output")
        if x.type_name == "INT16" and (zx != 0 or zy != 0):
            raise self.ctx.fail("int16 RSQRT needs zero points 0")
        self.zero_point = zx
        mult, shift = quantize_multiplier(1.0 / (math.sqrt(sx) * sy))
        v = self.table_inputs() - zx
        inv_m, inv_s = inv_sqrt_multiplier_exp_array(np.maximum(v, 0))
        data = multiply_by_quantized_multiplier(np.ones_like(v), inv_m, inv_s + HEADROOM_SHIFT)
        out = multiply_by_quantized_multiplier(data, mult, shift - HEADROOM_SHIFT) + zy
        info = np.iinfo(x.dtype)
        out = np.where(v == 0, info.max, np.clip(out, info.min, info.max))
        self.set_table(np.where(v < 0, 0, out))

    def run(self) -> None:
        """Refuse values below the zero point (as TFLM's invoke does), then look up."""
        if self.table is not None and self.x.size and int(self.x.min()) < self.zero_point:
            raise InputError(f"RSQRT (op {self.ctx.op.index}) is only defined for values >= the input zero point "
                             f"{self.zero_point}")
        super().run()

    def run_float(self) -> None:
        """``1 / sqrt(x)`` in float32."""
        np.sqrt(self.x, out=self.y)
        np.divide(np.float32(1.0), self.y, out=self.y)
