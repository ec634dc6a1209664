"""SOFTMAX, int8 (TFLM's reference integer algorithm, bit for bit) and float32.

int8: ``diff = x - max(row)``; entries with ``diff < diff_min`` give -128. Others
are rescaled by the beta multiplier into Q5.26, passed through gemmlowp's
``exp_on_negative_values``, summed in Q12.19; the sum's reciprocal comes from
``one_over_one_plus_x_for_x_in_0_1`` and each exp is scaled by it. Since ``diff``
takes only 256 values, the rescale-and-exp step is a table built at prepare time;
the per-row reciprocal and final scaling run on small int64 arrays (a per-call
allocation proportional to the number of rows, documented in the tests). Tiny
softmaxes (at most 64 values, e.g. a classifier's 12 scores) run the same integer
steps on Python ints: a dozen numpy calls on a dozen values cost more than the math.
"""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro import options as opt
from edge_runtime.backends.micro.fixedpoint import (
    CLIP,
    calculate_input_radius, exp_on_negative_values, get_reciprocal_scalar, quantize_multiplier_greater_than_one,
    rounding_divide_by_pot, srdhm,
)
from edge_runtime.backends.micro.kernels.base import (
    Inputs, Kernel, OpContext, Outputs, Scratch, Workspace, qparams, require_type,
)

SCALED_DIFF_INTEGER_BITS = 5
ACCUMULATION_INTEGER_BITS = 12


class Softmax(Kernel):
    """Softmax over the last axis."""

    inplace_ok = True
    max_version = 3

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        beta = opt.softmax(ctx.op)["beta"]
        x = require_type(ctx, ctx.input(0), ("INT8", "FLOAT32"), "input")
        y = require_type(ctx, ctx.output(0), (x.type_name,), "output")
        if tuple(x.shape) != tuple(y.shape) or not x.shape:
            raise ctx.fail("input and output shapes must be equal and non-scalar")
        self.depth = x.shape[-1]
        self.rows = x.num_elements // max(1, self.depth)
        self.quantized = x.type_name == "INT8"
        self.beta = beta
        if self.quantized:
            sx, _ = qparams(x)
            sy, zy = qparams(y)
            if zy != -128 or abs(float(np.float32(sy)) - 1.0 / 256) > 1e-12:
                raise ctx.fail(f"int8 softmax output must have scale 1/256 and zero point -128, got {sy}, {zy}")
            real = min(float(beta) * float(np.float32(sx)) * float(1 << (31 - SCALED_DIFF_INTEGER_BITS)),
                       float((1 << 31) - 1))
            mult, left = quantize_multiplier_greater_than_one(real)
            self.diff_min = -calculate_input_radius(SCALED_DIFF_INTEGER_BITS, left)
            diffs = np.arange(-255, 1, dtype=np.int64)  # index = diff + 255
            rescaled = srdhm(diffs * (1 << left), mult)
            exp_q0 = exp_on_negative_values(rescaled, SCALED_DIFF_INTEGER_BITS)
            valid = diffs >= self.diff_min
            self.exp_table = np.where(valid, exp_q0, 0).astype(np.int64)
            acc_q12 = rounding_divide_by_pot(exp_q0, ACCUMULATION_INTEGER_BITS)
            self.acc_table = np.where(valid, acc_q12, 0).astype(np.int64)
            # entries below diff_min give -128: min(result, fill) with fill -128 there, 127 elsewhere
            self.invalid_fill = np.where(valid, 127, -128).astype(np.int8)
            self.small = self.rows * self.depth <= 64
            self.exp_list = self.exp_table.tolist()
            self.acc_list = self.acc_table.tolist()
            self.valid_list = valid.tolist()
            self.workspace = {"idx": ((self.rows, self.depth), np.dtype(np.intp)),
                              "e": ((self.rows, self.depth), np.dtype(np.int64)),
                              "neg": ((self.rows, self.depth), np.dtype(np.int64)),
                              "mask": ((self.rows, self.depth), np.dtype(np.int8)),
                              "mx": ((self.rows, 1), np.dtype(np.int64))}
        else:
            self.workspace = {"f": ((self.rows, self.depth), np.dtype(np.float64)),
                              "m": ((self.rows, 1), np.dtype(np.float64))}

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Row views and workspace."""
        self.x = inputs[0].reshape(self.rows, self.depth)
        self.y = outputs[0].reshape(self.rows, self.depth)
        self.ws = ws
        if self.quantized:
            self.neg, self.mask = ws["neg"], ws["mask"]

    def _run_small(self) -> None:
        """The integer algorithm of ``run`` on Python ints, row by row."""
        exp_t, acc_t, valid = self.exp_list, self.acc_list, self.valid_list
        for x_row, y_row in zip(self.x, self.y):
            vals = x_row.tolist()
            top = max(vals)
            idx = [v - top + 255 for v in vals]
            total = sum(acc_t[i] for i in idx)
            total = ((total + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)
            scale, bits_over_unit = get_reciprocal_scalar(total, ACCUMULATION_INTEGER_BITS)
            exponent = bits_over_unit + 31 - 8
            half = (1 << (exponent - 1)) if exponent > 0 else 0
            out = []
            for i in idx:
                if not valid[i]:
                    out.append(-128)
                    continue
                v = (exp_t[i] * scale + (1 << 30)) >> 31
                if exponent > 0:
                    v = (v + half - (1 if v < 0 else 0)) >> exponent
                v -= 128
                out.append(-128 if v < -128 else 127 if v > 127 else v)
            y_row[:] = out

    def run(self) -> None:
        """Compute the softmax of every row."""
        if not self.quantized:
            f, m = self.ws["f"], self.ws["m"]
            np.copyto(f, self.x)
            np.maximum.reduce(f, axis=1, keepdims=True, out=m)
            f -= m
            f *= self.beta
            np.exp(f, out=f)
            np.add.reduce(f, axis=1, keepdims=True, out=m)
            f /= m
            np.copyto(self.y, f, casting="same_kind")
            return
        if self.small:
            self._run_small()
            return
        idx, e, mx = self.ws["idx"], self.ws["e"], self.ws["mx"]
        np.copyto(idx, self.x, casting="unsafe")
        np.maximum.reduce(idx, axis=1, keepdims=True, out=mx)
        idx -= mx
        idx += 255
        self.acc_table.take(idx, out=e, mode="clip")
        np.add.reduce(e, axis=1, keepdims=True, out=mx)
        sums = mx[:, 0]
        self.exp_table.take(idx, out=e, mode="clip")
        for r in range(self.rows):  # per row (not per pixel): one reciprocal each
            total = ((int(sums[r]) + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)
            scale, bits_over_unit = get_reciprocal_scalar(total, ACCUMULATION_INTEGER_BITS)
            exponent = bits_over_unit + 31 - 8
            row = e[r]
            row *= scale
            row += 1 << 30
            row >>= 31
            if exponent > 0:
                np.right_shift(row, 63, out=self.neg[r])
                row += self.neg[r]
                row += 1 << (exponent - 1)
                row >>= exponent
        e -= 128
        CLIP(e, -128, 127, out=e)
        np.copyto(self.y, e, casting="unsafe")
        self.invalid_fill.take(idx, out=self.mask, mode="clip")
        np.minimum(self.y, self.mask, out=self.y)
