"""QUANTIZE and DEQUANTIZE, for the type pairs TFLM accepts (plus float16 DEQUANTIZE).

QUANTIZE from float32 (to int8 or int16): ``round(x / scale)`` with the division in
float32 and rounding half away from zero, converted to int32 as x86 does (values
outside the int32 range and NaN give INT32_MIN), plus the zero point with int32
wrap-around, then clamped (what tflite-micro computes, bit for bit).
Requantize (int8 -> int8/uint8/int16/int32, int16 -> int8/int16/int32, uint8 -> int8,
int32 -> int8/int16): offset, MultiplyByQuantizedMultiplier with
``input_scale / output_scale``, offset, clamp; 8- and 16-bit inputs use a table of
every input value, int32 inputs run the steps on an int64 workspace.
DEQUANTIZE (int8, int16, uint8 -> float32): ``float(scale * (q - zero_point))`` in
double (a table). float16 -> float32 (float models whose weights are stored as
float16) is exact; on a constant input it is converted once, at bind time.
"""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.fixedpoint import (
    CLIP, INT32_MAX, quantize_multiplier, rounding_divide_by_pot, wrap32,
)
from edge_runtime.backends.micro.fixedpoint_lut import multiply_by_quantized_multiplier_wrapped, table_inputs
from edge_runtime.backends.micro.kernels.base import (
    Inputs, Kernel, OpContext, Outputs, Scratch, Workspace, qparams, require_type,
)

#: (input type, output type) pairs of TFLM's QUANTIZE.
QUANTIZE_PAIRS = {
    ("FLOAT32", "INT8"), ("FLOAT32", "INT16"),
    ("INT8", "INT8"), ("INT8", "UINT8"), ("INT8", "INT16"), ("INT8", "INT32"),
    ("INT16", "INT8"), ("INT16", "INT16"), ("INT16", "INT32"),
    ("UINT8", "INT8"), ("INT32", "INT8"), ("INT32", "INT16"),
}


