"""SOFTMAX, int8 (to int8 or int16), int16 (TFLM's reference integer algorithms, bit for bit) and float32.

int8: ``diff = x - max(row)``; entries with ``diff < diff_min`` give -128. Others
are rescaled by the beta multiplier into Q5.26, passed through gemmlowp's
``exp_on_negative_values``, summed in Q12.19; the sum's reciprocal comes from
``one_over_one_plus_x_for_x_in_0_1`` and each exp is scaled by it. Since ``diff``
takes only 256 values, the rescale-and-exp step is a table built at prepare time;
the per-row reciprocal and final scaling run on small int64 arrays (a per-call
allocation proportional to the number of rows, documented in the tests). Tiny
softmaxes (at most 64 values, e.g. a classifier's 12 scores) run the same integer
steps on Python ints: a dozen numpy calls on a dozen values cost more than the math.
int8 input with int16 output (zero point -32768, scale 1/65536) runs the same steps with a
16-bit final shift.

int16 (output zero point 0, scale 1/32768): ``max(row) - x`` takes 65,536 values, so the
rescale by beta (onto [-10, 0]) and the interpolated exp table of TFLM's Prepare become one
table built here; per row, the sum's reciprocal comes from the interpolated 1/(1+x) table and
each exp is scaled by it with a rounding shift.
"""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro import fast, options as opt
from edge_runtime.backends.micro.fixedpoint import (
    CLIP,
    calculate_input_radius, exp_on_negative_values, get_reciprocal_scalar, quantize_multiplier,
    quantize_multiplier_greater_than_one,
    rounding_divide_by_pot, srdhm,
)
from edge_runtime.backends.micro.fixedpoint_lut import (
    exp_f32, gen_int16_lut, int16_lut_lookup, int16_lut_lookup_scalar, multiply_by_quantized_multiplier_wrapped,
    one_over_one_plus_x_f32,
)
from edge_runtime.backends.micro.kernels.base import (
    Inputs, Kernel, OpContext, Outputs, Scratch, Workspace, qparams, require_type,
)
from edge_runtime.backends.micro.libm_expf import ExpF

SCALED_DIFF_INTEGER_BITS = 5
ACCUMULATION_INTEGER_BITS = 12


