"""CUMSUM: cumulative sum along an axis (exclusive / reverse options); float32 and int8 as TFLM computes it."""
from __future__ import annotations

from typing import Optional

import numpy as np

from edge_runtime.backends.micro.fixedpoint import quantize_multiplier, rounding_divide_by_pot, srdhm, wrap32
from edge_runtime.backends.micro.kernels.base import (
    Inputs, Kernel, OpContext, Outputs, Scratch, Workspace, qparams, scales32,
)
from edge_runtime.backends.micro.kernels.layout.common import (
    F32, I8, INDEX32, fail_at_run, io, maybe_const_ints, option, same_shape,
)

#: TFLM shifts int8 values left by this before rescaling them.
LEFT_SHIFT = 20


def _flip(a: np.ndarray, axis: int) -> np.ndarray:
    idx = [slice(None)] * a.ndim
    idx[axis] = slice(None, None, -1)
    return a[tuple(idx)]


def _part(a: np.ndarray, axis: int, s: slice) -> np.ndarray:
    idx = [slice(None)] * a.ndim
    idx[axis] = s
    return a[tuple(idx)]


class CumSum(Kernel):
    """CUMSUM (CumsumOptions: exclusive, reverse) with an int32 axis (constant or computed)."""

    max_version = 1

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        x, y = io(ctx, (F32, I8))
        same_shape(ctx, y.shape, x.shape)
        a = ctx.input(1)
        axis = maybe_const_ints(ctx, a, "axis", INDEX32)
        if a.num_elements != 1:
            raise ctx.fail("the axis tensor must hold one value")
        if not x.shape:
            raise ctx.fail("the input must have at least one dimension")
        self.rank = len(x.shape)
        self.axis: Optional[int] = None
        if axis is not None:
            ax = int(axis[0])
            if not -self.rank <= ax < self.rank:
                raise ctx.fail(f"axis {ax} is out of range for rank {self.rank}")
            self.axis = ax % self.rank
        self.exclusive = bool(option(ctx.op, 0, "?", False))
        self.reverse = bool(option(ctx.op, 1, "?", False))
        self.quantized = x.type_name == I8
        if self.quantized:
            s_in, zp_in = float(scales32(x)[0]), qparams(x)[1]
            s_out, zp_out = float(scales32(y)[0]), qparams(y)[1]
            twice = 2.0 * s_in
            real_out = twice / ((1 << LEFT_SHIFT) * s_out)
            if not 0.0 < real_out < 1.0:
                raise ctx.fail("the output scale is too small for TFLM's int8 CUMSUM rescaling")
            self.in_mult, in_shift = quantize_multiplier(s_in / twice)
            self.out_mult, out_shift = quantize_multiplier(real_out)
            self.in_rshift, self.out_rshift = -in_shift, -out_shift
            self.in_offset, self.out_zp = -zp_in, zp_out
            self.acc0 = self._scale_scalar(self.in_offset)
            shape = tuple(x.shape)
            self.workspace = {"a": (shape, np.dtype(np.int64)), "t": (shape, np.dtype(np.int64))}

    def _scale_scalar(self, v: int) -> int:
        a = np.array([v << LEFT_SHIFT], np.int64)
        srdhm(a, self.in_mult, out=a)
        rounding_divide_by_pot(a, self.in_rshift, out=a)
        return int(a[0])

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Per-axis views of the accumulation's source and destination (every axis when it is computed)."""
        self.x, self.axis_in, self.y = inputs[0], inputs[1], outputs[0]
        if self.quantized:
            self.a, self.t = ws["a"], ws["t"]
            src, dst = self.a, self.t
        else:
            src, dst = self.x, self.y
        self.plans = []
        for ax in range(self.rank):
            s, d = (_flip(src, ax), _flip(dst, ax)) if self.reverse else (src, dst)
            if self.exclusive:
                plan = (_part(s, ax, slice(None, -1)), _part(d, ax, slice(1, None)), _part(d, ax, slice(0, 1)))
            else:
                plan = (s, d, None)
            self.plans.append(plan)

    def run(self) -> None:
        """Accumulate along the axis (int8: rescale, accumulate in wrapping int32, rescale, clamp)."""
        ax = self.axis
        if ax is None:
            v = int(self.axis_in.reshape(-1)[0])
            if not -self.rank <= v < self.rank:
                raise fail_at_run(self, f"axis {v} is out of range for rank {self.rank}")
            ax = v % self.rank
        src, dst, first = self.plans[ax]
        if not self.quantized:
            if first is not None:
                first.fill(0)
            np.cumsum(src, axis=ax, out=dst)
            return
        a, t = self.a, self.t
        np.copyto(a, self.x)
        a += self.in_offset
        a <<= LEFT_SHIFT
        srdhm(a, self.in_mult, out=a)
        rounding_divide_by_pot(a, self.in_rshift, out=a, tmp=t)
        if first is not None:
            first.fill(0)
        np.cumsum(src, axis=ax, out=dst)
        t += self.acc0
        wrap32(t)
        srdhm(t, self.out_mult, out=t)
        rounding_divide_by_pot(t, self.out_rshift, out=t, tmp=a)
        t += self.out_zp
        np.clip(t, -128, 127, out=t)
        np.copyto(self.y, t, casting="unsafe")
