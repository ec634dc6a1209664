"""LOG_SOFTMAX over the last axis: float32 and int8 (TFLM's algorithms, bit for bit).

float32, per row as TFLM's reference loop: ``max`` from the lowest float by ``max < v ? v : max`` (NaN
skipped; of equal zeros the first), ``sum`` of ``expf(x - max)`` added left to right in float32,
``(x - max) - logf(sum)``, with glibc's ``expf`` and ``logf`` (:mod:`edge_runtime.backends.micro.libm_expf`,
:mod:`edge_runtime.backends.micro.libm_logf`).

int8 (output scale 16/256, zero point 127, as TFLM requires): per row,
``diff = q - max(row)``; diffs >= diff_min are rescaled to Q5.26 by the beta
multiplier, exponentiated (gemmlowp ``exp_on_negative_values``) and summed in
Q12.19; the row's log-sum (Q5.26) comes from ``log_x_for_x_greater_than_or_equal_to_1``.
Each output is ``RoundingDivideByPOT(diff_q5 - log_sum, 22) + 127`` clamped, or -128
when ``diff`` is at most the row's adjusted minimum. diff takes 256 values, so the
rescale and exp are tables; the per-row log runs on Python ints.
"""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.fixedpoint import (
    INT32_MIN, calculate_input_radius, exp_on_negative_values, quantize_multiplier_greater_than_one,
    rounding_divide_by_pot, srdhm, wrap32,
)
from edge_runtime.backends.micro.fixedpoint_lut import (
    log_x_ge_1, multiply_by_quantized_multiplier_scalar, quantize_multiplier_smaller_than_one,
)
from edge_runtime.backends.micro.kernels.base import TensorInfo
from edge_runtime.backends.micro.kernels.unary.common import UnaryKernel, affine
from edge_runtime.backends.micro.libm_expf import ExpF
from edge_runtime.backends.micro.libm_logf import LogF

INPUT_BITS = 5
ACCUM_BITS = 12
OUTPUT_BITS = 4
OUTPUT_SCALE = 16.0 / 256
OUTPUT_ZERO_POINT = 127
LOWEST = np.finfo(np.float32).min


class LogSoftmax(UnaryKernel):
    """LOG_SOFTMAX."""

    max_version = 2
    TYPES = ("FLOAT32", "INT8")

    def prepare(self, x: TensorInfo, y: TensorInfo) -> None:
        """Check the output quantization; build the diff tables."""
        if not x.shape:
            raise self.ctx.fail("LOG_SOFTMAX needs an input of rank >= 1")
        self.depth = int(x.shape[-1])
        self.rows = x.num_elements // max(1, self.depth)
        rows, col = (self.rows, self.depth), (self.rows, 1)
        if x.type_name == "FLOAT32":
            self.workspace = {"f": (rows, np.dtype(np.float32)), "e": (rows, np.dtype(np.float32)),
                              "m": (col, np.dtype(np.float32)), "s": (col, np.dtype(np.float32))}
            self.expf = ExpF(self.rows * self.depth)
            self.logf = LogF(self.rows)
            return
        sx, _ = affine(self.ctx, x, "input")
        sy, zy = affine(self.ctx, y, "output")
        if sy != OUTPUT_SCALE or zy != OUTPUT_ZERO_POINT:
            raise self.ctx.fail(f"int8 LOG_SOFTMAX output must have scale 16/256 and zero point 127, got {sy}, {zy}")
        real = min(sx * float(1 << (31 - INPUT_BITS)), float((1 << 31) - 1))
        mult, left = quantize_multiplier_greater_than_one(real)
        self.rev_mult, self.rev_shift = quantize_multiplier_smaller_than_one(float(1 << (31 - left)) / mult)
        self.diff_min = -calculate_input_radius(INPUT_BITS, left)
        diffs = np.arange(-255, 1, dtype=np.int64)  # index = diff + 255
        valid = diffs >= self.diff_min
        q5 = srdhm(np.where(valid, diffs, 0) * (1 << left), mult)
        self.q5_table = q5.astype(np.int64)
        acc = rounding_divide_by_pot(exp_on_negative_values(q5, INPUT_BITS), ACCUM_BITS)
        self.acc_table = np.where(valid, acc, 0).astype(np.int64)
        self.workspace = {"idx": (rows, np.dtype(np.intp)), "e": (rows, np.dtype(np.int64)),
                          "t": (rows, np.dtype(np.int64)), "m": (rows, np.dtype(np.bool_)),
                          "col": (col, np.dtype(np.int64)), "adj": (col, np.dtype(np.int64))}

    def bind(self, inputs, outputs, scratch, ws) -> None:  # type: ignore[no-untyped-def]
        """Row views."""
        super().bind(inputs, outputs, scratch, ws)
        self.xr = self.x.reshape(self.rows, self.depth)
        self.yr = self.y.reshape(self.rows, self.depth)

    def run(self) -> None:
        """Compute every row."""
        if self.x_info.type_name == "FLOAT32":
            self._run_float()
        else:
            self._run_int8()

    def _run_float(self) -> None:
        """TFLM's float loop (module docstring) in float32 arithmetic."""
        f, e, m, s = self.ws["f"], self.ws["e"], self.ws["m"], self.ws["s"]
        np.copyto(f, self.xr)
        np.fmax.reduce(f, axis=1, keepdims=True, out=m, initial=LOWEST)  # NaN skipped, as by max < v ? v : max
        if not np.all(m):  # a zero maximum is the row's first zero, with its sign (rare: small arrays per row)
            for r in np.flatnonzero(m[:, 0] == 0):
                m[r, 0] = f[r, np.argmax(f[r] == 0)]
        np.subtract(f, m, out=f)
        self.expf(f, e)
        np.add.accumulate(e, axis=1, out=e)  # a running sum: the same left-to-right additions as TFLM's loop
        np.copyto(s, e[:, -1:])
        self.logf(s, s)
        np.subtract(f, s, out=f)
        np.copyto(self.yr, f)

    def _run_int8(self) -> None:
        ws = self.ws
        idx, e, t, m, col, adj = ws["idx"], ws["e"], ws["t"], ws["m"], ws["col"], ws["adj"]
        np.copyto(idx, self.xr)
        np.maximum.reduce(idx, axis=1, keepdims=True, out=col)
        idx -= col
        idx += 255
        self.acc_table.take(idx, out=e, mode="clip")
        np.add.reduce(e, axis=1, keepdims=True, out=col)
        for r in range(self.rows):
            total = ((int(col[r, 0]) + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)
            log_sum = log_x_ge_1(total, ACCUM_BITS, INPUT_BITS)
            shifted = ((log_sum + INT32_MIN + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)
            adj[r, 0] = max(self.diff_min - 1,
                            multiply_by_quantized_multiplier_scalar(shifted, self.rev_mult, self.rev_shift)) + 255
            col[r, 0] = log_sum
        self.q5_table.take(idx, out=e, mode="clip")
        e -= col
        wrap32(e)
        rounding_divide_by_pot(e, 31 - INPUT_BITS - OUTPUT_BITS, out=e, tmp=t)
        e += OUTPUT_ZERO_POINT
        np.clip(e, -128, 127, out=e)
        np.copyto(self.yr, e, casting="unsafe")
        np.less_equal(idx, adj, out=m)
        np.copyto(self.yr, -128, where=m)
