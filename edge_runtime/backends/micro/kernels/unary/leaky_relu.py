"""LEAKY_RELU: float32 (``x > 0 ? x : alpha * x``); int8 and int16 with two requantizations.

Quantized (TFLM): ``v = q - zp_in``; ``v >= 0`` is rescaled by ``scale_in / scale_out``,
``v < 0`` by ``scale_in * alpha / scale_out`` (both computed in double from the float32 values, then
QuantizeMultiplier; MultiplyByQuantizedMultiplier), plus ``zp_out``, clamped. A table.
"""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.fixedpoint import multiply_by_quantized_multiplier, quantize_multiplier
from edge_runtime.backends.micro.kernels.base import TensorInfo
from edge_runtime.backends.micro.kernels.unary.common import UnaryKernel, affine, option_scalar


class LeakyRelu(UnaryKernel):
    """LEAKY_RELU (LeakyReluOptions{alpha})."""

    max_version = 2
    TYPES = ("FLOAT32", "INT8", "INT16")

    def prepare(self, x: TensorInfo, y: TensorInfo) -> None:
        """Read alpha; build the table for integer inputs."""
        self.alpha = np.float32(option_scalar(self.ctx.op, 0, "f", 0.0))
        if x.type_name == "FLOAT32":
            self.workspace = {"f": (tuple(x.shape), np.dtype(np.float32)),
                              "m": (tuple(x.shape), np.dtype(np.bool_))}
            return
        sx, zx = affine(self.ctx, x, "input")
        sy, zy = affine(self.ctx, y, "output")
        # both ratios in double from the float32 scales and alpha, as the tflite-micro we check computes them
        # (float32 quotients differ on rare scale pairs, e.g. 0.08737836 / 0.14602959: 89 instead of 88)
        fsx, fsy = float(np.float32(sx)), float(np.float32(sy))
        m_alpha, s_alpha = quantize_multiplier(fsx * float(self.alpha) / fsy)
        m_id, s_id = quantize_multiplier(fsx / fsy)
        v = self.table_inputs() - zx
        pos = multiply_by_quantized_multiplier(v, m_id, s_id)
        # A negative alpha gives a negative multiplier: tflite-micro's result is then the negated product with
        # |multiplier| (its rounding of x * m for m < 0), which is what this computes (checked on every input).
        neg = (multiply_by_quantized_multiplier(v, m_alpha, s_alpha) if m_alpha >= 0
               else -multiply_by_quantized_multiplier(v, -m_alpha, s_alpha))
        info = np.iinfo(x.dtype)
        self.set_table(np.clip(np.where(v >= 0, pos, neg) + zy, info.min, info.max))

    def run_float(self) -> None:
        """``x > 0 ? x : x * alpha`` (alpha may exceed 1 or be negative)."""
        f, m = self.ws["f"], self.ws["m"]
        np.multiply(self.x, self.alpha, out=f)
        np.greater(self.x, np.float32(0.0), out=m)
        np.copyto(f, self.x, where=m)
        np.copyto(self.y, f)