class Quantize(Kernel):
    """QUANTIZE."""

    inplace_ok = True
    max_version = 3

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        x = require_type(ctx, ctx.input(0), ("FLOAT32", "INT8", "INT16", "INT32", "UINT8"), "input")
        y = require_type(ctx, ctx.output(0), ("INT8", "INT16", "INT32", "UINT8"), "output")
        if (x.type_name, y.type_name) not in QUANTIZE_PAIRS:
            raise ctx.fail(f"QUANTIZE from {x.type_name} to {y.type_name} is not supported")
        if tuple(x.shape) != tuple(y.shape):
            raise ctx.fail("input and output shapes differ")
        sy, zy = qparams(y)
        if sy == 0.0 or y.quantization.per_channel:
            raise ctx.fail("the output needs one (per-tensor) scale")
        info = np.iinfo(y.dtype)
        self.lo, self.hi = int(info.min), int(info.max)
        self.mode = "float" if x.type_name == "FLOAT32" else "table" if x.dtype.itemsize <= 2 else "int32"
        shape = tuple(x.shape)
        if self.mode == "float":
            self.scale = np.float32(sy)
            self.zp = float(zy)
            self.workspace = {"f": (shape, np.dtype(np.float32)), "d": (shape, np.dtype(np.float64)),
                              "s": (shape, np.dtype(np.float64)), "m": (shape, np.dtype(np.bool_))}
            return
        if x.quantization is None or x.quantization.scale.size == 0:
            raise ctx.fail("the input needs quantization parameters")
        sx, zx = qparams(x)
        self.mult, self.shift = quantize_multiplier(float(np.float32(sx)) / float(np.float32(sy)))
        self.zx, self.zy = zx, zy
        if self.mode == "table":
            v = table_inputs(x.dtype)
            out = multiply_by_quantized_multiplier_wrapped(v - zx, self.mult, self.shift) + zy
            self.lut = np.clip(out, self.lo, self.hi).astype(y.dtype)
            self.workspace = {"idx": (shape, np.dtype(np.intp))}
        else:
            self.workspace = {"e": (shape, np.dtype(np.int64)), "t": (shape, np.dtype(np.int64))}

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Remember the views."""
        self.x, self.y, self.ws = inputs[0], outputs[0], ws

    def run(self) -> None:
        """Quantize (every input is copied to the workspace before the output is written)."""
        if self.mode == "table":
            idx = self.ws["idx"]
            np.copyto(idx, self.x.view(f"u{self.x.dtype.itemsize}"))
            self.lut.take(idx, out=self.y, mode="clip")
        elif self.mode == "int32":
            self._requantize_int32()
        else:
            self._quantize_float()

    def _requantize_int32(self) -> None:
        e, t = self.ws["e"], self.ws["t"]
        np.copyto(e, self.x)
        e -= self.zx
        wrap32(e)
        if self.shift > 0:
            e <<= self.shift
            wrap32(e)
        e *= self.mult
        e += 1 << 30
        e >>= 31
        np.minimum(e, INT32_MAX, out=e)
        if self.shift < 0:
            rounding_divide_by_pot(e, -self.shift, out=e, tmp=t)
        e += self.zy
        wrap32(e)
        CLIP(e, self.lo, self.hi, out=e)
        np.copyto(self.y, e, casting="unsafe")

    def _quantize_float(self) -> None:
        f, d, s, m = self.ws["f"], self.ws["d"], self.ws["s"], self.ws["m"]
        np.divide(self.x, self.scale, out=f)
        np.copyto(d, f)
        np.sign(d, out=s)
        np.abs(d, out=d)
        d += 0.5
        np.floor(d, out=d)
        d *= s
        # float -> int32 as x86 converts: NaN and out-of-range values become INT32_MIN
        np.isnan(d, out=m)
        np.copyto(d, -2.0 ** 31, where=m)
        np.greater_equal(d, 2.0 ** 31, out=m)
        np.copyto(d, -2.0 ** 31, where=m)
        np.less(d, -2.0 ** 31, out=m)
        np.copyto(d, -2.0 ** 31, where=m)
        d += self.zp
        # int32 wrap-around of the zero-point addition
        np.less(d, -2.0 ** 31, out=m)
        np.add(d, 2.0 ** 32, out=d, where=m)
        np.greater_equal(d, 2.0 ** 31, out=m)
        np.subtract(d, 2.0 ** 32, out=d, where=m)
        CLIP(d, float(self.lo), float(self.hi), out=d)
        np.copyto(self.y, d, casting="unsafe")


class Dequantize(Kernel):
    """DEQUANTIZE int8/int16/uint8 -> float32 (a table), float16 -> float32 (exact)."""

    inplace_ok = True
    max_version = 6

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        x = require_type(ctx, ctx.input(0), ("INT8", "INT16", "UINT8", "FLOAT16"), "input")
        y = require_type(ctx, ctx.output(0), ("FLOAT32",), "output")
        if tuple(x.shape) != tuple(y.shape):
            raise ctx.fail("input and output shapes differ")
        self.half = x.type_name == "FLOAT16"
        self.constant = x.is_constant
        if self.half:
            return
        if x.quantization is None or x.quantization.scale.size == 0 or x.quantization.per_channel:
            raise ctx.fail("the input needs one (per-tensor) scale")
        sx, zx = qparams(x)
        q = table_inputs(x.dtype)
        self.lut = (float(np.float32(sx)) * (q - zx).astype(np.float64)).astype(np.float32)
        self.workspace = {"idx": (tuple(x.shape), np.dtype(np.intp))}

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Remember the views (a constant float16 input is converted here, once)."""
        self.x, self.y = inputs[0], outputs[0]
        if self.half:
            self.cache_bytes = 0
            if self.constant:
                self.converted = self.x.astype(np.float32)
                self.cache_bytes = int(self.converted.nbytes)
            return
        self.xu, self.idx = self.x.view(f"u{self.x.dtype.itemsize}"), ws["idx"]

    def run(self) -> None:
        """Dequantize (indices are copied first, so the op may write over its input)."""
        if self.half:
            np.copyto(self.y, self.converted if self.constant else self.x)
            return
        np.copyto(self.idx, self.xu)
        self.lut.take(self.idx, out=self.y, mode="clip")
