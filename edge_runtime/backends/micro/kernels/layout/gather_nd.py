"""GATHER_ND: pick elements or slices of the input by int32 index tuples (constant or computed at run time)."""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.kernels.base import Inputs, Kernel, OpContext, Outputs, Scratch, Workspace
from edge_runtime.backends.micro.kernels.layout.common import (
    F32, I8, INDEX32, fail_at_run, io, prod, require_type, same_shape,
)

TYPES = (F32, I8)
MAX_INDEX_DEPTH = 5


class GatherNd(Kernel):
    """GATHER_ND: output = indices.shape[:-1] + params.shape[indices.shape[-1]:]."""

    max_version = 5

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        p, y = io(ctx, TYPES)
        ind = require_type(ctx, ctx.input(1), INDEX32, "indices")
        ps, ish = tuple(p.shape), tuple(ind.shape)
        if not ps or not ish:
            raise ctx.fail("params and indices must have at least one dimension")
        nd = ish[-1]
        if nd > len(ps) or nd > MAX_INDEX_DEPTH:
            raise ctx.fail(f"index depth {nd} exceeds the params rank {len(ps)} or {MAX_INDEX_DEPTH}")
        same_shape(ctx, y.shape, ish[:-1] + ps[nd:])
        self.nd = nd
        self.n = prod(ish[:-1])
        self.rows, self.inner = prod(ps[:nd]), prod(ps[nd:])
        strides = np.ones(nd, np.int64)
        for i in range(nd - 2, -1, -1):
            strides[i] = strides[i + 1] * ps[i + 1]
        self.strides = strides
        if ind.data is not None and self.n:
            flat = ind.array().astype(np.int64).reshape(self.n, nd) @ strides
            if flat.min() < 0 or flat.max() >= self.rows:
                raise ctx.fail(f"a constant index points outside the {self.rows} slices of the params")
        self.workspace = {"idx": ((self.n, nd), np.dtype(np.int64)), "flat": ((self.n,), np.dtype(np.int64))}

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Views as (rows, inner) and (n, depth)."""
        self.p = inputs[0].reshape(self.rows, self.inner)
        self.ind = inputs[1].reshape(self.n, self.nd)
        self.y = outputs[0].reshape(self.n, self.inner)
        self.idx, self.flat = ws["idx"], ws["flat"]

    def run(self) -> None:
        """Flat row numbers from the index tuples, then one ``take``. As in TFLM, only the flat position
        is bounds-checked (a tuple such as (0, 5) of a 3x4 input reads row 1, element 1)."""
        if self.n == 0:
            return
        np.copyto(self.idx, self.ind)
        np.matmul(self.idx, self.strides, out=self.flat)
        if self.flat.min() < 0 or self.flat.max() >= self.rows:
            raise fail_at_run(self, f"an index points outside the {self.rows} slices of the params")
        np.take(self.p, self.flat, axis=0, out=self.y, mode="clip")
