"""CONV_2D and DEPTHWISE_CONV_2D, 16x8: int16 input and output, int8 per-channel weights, int32/int64 bias.

The window of every output position is gathered once per invoke from a copy of the input
with one trailing zero (padding reads it) into an int64 patch matrix (chunked by output
rows to the workspace limit); one integer matrix product per chunk gives the sums
(depthwise: an elementwise product and a sum over the taps per channel), and
:class:`OutputStage16` scales them as TFLM does.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from edge_runtime.backends.micro import options as opt
from edge_runtime.backends.micro.kernels.base import (
    Chunking, Inputs, Kernel, OpContext, Outputs, Scratch, Workspace, compute_padding, require_constant,
    require_type,
)
from edge_runtime.backends.micro.kernels.int16.common import I64, OutputStage16, window_index
from edge_runtime.backends.micro.weight_cache import WeightCache, cache_of, shared


class Conv2D16x8(Kernel):
    """16x8 convolution (regular or depthwise)."""

    sixteen_by_eight = True  #: output in its own buffer (memory_traits)
    max_version = 8
    weight_cache: "WeightCache | None" = None  #: the interpreter's, set by :meth:`attach`

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        self.depthwise = ctx.op.name == "DEPTHWISE_CONV_2D"
        o = opt.depthwise(ctx.op) if self.depthwise else opt.conv2d(ctx.op)
        x = require_type(ctx, ctx.input(0), ("INT16",), "input")
        w = require_constant(ctx, require_type(ctx, ctx.input(1), ("INT8",), "filter"), "filter")
        b = ctx.input(2)
        y = require_type(ctx, ctx.output(0), ("INT16",), "output")
        if len(x.shape) != 4 or len(w.shape) != 4 or len(y.shape) != 4:
            raise ctx.fail("input, filter and output must be 4-D (NHWC)")
        n, h, wd, cin = x.shape
        yn, oh, ow, cout = y.shape
        if yn != n:
            raise ctx.fail(f"input batch {n} and output batch {yn} differ")
        if self.depthwise:
            _, kh, kw, wc = w.shape
            mult = o["depth_multiplier"]
            if wc != cout or (mult and cin * mult != cout) or cout % cin:
                raise ctx.fail(f"depthwise filter shape {w.shape} does not fit input {x.shape} / output {y.shape}")
            self.mult = cout // cin
        else:
            wc, kh, kw, wcin = w.shape
            if wc != cout or wcin != cin:
                raise ctx.fail(f"filter shape {w.shape} does not fit input {x.shape} / output {y.shape} "
                               "(grouped 16x8 convolutions are not supported)")
        pt, _ = compute_padding(ctx, o["padding"], h, kh, o["stride_h"], o["dilation_h"], oh)
        pl, _ = compute_padding(ctx, o["padding"], wd, kw, o["stride_w"], o["dilation_w"], ow)
        self.stage = OutputStage16(ctx, x, w, b, y, cout, o["activation"])
        self.index = window_index(n, h, wd, cin, oh, ow, kh, kw, o["stride_h"], o["stride_w"], o["dilation_h"],
                                  o["dilation_w"], pt, pl).reshape(n * oh * ow, kh * kw, cin)
        self.rows_total = n * oh * ow
        self.taps = kh * kw * (1 if self.depthwise else cin)
        self.cin, self.cout, self.x_elems = cin, cout, n * h * wd * cin
        self.kh, self.kw = kh, kw
        if self.depthwise:  # (weights (kh*kw, cout): tap t of output channel c reads input channel c // mult)
            self.index = np.repeat(self.index, self.mult, axis=2)  # (rows, taps, cout)
        else:  # (weights (K, cout))
            self.index = self.index.reshape(self.rows_total, self.taps)
        per_row = 8 * (self.index[0].size + 2 * cout)
        ch = Chunking.fit(self.rows_total, 8 * (self.x_elems + 1), lambda r: r * per_row, ctx.workspace_limit)
        self.rows = ch.rows
        cols = self.index.shape[1:]
        self.workspace = {"xext": ((self.x_elems + 1,), I64), "patch": ((self.rows, *cols), I64),
                          "acc": ((self.rows, cout), I64), "tmp": ((self.rows, cout), I64)}

    def attach(self, interp: Any) -> None:
        """Take the interpreter's shared weight cache: ops reading one filter buffer share its int64 copy."""
        self.weight_cache = cache_of(interp)

    def _widened(self, w: np.ndarray) -> np.ndarray:
        """The int8 filter as the int64 matrix :meth:`run` multiplies by."""
        wt = w.astype(np.int64)
        if self.depthwise:
            return wt.reshape(self.kh * self.kw, self.cout)
        return np.ascontiguousarray(wt.reshape(self.cout, self.kh * self.kw * self.cin).T)

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Views of the input copy, the chunk buffers and the output rows; the filter widened to int64 here (once
        per filter buffer, shared through the interpreter's :class:`WeightCache`), not when the arena planner
        builds the kernel for its memory traits."""
        self.wmat = shared(self.weight_cache, inputs[1], ("conv16", self.depthwise), self._widened)
        self.x = inputs[0].reshape(-1)
        self.xext = ws["xext"]
        y = outputs[0].reshape(self.rows_total, self.cout)
        self.steps = []
        for r0 in range(0, self.rows_total, self.rows):
            r = min(self.rows, self.rows_total - r0)
            self.steps.append((self.index[r0:r0 + r], ws["patch"][:r], ws["acc"][:r], ws["tmp"][:r], y[r0:r0 + r]))

    def run(self) -> None:
        """Gather windows, multiply, scale."""
        xext = self.xext
        np.copyto(xext[:-1], self.x, casting="unsafe")
        xext[-1] = 0
        for idx, patch, acc, tmp, out in self.steps:
            xext.take(idx, out=patch)
            if self.depthwise:
                np.multiply(patch, self.wmat, out=patch)
                patch.sum(axis=1, out=acc)
            else:
                np.matmul(patch, self.wmat, out=acc)
            self.stage.apply(acc, tmp, out)