class Softmax(Kernel):
    """Softmax over the last axis."""

    inplace_ok = True
    max_version = 3

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        beta = opt.softmax(ctx.op)["beta"]
        x = require_type(ctx, ctx.input(0), ("INT8", "INT16", "FLOAT32"), "input")
        y = require_type(ctx, ctx.output(0), ("INT8", "INT16") if x.type_name == "INT8" else (x.type_name,),
                         "output")
        if tuple(x.shape) != tuple(y.shape) or not x.shape:
            raise ctx.fail("input and output shapes must be equal and non-scalar")
        self.depth = x.shape[-1]
        self.rows = x.num_elements // max(1, self.depth)
        self.quantized = x.type_name == "INT8"
        self.int16 = x.type_name == "INT16"
        self.beta = beta
        if self.int16:
            self._prepare_int16(ctx, x, y, beta)
        elif self.quantized:
            sx, _ = qparams(x)
            sy, zy = qparams(y)
            self.out_bits = 16 if y.type_name == "INT16" else 8
            want = (-32768, 1.0 / 65536) if self.out_bits == 16 else (-128, 1.0 / 256)
            if zy != want[0] or abs(float(np.float32(sy)) - want[1]) > (0.001 * want[1] if self.out_bits == 16 else 1e-12):
                raise ctx.fail(f"softmax from int8 to {y.type_name.lower()} needs output scale 1/{round(1 / want[1])} "
                               f"and zero point {want[0]}, got {sy}, {zy}")
            self.out_min, self.out_max = (-32768, 32767) if self.out_bits == 16 else (-128, 127)
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
            # entries below diff_min give the output minimum: min(result, fill) with that minimum there
            self.invalid_fill = np.where(valid, self.out_max, self.out_min).astype(y.dtype)
            self.small = self.rows * self.depth <= 64
            self.exp_list = self.exp_table.tolist()
            self.acc_list = self.acc_table.tolist()
            self.valid_list = valid.tolist()
            self.workspace = {"idx": ((self.rows, self.depth), np.dtype(np.intp)),
                              "e": ((self.rows, self.depth), np.dtype(np.int64)),
                              "neg": ((self.rows, self.depth), np.dtype(np.int64)),
                              "mask": ((self.rows, self.depth), y.dtype),
                              "mx": ((self.rows, 1), np.dtype(np.int64))}
        else:
            self.beta = np.float32(beta)
            self.expf = ExpF(self.rows * self.depth)
            self.workspace = {"f": ((self.rows, self.depth), np.dtype(np.float32)),
                              "c": ((self.rows, self.depth), np.dtype(np.float32)),
                              "m": ((self.rows, 1), np.dtype(np.float32))}

    def _prepare_int16(self, ctx: OpContext, x: object, y: object, beta: float) -> None:
        """TFLM's int16 Prepare: the beta rescale onto [-10, 0] folded with the interpolated exp table."""
        sx, _ = qparams(x)
        sy, zy = qparams(y)
        if zy != 0 or abs(float(np.float32(sy)) - 1.0 / 32768) > 0.001 / 32768:
            raise ctx.fail(f"int16 softmax output must have scale 1/32768 and zero point 0, got {sy}, {zy}")
        mult, shift = quantize_multiplier(float(np.float32(sx)) * float(np.float32(beta)) / (10.0 / 65535.0))
        exp_lut = gen_int16_lut(exp_f32, -10.0, 0.0, -1.0, 1.0)
        self.recip_lut = gen_int16_lut(one_over_one_plus_x_f32, 0.0, 1.0, -1.0, 1.0).tolist()
        diffs = -np.arange(65536, dtype=np.int64)  # index = max(row) - x
        scaled = multiply_by_quantized_multiplier_wrapped(diffs, mult, shift) + 32767
        np.clip(scaled, -32768, 32767, out=scaled)
        self.exp16 = int16_lut_lookup(scaled, exp_lut)
        self.workspace = {"idx": ((self.rows, self.depth), np.dtype(np.intp)),
                          "e": ((self.rows, self.depth), np.dtype(np.int64)),
                          "mx": ((self.rows, 1), np.dtype(np.int64))}

    def _run_int16(self) -> None:
        """TFLM's SoftmaxInt16, rows at a time for the exp table and per row for the reciprocal."""
        idx, e, mx = self.ws["idx"], self.ws["e"], self.ws["mx"]
        np.copyto(idx, self.x, casting="unsafe")
        np.maximum.reduce(idx, axis=1, keepdims=True, out=mx)
        np.subtract(mx, idx, out=idx)
        self.exp16.take(idx, out=e)
        np.add.reduce(e, axis=1, keepdims=True, out=mx)
        for r in range(self.rows):
            total = int(mx[r, 0])
            headroom_plus_one = 32 - (total & 0xFFFFFFFF).bit_length()
            shifted = ((total << (headroom_plus_one - 1)) + (1 << 13)) >> 14
            sym = min(max(shifted - ((1 << 15) + (1 << 16)), -32768), 32767)
            recip = int16_lut_lookup_scalar(sym, self.recip_lut)
            right = 31 - headroom_plus_one
            row = e[r]
            row *= recip
            row += 1 << (right - 1)
            row >>= right
        CLIP(e, 0, 32767, out=e)
        np.copyto(self.y, e, casting="unsafe")

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Row views and workspace."""
        self.x = inputs[0].reshape(self.rows, self.depth)
        self.y = outputs[0].reshape(self.rows, self.depth)
        self.ws = ws
        if self.quantized and not self.int16:
            self.neg, self.mask = ws["neg"], ws["mask"]
            if (self.out_bits == 8 and fast.available() and self.x.flags.c_contiguous
                    and self.y.flags.c_contiguous):
                from functools import partial

                from edge_runtime.backends.micro.fast.softmax import softmax

                args = (self.x, self.exp_table, self.acc_table, np.array(self.valid_list, np.uint8), self.y)
                self.run = partial(fast.jit_prepare(softmax, *args), *args)  # type: ignore[method-assign]
                self.path = "numba"  # (the compiled path: edge_runtime.backends.micro.fast.softmax)

    def _run_small(self) -> None:
        """The integer algorithm of ``run`` on Python ints, row by row."""
        exp_t, acc_t, valid = self.exp_list, self.acc_list, self.valid_list
        lo, hi = self.out_min, self.out_max
        # every row is read before any is written: in place, a wider (int16) output overlaps later input rows
        for vals, y_row in zip(self.x.tolist(), self.y):
            top = max(vals)
            idx = [v - top + 255 for v in vals]
            total = sum(acc_t[i] for i in idx)
            total = ((total + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)
            scale, bits_over_unit = get_reciprocal_scalar(total, ACCUMULATION_INTEGER_BITS)
            exponent = bits_over_unit + 31 - self.out_bits
            half = (1 << (exponent - 1)) if exponent > 0 else 0
            out = []
            for i in idx:
                if not valid[i]:
                    out.append(lo)
                    continue
                v = (exp_t[i] * scale + (1 << 30)) >> 31
                if exponent > 0:
                    v = (v + half - (1 if v < 0 else 0)) >> exponent
                v += lo
                out.append(lo if v < lo else hi if v > hi else v)
            y_row[:] = out

    def _run_float(self) -> None:
        """TFLM's float softmax in its float32 arithmetic: per row ``e = expf((x - max) * beta)`` (glibc's
        ``expf``, :mod:`edge_runtime.backends.micro.libm_expf`), the row's sum added left to right in float32,
        then ``e / sum``."""
        f, c, m = self.ws["f"], self.ws["c"], self.ws["m"]
        np.copyto(f, self.x)
        np.fmax.reduce(f, axis=1, keepdims=True, out=m)  # std::max from the lowest float: a NaN input is skipped
        np.subtract(f, m, out=f)
        np.multiply(f, self.beta, out=f)
        self.expf(f, f)
        np.add.accumulate(f, axis=1, out=c)  # a running sum: the same left-to-right additions as TFLM's loop
        np.divide(f, c[:, -1:], out=f)
        np.copyto(self.y, f, casting="same_kind")

    def run(self) -> None:
        """Compute the softmax of every row."""
        if self.int16:
            self._run_int16()
            return
        if not self.quantized:
            self._run_float()
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
            exponent = bits_over_unit + 31 - self.out_bits
            row = e[r]
            row *= scale
            row += 1 << 30
            row >>= 31
            if exponent > 0:
                np.right_shift(row, 63, out=self.neg[r])
                row += self.neg[r]
                row += 1 << (exponent - 1)
                row >>= exponent
        e += self.out_min
        CLIP(e, self.out_min, self.out_max, out=e)
        np.copyto(self.y, e, casting="unsafe")
        self.invalid_fill.take(idx, out=self.mask, mode="clip")
        np.minimum(self.y, self.mask, out=self.y)
