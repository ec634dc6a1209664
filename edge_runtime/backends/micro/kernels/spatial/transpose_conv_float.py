"""TRANSPOSE_CONV on float32 inputs and float32 weights, bit-exact with tflite-micro.

tflite-micro's float kernel (``reference_ops::TransposeConv``) zeroes the output and scatters every
``input * filter`` product into it, looping over input row, input column, input channel, filter row, filter
column, output channel, dropping positions outside the output; then adds the bias (when there is one) and
clamps. Each output value is thus ``0.0f`` plus its terms in the order (input row, input column, input
channel), i.e. filter row and filter column *descending* (a later input row reaches the same output through
an earlier filter row), then input channel; one float32 rounding per product and per sum (no fused
multiply-add in its x86-64 build). :class:`~.transpose_conv.TransposeConv` sums the taps of a float model in
float64 (one matrix product per chunk), which rounds once instead and differs in the last bits.

Here, numpy: a float32 canvas covering every tap's landing place (positions outside the output window land on
its border), and for each filter row and column (descending) a group of input channels (at most
:data:`GROUP`, the products within the workspace limit): the canvas values those products land on, copied
into the first slot, one product of the channels' input planes with their weight rows, one sequential
``np.add.reduce`` along the group's outer axis writing the sums back; one term at a time (product, then
addition into the strided canvas view) for a single input channel, a single output value or a small limit;
then ``window + bias`` and the clamp. Compiled (``edge-runtime[fast]``):
:func:`~edge_runtime.backends.micro.fast.transpose_conv_float.transpose_conv_float`, tflite-micro's scatter loop.
"""
from __future__ import annotations

from functools import partial
from typing import Optional

import numpy as np
from numpy.lib.stride_tricks import as_strided

from edge_runtime.backends.micro import fast
from edge_runtime.backends.micro.fixedpoint import CLIP
from edge_runtime.backends.micro.kernels.base import Inputs, Kernel, OpContext, Outputs, Scratch, Workspace
from edge_runtime.backends.micro.kernels.spatial.transpose_conv import TransposeConv

F32 = np.dtype(np.float32)
#: at most this many input channels of one tap multiplied in one call and summed in one reduction
GROUP = 16


