"""HARD_SWISH: float32 (``x * clamp(x + 3, 0, 6) / 6``) and int8 (TFLM's int16 fixed-point algorithm).

int8: the input (minus its zero point) is moved to a "high-resolution" scale
(x 2**7); one int16 multiplier maps it to the output scale, another maps [-3, 3]
to [-1, 1] ("reluish", with saturating shifts), which becomes [0, 1]; the two are
multiplied with a truncating doubling high-mul and shifted to the output scale.
Multipliers are float32 scale ratios taken in double precision, as TFLM's Prepare computes them.
The 256 results form a table.
"""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.fixedpoint import quantize_multiplier
from edge_runtime.backends.micro.fixedpoint_lut import (
    downscale_multiplier_to_int16, rounding_divide_by_pot16, saturating_left_shift16, sdhm16, srdhm16, wrap16,
)
from edge_runtime.backends.micro.kernels.base import TensorInfo
from edge_runtime.backends.micro.kernels.unary.common import UnaryKernel, affine


class HardSwish(UnaryKernel):
    """HARD_SWISH."""

    TYPES = ("FLOAT32", "INT8")

    def prepare(self, x: TensorInfo, y: TensorInfo) -> None:
        """Build the int8 table."""
        if x.type_name == "FLOAT32":
            self.workspace = {"t": (tuple(x.shape), np.dtype(np.float32))}
            return
        sx, zx = affine(self.ctx, x, "input")
        sy, zy = affine(self.ctx, y, "output")
        hires = np.float32(1.0 / 128.0) * np.float32(sx)
        reluish_scale = np.float32(3.0) / np.float32(32768.0)
        # the two ratios are taken in double precision from the float32 scales, as TFLM's Prepare does
        # (a float32 quotient can land on a Q15 rounding tie the double one does not)
        out_m32, out_exp = quantize_multiplier(float(hires) / float(np.float32(sy)))
        if out_exp > 0:
            raise self.ctx.fail("int8 HARD_SWISH needs an output scale at least input scale / 128")
        rel_m32, rel_exp = quantize_multiplier(float(hires) / float(reluish_scale))
        out_m = downscale_multiplier_to_int16(out_m32)
        rel_m = downscale_multiplier_to_int16(rel_m32)

        v = wrap16(self.table_inputs() - zx)
        hires_v = wrap16(v * 128)
        preshift = srdhm16(hires_v, out_m)
        reluish = hires_v
        if rel_exp > 0:
            reluish = saturating_left_shift16(reluish, rel_exp - 1)
        reluish = srdhm16(reluish, rel_m)
        if rel_exp > 0:
            reluish = saturating_left_shift16(reluish, 1)
        if rel_exp < 0:
            reluish = rounding_divide_by_pot16(reluish, -rel_exp)
        reluish = wrap16((reluish + (1 << 15)) >> 1)
        out = sdhm16(reluish, preshift)
        out = rounding_divide_by_pot16(out, -out_exp)
        out = wrap16(out + zy)
        self.set_table(np.clip(out, -128, 127))

    def run_float(self) -> None:
        """``x * clamp(x + 3, 0, 6) / 6`` in float32, in TFLM's order."""
        t = self.ws["t"]
        np.add(self.x, np.float32(3.0), out=t)
        np.clip(t, np.float32(0.0), np.float32(6.0), out=t)
        np.multiply(self.x, t, out=self.y)
        np.divide(self.y, np.float32(6.0), out=self.y)
