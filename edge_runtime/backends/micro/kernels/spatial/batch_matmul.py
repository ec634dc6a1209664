"""BATCH_MATMUL: float32, int8 and int16 (TFLM reference), adj_x/adj_y, broadcast batch dims.

float32: :class:`~edge_runtime.backends.micro.kernels.batch_matmul_float.Float32BatchMatMul` (TFLM's
summation order, bit-exact).

int8: ``sum((lhs - zl) * (rhs - zr))`` requantized with the 32-bit
MultiplyByQuantizedMultiplier (multiplier ``s_lhs * s_rhs / s_out``), plus the
output zero point, clamped to int8. int16 (all zero points 0): int64 accumulator
and the 64-bit MultiplyByQuantizedMultiplier. The products are computed by one
broadcasting ``np.matmul`` in float64 (exact for these integer sums) per chunk of lhs
rows; a constant rhs is widened once.
"""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.fixedpoint import quantize_multiplier
from edge_runtime.backends.micro.kernels.batch_matmul_float import Float32BatchMatMul
from edge_runtime.backends.micro.kernels.base import (
    Chunking, Inputs, Kernel, OpContext, Outputs, Scratch, Workspace, nbytes_of, qparams, require_type,
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
        if self.kind == "FLOAT32":
            self.float32 = Float32BatchMatMul(ash, bsh, self.adj_x, self.adj_y, out_shape, b.is_constant,
                                              ctx.workspace_limit)
            self.workspace = self.float32.workspace
            return
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
        # operands widened into float64 in matmul layout (transposed while copied); the lhs and
        # the output by chunks of rows sized to the workspace limit, the rhs whole (or, when it
        # is constant, once at bind time)
        self.rhs_constant = b.is_constant
        self.amshape = ash[:-2] + (m, ka)
        self.bmshape = bsh[:-2] + (kb, n)
        a_batch = int(np.prod(ash[:-2], dtype=np.int64))
        o_batch = int(np.prod(out_shape[:-2], dtype=np.int64))
        per_row = (a_batch * ka + 3 * o_batch * n) * 8
        fixed = 0 if self.rhs_constant else nbytes_of(self.bmshape, F64)
        self.chunk = Chunking.fit(m, fixed, lambda r: r * per_row, ctx.workspace_limit)
        rows = self.chunk.rows
        # flat buffers: each chunk views a contiguous prefix (matmul would copy strided operands)
        self.workspace["af"] = ((a_batch * rows * ka,), F64)
        if not self.rhs_constant:
            self.workspace["bf"] = (self.bmshape, F64)
        self.workspace["prod"] = ((o_batch * rows * n,), F64)
        self.workspace["acc"] = ((o_batch * rows * n,), I64)
        self.workspace["tmp"] = ((o_batch * rows * n,), I64)

    @property
    def cache_bytes(self) -> int:
        """Bytes of the widened constant rhs (when it is constant)."""
        if self.kind == "FLOAT32":
            return self.float32.cache_bytes
        return int(self.bf.nbytes) if self.rhs_constant else 0

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Views: per chunk of lhs rows, the lhs source (transposed view where adjoint), the
        output rows and workspace slices."""
        if self.kind == "FLOAT32":
            self.float32.bind(inputs[0], inputs[1], outputs[0], ws)
            self.run = self.float32.run  # type: ignore[method-assign]
            self.path = self.float32.path
            return
        a, b = inputs[0].reshape(self.ash), inputs[1].reshape(self.bsh)
        a = a.swapaxes(-1, -2) if self.adj_x else a
        self.b = b.swapaxes(-1, -2) if self.adj_y else b
        if self.rhs_constant:
            self.bf = np.empty(self.bmshape, F64)
            np.copyto(self.bf, self.b, casting="unsafe")
            self.bf -= self.zb
        else:
            self.bf = ws["bf"]
        y = outputs[0]
        self.steps = []
        ka, n = self.amshape[-1], self.bmshape[-1]
        a_batch, o_batch = self.amshape[:-2], self.out_shape[:-2]

        def view(name: str, shape: tuple[int, ...]) -> np.ndarray:
            return ws[name][:int(np.prod(shape, dtype=np.int64))].reshape(shape)

        for r0 in self.chunk.starts:
            r1 = min(self.amshape[-2], r0 + self.chunk.rows)
            k = r1 - r0
            out = o_batch + (k, n)
            acc = view("acc", out) if "acc" in ws else None
            tmp = view("tmp", out) if "tmp" in ws else None
            self.steps.append((a[..., r0:r1, :], view("af", a_batch + (k, ka)), view("prod", out), acc, tmp,
                               y[..., r0:r1, :]))
        self._bind_fast(a, y, ws)

    def _bind_fast(self, a: np.ndarray, y: np.ndarray, ws: Workspace) -> None:
        """The compiled path (int8): one call per op over the numpy path's (adjoint) views."""
        from edge_runtime.backends.micro import fast

        if not (self.kind == "INT8" and fast.available()):
            return
        from functools import partial

        from edge_runtime.backends.micro.fast.batch_matmul import batch_matmul
        from edge_runtime.backends.micro.fast.requant import pack

        def rank5(t: np.ndarray) -> np.ndarray:
            return t.reshape((1,) * (5 - t.ndim) + t.shape)

        n = self.bmshape[-1]
        args = (rank5(a), rank5(self.b), pack(self.requant, (int(self.za), int(self.zb))),
                ws["acc"].reshape(-1).view(np.int32)[:n], rank5(y))
        self.run = partial(fast.jit_prepare(batch_matmul, *args), *args)  # type: ignore[method-assign]
        self.path = "numba"

    def run(self) -> None:
        """Multiply, chunk by chunk of lhs rows."""
        if not self.rhs_constant:
            np.copyto(self.bf, self.b, casting="unsafe")
            if self.zb:
                self.bf -= self.zb
        for a, af, prod, acc, tmp, y in self.steps:
            np.copyto(af, a, casting="unsafe")
            if self.za:
                af -= self.za
            np.matmul(af, self.bf, out=prod)
            np.copyto(acc, prod, casting="unsafe")
            self.requant.apply(acc, tmp, y)