class TransposeConvFloat(TransposeConv):
    """float32 x float32 TRANSPOSE_CONV (constant filter and bias) in tflite-micro's summation order."""

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)  # (shapes, strides, padding, activation; refuses other types)
        if self.kind != "FLOAT32":
            raise ctx.fail("the float32 TRANSPOSE_CONV kernel got a non-float input")
        w = ctx.input(1)
        self.wt = np.ascontiguousarray(np.asarray(w.array(), F32).transpose(1, 2, 3, 0))  # (kh, kw, cin, cout)
        self.wt.flags.writeable = False
        self.wmat = self.wt  # (the cached weights: TransposeConv.cache_bytes counts them)
        self.bias32: Optional[np.ndarray] = None if self.fbias is None else self.fbias.astype(F32)
        cells = self.n * self.h * self.w * self.cout
        # (a group of input channels per tap: its products fit in the workspace limit; one value per tap: numpy
        # would sum a group along its inner axis, pairwise, so one term at a time straight into the canvas)
        canvas = self.n * self.fh * self.fw * self.cout
        most = max(2 * cells, ctx.workspace_limit // F32.itemsize - canvas) // cells - 1
        self.group_max = 1 if cells == 1 else max(1, min(self.cin, GROUP, most))
        self.workspace = {"canvas": ((self.n, self.fh, self.fw, self.cout), F32),
                          "prod": ((self.group_max + 1 if self.group_max > 1 else 1, cells), F32)}
        self.path = "numpy"

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """The compiled call, or the (input channel, weight row, canvas view) of every term."""
        x, y = inputs[2], outputs[0]
        self.y = y
        if fast.available() and x.flags.c_contiguous and y.flags.c_contiguous:
            from edge_runtime.backends.micro.fast.transpose_conv_float import transpose_conv_float

            bias = self.bias32 if self.bias32 is not None else np.zeros(self.cout, F32)
            g = np.array([self.sh, self.sw, self.pt, self.pl, int(self.bias32 is not None)], np.int64)
            acc = ws["canvas"].reshape(-1)[:self.ho * self.wo * self.cout].reshape(self.ho, self.wo, self.cout)
            args = (x, self.wt, bias, g, np.float32(self.lo), np.float32(self.hi), acc, y)
            self.run = partial(fast.jit_prepare(transpose_conv_float, *args), *args)  # type: ignore[method-assign]
            self.path = "numba"
            return
        canvas = self.canvas = ws["canvas"]
        prod, g = ws["prod"], self.group_max
        shape = (self.n, self.h, self.w, self.cout)
        self.terms = []
        self.groups = []
        for fy in reversed(range(self.kh)):  # (input rows ascending reach an output through filter rows descending)
            for fx in reversed(range(self.kw)):
                dst = canvas[:, fy:fy + (self.h - 1) * self.sh + 1:self.sh, fx:fx + (self.w - 1) * self.sw + 1:self.sw]
                if g == 1:
                    self.terms += [(x[..., c:c + 1], self.wt[fy, fx, c], dst, prod[0].reshape(shape))
                                   for c in range(self.cin)]
                    continue
                for c0 in range(0, self.cin, g):
                    c1 = min(self.cin, c0 + g)
                    xv = as_strided(x[..., c0:], shape=(c1 - c0,) + x.shape[:3] + (1,),
                                    strides=(x.strides[3],) + x.strides[:3] + (0,), writeable=False)
                    slots = prod[1:c1 - c0 + 1].reshape((c1 - c0,) + shape)
                    wv = self.wt[fy, fx, c0:c1, None, None, None, :]
                    block = prod[:c1 - c0 + 1].reshape((-1,) + shape)
                    self.groups.append((dst, prod[0].reshape(shape), xv, wv, slots, block))
        self.window = canvas[:, self.pt:self.pt + self.ho, self.pl:self.pl + self.wo, :]

    def run(self) -> None:
        """``canvas = 0``; per tap (descending) and input channel ``canvas[tap] += x * w``: one term at a time,
        or a group of channels at once (the tap's canvas values, then the group's products, summed by one
        sequential reduction along the group's outer axis and written back); then ``+ bias`` and the clamp."""
        mul, add, copyto, reduce = np.multiply, np.add, np.copyto, np.add.reduce
        self.canvas.fill(0.0)
        for xc, wrow, dst, prod in self.terms:
            mul(xc, wrow, out=prod)
            add(dst, prod, out=dst)
        for dst, acc, xv, wv, slots, block in self.groups:
            copyto(acc, dst)
            mul(xv, wv, out=slots)
            reduce(block, axis=0, out=dst)  # (block[0]: the canvas values; each sums its terms in order)
        y = self.y
        np.copyto(y, self.window)  # (into the contiguous output first: ufuncs on the strided window buffer)
        if self.bias32 is not None:
            add(y, self.bias32, out=y)
        CLIP(y, self.lo, self.hi, out=y)


class TransposeConvAny:
    """The TRANSPOSE_CONV kernel for an op: :class:`TransposeConvFloat` for a float32 input with a constant
    float32 filter (and bias), else :class:`~.transpose_conv.TransposeConv` (int8, 16x8, or a filter or bias
    read at every invoke)."""

    max_version = TransposeConv.max_version

    def __new__(cls, ctx: OpContext) -> Kernel:  # type: ignore[misc]
        x, w, b = ctx.input(2), ctx.input(1), ctx.input(3)
        if (len(ctx.op.inputs) in (3, 4) and x is not None and w is not None and x.type_name == "FLOAT32"
                and w.type_name == "FLOAT32" and w.is_constant and (b is None or b.is_constant)):
            return TransposeConvFloat(ctx)
        return TransposeConv(ctx)
