"""QUANTIZE (float32 -> int8, int8 -> int8) and DEQUANTIZE (int8 -> float32), as TFLM.

QUANTIZE from float: ``round(x / scale) + zero_point`` with the division in float32
and rounding half away from zero, then clamp. Requantize int8 -> int8: offset,
MultiplyByQuantizedMultiplier with input_scale / output_scale, offset, clamp (a
256-entry table). DEQUANTIZE: ``float(scale * (q - zero_point))`` computed in double.
"""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.fixedpoint import CLIP, multiply_by_quantized_multiplier, quantize_multiplier
from edge_runtime.backends.micro.kernels.base import (
    Inputs, Kernel, OpContext, Outputs, Scratch, Workspace, qparams, require_type,
)


class Quantize(Kernel):
    """QUANTIZE."""

    inplace_ok = True
    max_version = 2

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        x = require_type(ctx, ctx.input(0), ("FLOAT32", "INT8"), "input")
        y = require_type(ctx, ctx.output(0), ("INT8",), "output")
        if tuple(x.shape) != tuple(y.shape):
            raise ctx.fail("input and output shapes differ")
        sy, zy = qparams(y)
        if sy == 0.0 or y.quantization.per_channel:
            raise ctx.fail("the output needs one (per-tensor) scale")
        self.from_float = x.type_name == "FLOAT32"
        if self.from_float:
            self.scale = np.float32(sy)
            self.zp = float(zy)
            self.workspace = {"f": (tuple(x.shape), np.dtype(np.float32)), "d": (tuple(x.shape), np.dtype(np.float64)),
                              "s": (tuple(x.shape), np.dtype(np.float64))}
        else:
            sx, zx = qparams(x)
            mult, shift = quantize_multiplier(float(np.float32(sx)) / float(np.float32(sy)))
            q = np.arange(-128, 128, dtype=np.int64)
            lut = np.clip(multiply_by_quantized_multiplier(q - zx, mult, shift) + zy, -128, 127).astype(np.int8)
            self.lut = np.concatenate([lut[128:], lut[:128]])
            self.workspace = {"idx": (tuple(x.shape), np.dtype(np.intp))}

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Remember the views."""
        self.x, self.y, self.ws = inputs[0], outputs[0], ws

    def run(self) -> None:
        """Quantize."""
        if not self.from_float:
            idx = self.ws["idx"]
            np.copyto(idx, self.x.view(np.uint8))
            self.lut.take(idx, out=self.y, mode="wrap")
            return
        f, d, s = self.ws["f"], self.ws["d"], self.ws["s"]
        np.divide(self.x, self.scale, out=f)
        np.copyto(d, f)
        np.sign(d, out=s)
        np.abs(d, out=d)
        d += 0.5
        np.floor(d, out=d)
        d *= s
        d += self.zp
        CLIP(d, -128.0, 127.0, out=d)
        np.copyto(self.y, d, casting="unsafe")


class Dequantize(Kernel):
    """DEQUANTIZE int8 -> float32 (a 256-entry table)."""

    inplace_ok = True
    max_version = 3

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        x = require_type(ctx, ctx.input(0), ("INT8",), "input")
        y = require_type(ctx, ctx.output(0), ("FLOAT32",), "output")
        if tuple(x.shape) != tuple(y.shape):
            raise ctx.fail("input and output shapes differ")
        if x.quantization is None or x.quantization.per_channel:
            raise ctx.fail("the input needs one (per-tensor) scale")
        sx, zx = qparams(x)
        q = np.arange(-128, 128, dtype=np.int64)
        lut = (float(np.float32(sx)) * (q - zx).astype(np.float64)).astype(np.float32)
        self.lut = np.concatenate([lut[128:], lut[:128]])
        self.workspace = {"idx": (tuple(x.shape), np.dtype(np.intp))}

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Remember the views."""
        self.xu, self.y, self.idx = inputs[0].view(np.uint8), outputs[0], ws["idx"]

    def run(self) -> None:
        """Dequantize (indices are copied first, so the op may write over its input)."""
        np.copyto(self.idx, self.xu)
        self.lut.take(self.idx, out=self.y, mode="wrap")
