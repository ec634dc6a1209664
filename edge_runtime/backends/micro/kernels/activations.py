"""RELU, RELU6, LOGISTIC and TANH, int8 and float32.

int8 LOGISTIC and TANH follow TFLM's reference integer algorithms (input rescaled
to Q4.27, gemmlowp ``logistic``/``tanh``, RoundingDivideByPOT to the output
scale, radius clamp). An int8 input has 256 possible values, so the exact
algorithm is evaluated once at prepare time for all of them and ``run`` is a table
lookup. int8 RELU requantizes (TFLM ``ReluQuantized``); int8 RELU6 clamps between
the quantized 0 and 6 (TFLM ``Relu6Quantized``).
"""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.fixedpoint import (
    CLIP,
    calculate_input_radius, frexp_multiplier, logistic, multiply_by_quantized_multiplier, quantize_multiplier,
    rounding_divide_by_pot, tanh, tflite_round,
)
from edge_runtime.backends.micro.kernels.base import (
    Inputs, Kernel, OpContext, Outputs, Scratch, Workspace, qparams, require_type,
)

INPUT_INTEGER_BITS = 4


def _input_rescale(scale: float) -> tuple[int, int, int]:
    """(multiplier, left shift, radius) as TFLM's tanh/logistic Prepare computes them."""
    real = float(np.float32(scale)) * float(1 << (31 - INPUT_INTEGER_BITS))
    mult, shift = frexp_multiplier(real)
    return mult, shift, calculate_input_radius(INPUT_INTEGER_BITS, shift, 31)


def _lut_logistic(scale: float, zero_point: int) -> np.ndarray:
    mult, shift, radius = _input_rescale(scale)
    q = np.arange(-128, 128, dtype=np.int64)
    x = q - zero_point
    inq4 = multiply_by_quantized_multiplier(x, mult, shift)
    out = rounding_divide_by_pot(logistic(inq4, INPUT_INTEGER_BITS), 31 - 8) - 128
    out = np.clip(out, -128, 127)
    out = np.where(x <= -radius, -128, np.where(x >= radius, 127, out))
    return out.astype(np.int8)


def _lut_tanh(scale: float, zero_point: int) -> np.ndarray:
    mult, shift, radius = _input_rescale(scale)
    q = np.arange(-128, 128, dtype=np.int64)
    x = q - zero_point
    inq4 = multiply_by_quantized_multiplier(x, mult, shift)
    out = np.clip(rounding_divide_by_pot(tanh(inq4, INPUT_INTEGER_BITS), 31 - 7), -128, 127)
    out = np.where(x <= -radius, -128, np.where(x >= radius, 127, out))
    return out.astype(np.int8)


def _lut_relu(sx: float, zx: int, sy: float, zy: int, six: bool) -> np.ndarray:
    q = np.arange(-128, 128, dtype=np.int64)
    if six:
        lo = zx
        hi = max(-128, min(127, zx + tflite_round(float(np.float32(6.0) / np.float32(sx)))))
        return np.clip(q, lo, hi).astype(np.int8)
    mult, shift = quantize_multiplier(float(np.float32(sx)) / float(np.float32(sy)))
    v = zy + multiply_by_quantized_multiplier(q - zx, mult, shift)
    lo = max(-128, zy + int(round(0.0)))
    return np.clip(v, lo, 127).astype(np.int8)


class Activation(Kernel):
    """Elementwise activation; int8 through a 256-entry table built with TFLM's arithmetic."""

    inplace_ok = True
    max_version = 3

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        self.kind = ctx.op.name
        x = require_type(ctx, ctx.input(0), ("INT8", "FLOAT32"), "input")
        y = require_type(ctx, ctx.output(0), (x.type_name,), "output")
        if tuple(x.shape) != tuple(y.shape):
            raise ctx.fail("input and output shapes differ")
        self.quantized = x.type_name == "INT8"
        if self.quantized:
            sx, zx = qparams(x)
            sy, zy = qparams(y)
            if self.kind == "LOGISTIC":
                if zy != -128:
                    raise ctx.fail(f"int8 LOGISTIC output zero point must be -128, got {zy}")
                lut = _lut_logistic(sx, zx)
            elif self.kind == "TANH":
                if zy != 0:
                    raise ctx.fail(f"int8 TANH output zero point must be 0, got {zy}")
                lut = _lut_tanh(sx, zx)
            else:
                if self.kind == "RELU6" and (np.float32(sx), zx) != (np.float32(sy), zy):
                    raise ctx.fail("int8 RELU6 needs equal input and output quantization")
                lut = _lut_relu(sx, zx, sy, zy, self.kind == "RELU6")
            # index by the uint8 view of the input: entry u holds f(int8(u))
            self.lut = np.concatenate([lut[128:], lut[:128]]).astype(np.int8)
            self.workspace = {"idx": (tuple(x.shape), np.dtype(np.intp))}

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Remember the views."""
        self.x, self.y = inputs[0], outputs[0]
        if self.quantized:
            self.xu = self.x.view(np.uint8)
            self.idx = ws["idx"]

    def run(self) -> None:
        """Apply the activation (the index copy is taken before the output is written: safe in place)."""
        if self.quantized:
            np.copyto(self.idx, self.xu)
            self.lut.take(self.idx, out=self.y, mode="wrap")
        elif self.kind == "RELU":
            np.maximum(self.x, 0.0, out=self.y)
        elif self.kind == "RELU6":
            CLIP(self.x, 0.0, 6.0, out=self.y)
        elif self.kind == "TANH":
            np.tanh(self.x, out=self.y)
        else:
            np.negative(self.x, out=self.y)
            np.exp(self.y, out=self.y)
            self.y += 1.0
            np.reciprocal(self.y, out=self.y)
