"""FULLY_CONNECTED on float32 inputs and float32 weights, bit-exact with tflite-micro.

tflite-micro's float kernel (``reference_ops::FullyConnected``) sums each output in file order, one float32
multiplication and one float32 addition per term (``total += x[d] * w[o][d]`` from ``0.0f``, no fused
multiply-add in its x86-64 build), then adds the bias in float32 and clamps to the fused activation's range.
A BLAS product sums in another order (blocks, pairwise, FMA) and differs in the last bits; such a difference
then decides a rounding step wherever the result is quantized afterwards: the float STFT island of an int8
model (an RFFT written as products by cosine and sine matrices) differed from tflite-micro on BirdNET v2.2.

Here the same operations run in the same order, in one of two vectorized forms (each float32 operation rounds
each element once, as C does without FMA contraction):

- many outputs (rows x units > :data:`FEW_OUTPUTS`): for each depth position ``d`` one product of the input
  column with the weight row and one addition into the accumulator, over all rows and units at once;
- few outputs (a wake-word head: one row, a few units, thousands of inputs), where ``k`` numpy calls per
  position would cost more than the arithmetic: all products of a block of units at once, then
  ``np.add.accumulate`` along the depth axis (a sequential running sum, ``0 + p0``, ``+ p1``, ...), whose
  last row is the sum.

The accumulators are private and the input is read whole before the first output value is written, so the op
may write its output over its input.

Only dense float32 weights come here (:class:`FullyConnectedDense`); int8 models, hybrid int8 weights and
the compiled paths stay with :class:`~edge_runtime.backends.micro.kernels.fully_connected.FullyConnected`.
"""
from __future__ import annotations

from functools import partial

import numpy as np

from edge_runtime.backends.micro import fast, options as opt
from edge_runtime.backends.micro.fixedpoint import CLIP
from edge_runtime.backends.micro.kernels.base import (
    Inputs,
    Kernel,
    OpContext,
    Outputs,
    Scratch,
    Workspace,
    float_activation_range,
    require_constant,
    require_type,
)
from edge_runtime.backends.micro.kernels.fully_connected import FullyConnected

F32 = np.dtype(np.float32)
#: at most this many output values (rows x units): the running-sum form
FEW_OUTPUTS = 128
#: float32 products held at once by the running-sum form (a block of units)
BLOCK = 1 << 16


