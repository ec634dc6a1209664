"""EMBEDDING_LOOKUP: rows of a table by int32 row numbers; int8 tables may be dequantized to float32."""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.kernels.base import (
    Inputs, Kernel, OpContext, Outputs, Scratch, Workspace, qparams, scales32,
)
from edge_runtime.backends.micro.kernels.layout.common import (
    F32, I8, INDEX32, fail_at_run, prod, require_type, same_shape,
)


class EmbeddingLookup(Kernel):
    """EMBEDDING_LOOKUP (inputs: lookup, value): float32 -> float32, int8 -> int8, int8 -> float32 (hybrid)."""

    max_version = 1

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        lk = require_type(ctx, ctx.input(0), INDEX32, "lookup")
        v = require_type(ctx, ctx.input(1), (F32, I8), "value")
        y = require_type(ctx, ctx.output(0), (F32,) if v.type_name == F32 else (F32, I8), "output")
        if len(lk.shape) != 1 or len(v.shape) < 2:
            raise ctx.fail("lookup must be a vector and value have at least two dimensions")
        same_shape(ctx, y.shape, (lk.shape[0],) + tuple(v.shape[1:]))
        self.hybrid = v.type_name == I8 and y.type_name == F32
        if self.hybrid:
            if qparams(v)[1] != 0:
                raise ctx.fail("a hybrid (int8 -> float32) table must have zero point 0")
            self.scale = scales32(v)[0]
        self.rows, self.cols, self.n = int(v.shape[0]), prod(v.shape[1:]), int(lk.shape[0])
        if lk.data is not None and self.n and self.rows:
            rows = lk.array()
            if rows.min() < 0 or rows.max() >= self.rows:
                raise ctx.fail(f"a constant row number is outside [0, {self.rows})")
        if self.hybrid:
            self.workspace = {"rows": ((self.n, self.cols), np.dtype(np.int8))}

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """2-D views of the table and the output."""
        self.lk = inputs[0]
        self.v = inputs[1].reshape(self.rows, self.cols)
        self.y = outputs[0].reshape(self.n, self.cols)
        self.stage = ws["rows"] if self.hybrid else self.y

    def run(self) -> None:
        """Check the row numbers, gather the rows (and dequantize them)."""
        if self.rows == 0:
            return
        if self.n and (self.lk.min() < 0 or self.lk.max() >= self.rows):
            raise fail_at_run(self, f"a row number is outside [0, {self.rows})")
        np.take(self.v, self.lk, axis=0, out=self.stage, mode="clip")
        if self.hybrid:  # widen, then scale in float32 (a casting multiply would buffer)
            np.copyto(self.y, self.stage)
            np.multiply(self.y, self.scale, out=self.y)
