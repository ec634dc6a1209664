"""FULLY_CONNECTED, 16x8: int16 input and output, int8 weights (per tensor or per channel), int32/int64 bias."""
from __future__ import annotations

from typing import Any

import numpy as np

from edge_runtime.backends.micro import options as opt
from edge_runtime.backends.micro.kernels.base import (
    Chunking, Inputs, Kernel, OpContext, Outputs, Scratch, Workspace, require_constant, require_type,
)
from edge_runtime.backends.micro.kernels.int16.common import I64, OutputStage16
from edge_runtime.backends.micro.weight_cache import WeightCache, cache_of, shared


def _int64_transposed(w: np.ndarray) -> np.ndarray:
    """int8 weights (units, k) as a contiguous int64 (k, units) matrix."""
    return np.ascontiguousarray(w.astype(np.int64).T)


class FullyConnected16x8(Kernel):
    """y = x @ W.T + b in int64, scaled to int16."""

    sixteen_by_eight = True  #: output in its own buffer (memory_traits)
    max_version = 12
    weight_cache: "WeightCache | None" = None  #: the interpreter's, set by :meth:`attach`

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        o = opt.fully_connected(ctx.op)
        if o["weights_format"] != 0:
            raise ctx.fail("only the DEFAULT weights format is supported (not shuffled)")
        x = require_type(ctx, ctx.input(0), ("INT16",), "input")
        w = require_constant(ctx, require_type(ctx, ctx.input(1), ("INT8",), "weights"), "weights")
        y = require_type(ctx, ctx.output(0), ("INT16",), "output")
        if len(w.shape) != 2:
            raise ctx.fail(f"weights must be 2-D, got {w.shape}")
        self.units, self.k = w.shape
        if x.num_elements % self.k:
            raise ctx.fail(f"input of {x.num_elements} elements is not a multiple of the weight depth {self.k}")
        self.rows_total = x.num_elements // self.k
        if y.num_elements != self.rows_total * self.units:
            raise ctx.fail(f"output shape {y.shape} does not hold {self.rows_total}x{self.units} values")
        self.stage = OutputStage16(ctx, x, w, ctx.input(2), y, self.units, o["activation"])
        ch = Chunking.fit(self.rows_total, 0, lambda r: 8 * r * (self.k + 2 * self.units), ctx.workspace_limit)
        self.rows = ch.rows
        self.workspace = {"lhs": ((self.rows, self.k), I64), "acc": ((self.rows, self.units), I64),
                          "tmp": ((self.rows, self.units), I64)}

    def attach(self, interp: Any) -> None:
        """Take the interpreter's shared weight cache: ops reading one weight tensor share its int64 copy."""
        self.weight_cache = cache_of(interp)

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Row-chunk views; the weights widened to int64 (k, units) here rather than at prepare time, so
        that a kernel built only for its memory traits (the arena planner) does not copy them; one copy
        per weight buffer, shared through the interpreter's :class:`WeightCache`."""
        self.wmat = shared(self.weight_cache, inputs[1], "int64.T", _int64_transposed)
        x = inputs[0].reshape(self.rows_total, self.k)
        y = outputs[0].reshape(self.rows_total, self.units)
        self.steps = []
        for r0 in range(0, self.rows_total, self.rows):
            r = min(self.rows, self.rows_total - r0)
            self.steps.append((x[r0:r0 + r], ws["lhs"][:r], ws["acc"][:r], ws["tmp"][:r], y[r0:r0 + r]))

    def run(self) -> None:
        """One integer product per chunk."""
        for src, lhs, acc, tmp, out in self.steps:
            np.copyto(lhs, src, casting="unsafe")
            np.matmul(lhs, self.wmat, out=acc)
            self.stage.apply(acc, tmp, out)
