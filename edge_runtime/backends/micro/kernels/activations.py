"""RELU, RELU6, LOGISTIC and TANH: int8, int16 and float32.

int8 LOGISTIC and TANH follow TFLM's reference integer algorithms (input rescaled
to Q4.27, gemmlowp ``logistic``/``tanh``, RoundingDivideByPOT to the output
scale, radius clamp). An int8 input has 256 possible values, so the exact
algorithm is evaluated once at prepare time for all of them and ``run`` is a table
lookup. int8 RELU requantizes (TFLM ``ReluQuantized``); int8 RELU6 clamps between
the quantized 0 and 6 (TFLM ``Relu6Quantized``). int16 uses 65536-entry tables:
RELU/RELU6 as for int8; LOGISTIC/TANH (zero points 0, output scale 2**-15) follow
TFLM's interpolated sigmoid table (``fixedpoint_lut.int16_sigmoid_lut``).

float32 LOGISTIC and TANH are TFLM's reference float code with glibc's functions, bit for bit: LOGISTIC
``x > 16.619047f ? 1 : x < -9 ? expf(x) : 1 / (1 + expf(-x))`` (:mod:`edge_runtime.backends.micro.libm_expf`),
TANH ``tanhf(x)`` (:mod:`edge_runtime.backends.micro.libm_tanhf`).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from edge_runtime.backends.micro.fixedpoint import (
    CLIP,
    calculate_input_radius, frexp_multiplier, logistic, multiply_by_quantized_multiplier, quantize_multiplier,
    rounding_divide_by_pot, tanh, tflite_round,
)
from edge_runtime.backends.micro.fixedpoint_lut import (
    checked_log2, int16_sigmoid_input_rescale, int16_sigmoid_lut, table_inputs,
)
from edge_runtime.backends.micro.kernels.base import (
    Inputs, Kernel, OpContext, Outputs, Scratch, Workspace, qparams, require_type,
)
from edge_runtime.backends.micro.libm_expf import ExpF
from edge_runtime.backends.micro.libm_tanhf import TanhF

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


def _lut_relu(sx: float, zx: int, sy: float, zy: int, six: bool, dtype: np.dtype = np.dtype(np.int8),
              q: "np.ndarray | None" = None) -> np.ndarray:
    info = np.iinfo(dtype)
    if q is None:
        q = np.arange(-128, 128, dtype=np.int64)
    if six:
        lo = zx
        hi = max(info.min, min(info.max, zx + tflite_round(float(np.float32(6.0) / np.float32(sx)))))
        return np.clip(q, lo, hi).astype(dtype)
    mult, shift = quantize_multiplier(float(np.float32(sx)) / float(np.float32(sy)))
    v = zy + multiply_by_quantized_multiplier(q - zx, mult, shift)
    lo = max(int(info.min), zy + int(round(0.0)))
    return np.clip(v, lo, info.max).astype(dtype)


def _lut_int16(ctx: OpContext, kind: str, sx: float, zx: int, sy: float, zy: int) -> np.ndarray:
    """The 65536-entry table of an int16 activation, in the order of the input's uint16 view."""
    q = table_inputs(np.int16)
    if kind in ("RELU", "RELU6"):
        if kind == "RELU6" and (np.float32(sx), zx) != (np.float32(sy), zy):
            raise ctx.fail("int16 RELU6 needs equal input and output quantization")
        return _lut_relu(sx, zx, sy, zy, kind == "RELU6", np.dtype(np.int16), q)
    return _sigmoid_table16(q, *_sigmoid_rescale16(ctx, kind, sx, zx, sy, zy))


def _sigmoid_rescale16(ctx: OpContext, kind: str, sx: float, zx: int, sy: float, zy: int) -> tuple[int, int, bool]:
    """Checks of an int16 LOGISTIC/TANH (TFLM's Prepare) and its table's (multiplier, shift, tanh)."""
    if zx != 0 or zy != 0:
        raise ctx.fail(f"int16 {kind} needs zero points 0, got {zx} and {zy}")
    pot, log2 = checked_log2(float(np.float32(sy)))
    if not pot or log2 != -15:
        raise ctx.fail(f"int16 {kind} output scale must be 2**-15, got {sy}")
    mult, shift = int16_sigmoid_input_rescale(float(np.float32(sx)), kind == "TANH")
    return mult, shift, kind == "TANH"


def _sigmoid_table16(q: np.ndarray, mult: int, shift: int, tanh: bool) -> np.ndarray:
    """The 65536-entry int16 LOGISTIC/TANH table over the inputs ``q``."""
    return int16_sigmoid_lut(q, mult, shift, tanh).astype(np.int16)


