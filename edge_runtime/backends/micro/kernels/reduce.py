"""MEAN over constant axes, float32 and int8 (TFLite's ``QuantizedMeanOrSum``:
sum, subtract zero point times count, one MultiplyByQuantizedMultiplier whose
multiplier absorbs 1/count, offset, clamp)."""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro import options as opt
from edge_runtime.backends.micro.fixedpoint import Requantizer, quantize_multiplier
from edge_runtime.backends.micro.kernels.base import (
    Inputs, Kernel, OpContext, Outputs, Scratch, Workspace, qparams, require_constant, require_type,
)


class Mean(Kernel):
    """MEAN."""

    max_version = 3

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        x = require_type(ctx, ctx.input(0), ("INT8", "FLOAT32"), "input")
        y = require_type(ctx, ctx.output(0), (x.type_name,), "output")
        axes = require_constant(ctx, ctx.input(1), "axis").array().astype(np.int64).reshape(-1)
        rank = len(x.shape)
        if np.any((axes < -rank) | (axes >= rank)):
            raise ctx.fail(f"axis {axes.tolist()} out of range for rank {rank}")
        self.axes = tuple(sorted({int(a) % rank for a in axes}))
        keep = opt.reducer(ctx.op)["keep_dims"]
        kshape = tuple(1 if d in self.axes else s for d, s in enumerate(x.shape))
        if int(np.prod(kshape)) != y.num_elements:
            raise ctx.fail(f"output shape {y.shape} does not match the reduction")
        self.kshape = kshape
        self.count = int(np.prod([x.shape[a] for a in self.axes])) if self.axes else 1
        self.quantized = x.type_name == "INT8"
        self.keep = keep
        dt = np.dtype(np.int64) if self.quantized else np.dtype(np.float64)
        self.workspace = {"acc": (kshape, dt), "tmp": (kshape, np.dtype(np.int64))}
        if self.quantized:
            sx, zx = qparams(x)
            sy, zy = qparams(y)
            mult, shift = quantize_multiplier(float(np.float32(sx)) / float(np.float32(sy)))
            n = self.count
            sh = min(n.bit_length() - 1, 32, 31 + shift)
            mult = int((mult << sh) // n) if sh >= 0 else int((mult >> -sh) // n)
            shift = shift - sh
            self.zx_n = np.int64(zx * n)
            self.requant = Requantizer(np.array([mult]), np.array([shift]), zy, -128, 127)

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Views."""
        self.x = inputs[0]
        self.y = outputs[0].reshape(self.kshape)
        self.acc, self.tmp = ws["acc"], ws["tmp"]

    def run(self) -> None:
        """Reduce."""
        np.add.reduce(self.x, axis=self.axes, keepdims=True, out=self.acc)
        if self.quantized:
            self.acc -= self.zx_n
            self.requant.apply(self.acc, self.tmp, self.y)
        else:
            self.acc /= self.count
            np.copyto(self.y, self.acc, casting="same_kind")