class FullyConnectedFloat(Kernel):
    """float32 x float32 FULLY_CONNECTED in tflite-micro's summation order."""

    inplace_ok = True
    max_version = FullyConnected.max_version

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        o = opt.fully_connected(ctx.op)
        if o["weights_format"] != 0:
            raise ctx.fail("only the DEFAULT weights format is supported (not shuffled)")
        x = require_type(ctx, ctx.input(0), ("FLOAT32",), "input")
        w = require_constant(ctx, require_type(ctx, ctx.input(1), ("FLOAT32",), "weights"), "weights")
        y = require_type(ctx, ctx.output(0), ("FLOAT32",), "output")
        b = ctx.input(2)
        if len(w.shape) != 2:
            raise ctx.fail(f"weights must be 2-D, got {w.shape}")
        self.units, self.k = (int(d) for d in w.shape)
        if self.k == 0 or x.num_elements % self.k:
            raise ctx.fail(f"input of {x.num_elements} elements is not a multiple of the weight depth {self.k}")
        self.rows_total = x.num_elements // self.k
        self.rows = self.rows_total  # one pass over all rows (memory_traits reads rows / rows_total)
        if y.num_elements != self.rows_total * self.units:
            raise ctx.fail(f"output shape {y.shape} does not hold {self.rows_total}x{self.units} values")
        self.bias = np.zeros(self.units, F32)  # tflite-micro adds 0.0f when there is no bias
        if b is not None:
            require_constant(ctx, require_type(ctx, b, ("FLOAT32",), "bias"), "bias")
            if b.num_elements != self.units:
                raise ctx.fail(f"bias '{b.name}' has {b.num_elements} values for {self.units} output units")
            self.bias = np.asarray(b.array(), F32).reshape(-1).copy()
        self.act = float_activation_range(ctx, o["activation"])
        self.wt = np.ascontiguousarray(np.asarray(w.array(), F32).T)  # (k, units): row d = every unit's d-th weight
        shape = (self.rows_total, self.units)
        self.running = self.rows_total * self.units <= FEW_OUTPUTS
        self.block = max(1, min(self.units, BLOCK // max(1, self.rows_total * self.k)))
        prod = (self.rows_total, self.block, self.k) if self.running else shape
        #: the running-sum form's weights as the file stores them, (units, k): each unit's sum runs along
        #: a contiguous row (2.2x faster than along the first axis of a (k, rows, units) block)
        self.w_rows = np.ascontiguousarray(np.asarray(w.array(), F32)) if self.running else None
        self.workspace = {"acc": (shape, F32), "prod": (prod, F32), "xt": ((self.k, self.rows_total), F32)}

    @property
    def cache_bytes(self) -> int:
        """Bytes of the weights (transposed, and as stored for the running-sum form) and the bias kept."""
        rows = 0 if self.w_rows is None else self.w_rows.nbytes
        return int(self.wt.nbytes + rows + self.bias.nbytes)

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Views of the input rows, the output rows and the private accumulators."""
        self.x = inputs[0].reshape(self.rows_total, self.k)
        self.y = outputs[0].reshape(self.rows_total, self.units)
        self.acc, self.prod = ws["acc"], ws["prod"]
        self.xt = ws["xt"]  # the input transposed: column d of every row, contiguous
        if fast.available() and self.x.flags.c_contiguous and self.y.flags.c_contiguous:
            from edge_runtime.backends.micro.fast.fully_connected_float import fully_connected_float

            args = (self.x, self.wt, self.bias, np.float32(self.act[0]), np.float32(self.act[1]), self.acc, self.y)
            self.run = partial(fast.jit_prepare(fully_connected_float, *args), *args)  # type: ignore[method-assign]
            self.path = "numba"  # (the compiled path: edge_runtime.backends.micro.fast.fully_connected_float)

    def run(self) -> None:
        """``total = 0; total += x[d] * w[d]`` per depth position, then ``+ bias`` and the clamp, in float32."""
        acc, prod, wt, xt = self.acc, self.prod, self.wt, self.xt
        mul, add = np.multiply, np.add
        if self.running:
            for u0 in range(0, self.units, self.block):
                u1 = min(self.units, u0 + self.block)
                p = prod[:, :u1 - u0, :]
                mul(self.x[:, None, :], self.w_rows[None, u0:u1, :], out=p)  # (rows, units of the block, k)
                add.accumulate(p, axis=2, out=p)  # running float32 sums along the depth, in order
                acc[:, u0:u1] = p[:, :, -1]
        else:
            np.copyto(xt, self.x.T)
            acc.fill(0.0)
            for d in range(self.k):
                mul(xt[d][:, None], wt[d], out=prod)
                add(acc, prod, out=acc)
        add(acc, self.bias, out=acc)
        CLIP(acc, self.act[0], self.act[1], out=acc)  # (the clip ufunc: np.clip's wrapper fills a cache while it runs)
        np.copyto(self.y, acc)


class FullyConnectedDense:
    """The dense FULLY_CONNECTED kernel for an op: :class:`FullyConnectedFloat` for float32 input and weights,
    else :class:`~edge_runtime.backends.micro.kernels.fully_connected.FullyConnected`."""

    max_version = FullyConnected.max_version

    def __new__(cls, ctx: OpContext) -> Kernel:  # type: ignore[misc]
        x, w = ctx.input(0), ctx.input(1)
        if x is not None and w is not None and x.type_name == w.type_name == "FLOAT32" and w.data is not None:
            return FullyConnectedFloat(ctx)
        return FullyConnected(ctx)