#: TFLM's float LOGISTIC cut-offs.
LOGISTIC_HIGH, LOGISTIC_LOW = np.float32(16.619047164916992188), np.float32(-9.0)


class Activation(Kernel):
    """Elementwise activation; int8 through a 256-entry table built with TFLM's arithmetic."""

    inplace_ok = True
    max_version = 3

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        self.kind = ctx.op.name
        x = require_type(ctx, ctx.input(0), ("INT8", "INT16", "FLOAT32"), "input")
        y = require_type(ctx, ctx.output(0), (x.type_name,), "output")
        if tuple(x.shape) != tuple(y.shape):
            raise ctx.fail("input and output shapes differ")
        self.quantized = x.type_name in ("INT8", "INT16")
        if self.quantized and (x.quantization is None or y.quantization is None):
            raise ctx.fail(f"{x.type_name} {self.kind} needs quantized input and output tensors")
        self._table16: Optional[tuple[int, int, bool]] = None
        if x.type_name == "INT16" and self.kind in ("LOGISTIC", "TANH"):
            # checked here; the 65536-entry table (3 ms) is built at bind, so that a kernel built only for
            # its memory traits (the arena planner, over thousands of unrolled LSTM gates) skips it
            self._table16 = _sigmoid_rescale16(ctx, self.kind, *qparams(x), *qparams(y))
            self.lut = None
            self.workspace = {"idx": (tuple(x.shape), np.dtype(np.intp))}
        elif x.type_name == "INT16":
            self.lut = _lut_int16(ctx, self.kind, *qparams(x), *qparams(y))
            self.workspace = {"idx": (tuple(x.shape), np.dtype(np.intp))}
        elif self.quantized:
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
        elif self.kind == "LOGISTIC":
            self.expf = ExpF(int(np.prod(x.shape, dtype=np.int64)))
            self.workspace = {"e": (tuple(x.shape), np.dtype(np.float32)), "low": (tuple(x.shape), np.dtype(np.bool_)),
                              "high": (tuple(x.shape), np.dtype(np.bool_))}
        elif self.kind == "TANH":
            self.tanhf = TanhF(int(np.prod(x.shape, dtype=np.int64)))

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Remember the views."""
        self.x, self.y, self.ws = inputs[0], outputs[0], ws
        if self._table16 is not None and self.lut is None:
            self.lut = _sigmoid_table16(table_inputs(np.int16), *self._table16)
        if self.quantized:
            self.xu = self.x.view(f"u{self.x.dtype.itemsize}")
            self.idx = ws["idx"]
            self._bind_fast()

    def _bind_fast(self) -> None:
        """The compiled path for int8: one pass of table lookups."""
        from edge_runtime.backends.micro.fast import int8_lut_runner

        runner = int8_lut_runner(self.x, self.y, self.lut)
        if runner is not None:
            self.run = runner  # type: ignore[method-assign]
            self.path = "numba"

    def run(self) -> None:
        """Apply the activation (the index copy is taken before the output is written: safe in place)."""
        if self.quantized:
            np.copyto(self.idx, self.xu)
            self.lut.take(self.idx, out=self.y, mode="clip")
        elif self.kind == "RELU":  # TFLM: x < 0 ? 0 : x (-0 and NaN pass through; np.maximum would give +0)
            CLIP(self.x, 0.0, np.inf, out=self.y)
        elif self.kind == "RELU6":
            CLIP(self.x, 0.0, 6.0, out=self.y)
        elif self.kind == "TANH":
            self.tanhf(self.x, self.y)
        else:
            self._logistic_float()

    def _logistic_float(self) -> None:
        """TFLM's float LOGISTIC: ``x > 16.619047f ? 1 : x < -9 ? expf(x) : 1 / (1 + expf(-x))``, one ``expf``
        pass over ``x`` below -9 and ``-x`` elsewhere (the masks are taken before y, maybe x, is written)."""
        e, low, high = self.ws["e"], self.ws["low"], self.ws["high"]
        np.less(self.x, LOGISTIC_LOW, out=low)
        np.greater(self.x, LOGISTIC_HIGH, out=high)
        np.negative(self.x, out=e)
        np.putmask(e, low, self.x)
        self.expf(e, e)
        np.add(e, np.float32(1.0), out=self.y)
        np.divide(np.float32(1.0), self.y, out=self.y)
        np.putmask(self.y, low, e)
        np.putmask(self.y, high, np.float32(1.0))
