"""BATCH_MATMUL: float32, int8 and int16 (TFLM reference), adj_x/adj_y, broadcast batch dims.

int8: ``sum((lhs - zl) * (rhs - zr))`` requantized with the 32-bit
MultiplyByQuantizedMultiplier (multiplier ``s_lhs * s_rhs / s_out``), plus the
output zero point, clamped to int8. int16 (all zero points 0): int64 accumulator
and the 64-bit MultiplyByQuantizedMultiplier. The products are computed by one
broadcasting ``np.matmul`` in float64 (exact for these integer sums).
"""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.fixedpoint import quantize_multiplier
from edge_runtime.backends.micro.kernels.base import (
    Inputs, Kernel, OpContext, Outputs, Scratch, Workspace, qparams, require_type,
)
from edge_runtime.backends.micro.kernels.spatial.common import F64, I64, batch_matmul_options, requantizer


class BatchMatMul(Kernel):
    """BATCH_MATMUL (ranks 2 to 5)."""

    max_version = 4

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        if len(ctx.op.inputs) != 2:
            raise ctx.fail("BATCH_MATMUL takes 2 inputs")
        a = require_type(ctx, ctx.input(0), ("INT8", "INT16", "FLOAT32"), "lhs")
        b = require_type(ctx, ctx.input(1), (a.type_name,), "rhs")
        y = require_type(ctx, ctx.output(0), (a.type_name,), "output")
        if not (2 <= len(a.shape) <= 5 and 2 <= len(b.shape) <= 5):
            raise ctx.fail("lhs and rhs must have rank 2 to 5")
        o = batch_matmul_options(ctx.op)
        self.adj_x, self.adj_y = o["adj_x"], o["adj_y"]
        rank = max(len(a.shape), len(b.shape))
        ash = (1,) * (rank - len(a.shape)) + tuple(a.shape)
        bsh = (1,) * (rank - len(b.shape)) + tuple(b.shape)
        try:
            batch = np.broadcast_shapes(ash[:-2], bsh[:-2])
        except ValueError:
            raise ctx.fail(f"batch dimensions of {a.shape} and {b.shape} do not broadcast") from None
        m, ka = (ash[-1], ash[-2]) if self.adj_x else (ash[-2], ash[-1])
        kb, n = (bsh[-1], bsh[-2]) if self.adj_y else (bsh[-2], bsh[-1])
        if ka != kb:
            raise ctx.fail(f"inner dimensions differ: lhs {a.shape}, rhs {b.shape} (adj_x={self.adj_x}, "
                           f"adj_y={self.adj_y})")
        out_shape = tuple(batch) + (m, n)
        if tuple(y.shape) != out_shape:
            raise ctx.fail(f"output shape {y.shape} is not {out_shape}")
        self.ash, self.bsh, self.out_shape = ash, bsh, out_shape
        self.kind = a.type_name
        self.za = self.zb = 0
        if self.kind != "FLOAT32":
            sa, self.za = qparams(a)
            sb, self.zb = qparams(b)
            sy, zy = qparams(y)
            if self.kind == "INT16" and (self.za or self.zb or zy):
                raise ctx.fail("int16 BATCH_MATMUL needs zero points 0")
            real = float(np.float32(sa)) * float(np.float32(sb)) / float(np.float32(sy))
            mult, shift = quantize_multiplier(real)
            info = np.iinfo(np.int8 if self.kind == "INT8" else np.int16)
            self.requant = requantizer(self.kind == "INT16", np.array([mult]), np.array([shift]), zy,
                                       int(info.min), int(info.max))
            self.workspace["acc"] = (out_shape, I64)
            self.workspace["tmp"] = (out_shape, I64)
        # operands widened into the workspace in matmul layout (transposed while copied)
        self.amshape = ash[:-2] + (m, ka)
        self.bmshape = bsh[:-2] + (kb, n)
        self.workspace["af"] = (self.amshape, F64)
        self.workspace["bf"] = (self.bmshape, F64)
        self.workspace["prod"] = (out_shape, F64)

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Views (the inputs as matmul operands, transposed views where adjoint)."""
        a, b = inputs[0].reshape(self.ash), inputs[1].reshape(self.bsh)
        self.a = a.swapaxes(-1, -2) if self.adj_x else a
        self.b = b.swapaxes(-1, -2) if self.adj_y else b
        self.y = outputs[0]
        self.af, self.bf, self.prod = ws["af"], ws["bf"], ws["prod"]
        if self.kind != "FLOAT32":
            self.acc, self.tmp = ws["acc"], ws["tmp"]

    def run(self) -> None:
        """Multiply."""
        np.copyto(self.af, self.a, casting="unsafe")
        np.copyto(self.bf, self.b, casting="unsafe")
        if self.za:
            self.af -= self.za
        if self.zb:
            self.bf -= self.zb
        np.matmul(self.af, self.bf, out=self.prod)
        if self.kind == "FLOAT32":
            np.copyto(self.y, self.prod, casting="same_kind")
            return
        np.copyto(self.acc, self.prod, casting="unsafe")
        self.requant.apply(self.acc, self.tmp, self.y)
