"""RANGE: ``start, start + delta, ...`` up to (not including) ``limit``, as LiteRT's ``range.cc``.

tflite-micro has no RANGE; the reference is LiteRT (its kernel is the same in its builtin and
reference resolvers). Types: int32, int64 and float32 (what LiteRT 2.3 accepts); three scalar
inputs of one type, a 1-D output of that type.

- Element count (LiteRT's ``GetSize``): integers ``(|limit - start| + |delta| - 1) / |delta|``
  in the input type; float32 ``ceil(|(limit - start) / delta|)`` with every step in float32.
  ``delta == 0`` and a direction that never reaches ``limit`` are refused, as LiteRT refuses them.
- Values (LiteRT's ``CalculateRange``): a running sum ``value += delta`` in the input type, so the
  float32 elements are the sequentially rounded sums (0.1 + 0.1 + ... ), not ``start + i * delta``.
- Shape: micro plans static shapes. Constant inputs are computed at prepare and the model's output
  shape must hold exactly that many elements; inputs computed in the graph are read at invoke, and a
  count other than the planned output size fails that invoke in one line (:class:`InvokeError`).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from edge_runtime.backends.micro.kernels.base import Inputs, Kernel, OpContext, Outputs, Scratch, Workspace
from edge_runtime.backends.micro.kernels.layout.common import F32, I32, I64, fail_at_run, require_type

TYPES = (I32, I64, F32)


def range_count(start: "int | np.floating", limit: "int | np.floating", delta: "int | np.floating",
                dtype: np.dtype) -> tuple[Optional[int], str]:
    """LiteRT's element count of ``range(start, limit, delta)`` in ``dtype`` and ``""``, or ``None`` and why
    LiteRT (or a count that its ``int`` cannot hold) refuses these values."""
    if not delta != 0:
        return None, "delta is 0"
    if not ((start >= limit and delta < 0) or (start <= limit and delta > 0)):
        return None, f"start {start} cannot reach limit {limit} with delta {delta}"
    if dtype.kind == "f":
        f32 = np.float32
        with np.errstate(all="ignore"):
            steps = np.ceil(np.abs((f32(limit) - f32(start)) / f32(delta)))
        if not np.isfinite(steps) or steps > np.iinfo(np.int32).max:
            return None, f"range({start}, {limit}, {delta}) has {steps} elements, more than an int can count"
        return int(steps), ""
    span, step = abs(int(limit) - int(start)), abs(int(delta))
    if span + step - 1 > int(np.iinfo(dtype).max):
        return None, f"range({start}, {limit}, {delta}) overflows {dtype.name} while counting its elements"
    n = (span + step - 1) // step
    if n > np.iinfo(np.int32).max:
        return None, f"range({start}, {limit}, {delta}) has {n} elements, more than an int can count"
    return n, ""


class Range(Kernel):
    """RANGE (version 1): scalar start, limit, delta (constant or computed), a 1-D output."""

    max_version = 1

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        if len(ctx.op.inputs) != 3 or len(ctx.op.outputs) != 1:
            raise ctx.fail("RANGE takes 3 inputs (start, limit, delta) and gives 1 output")
        start = require_type(ctx, ctx.input(0), TYPES, "start")
        ins = [start] + [require_type(ctx, ctx.input(i), (start.type_name,), what)
                         for i, what in ((1, "limit"), (2, "delta"))]
        y = require_type(ctx, ctx.output(0), (start.type_name,), "output")
        for t, what in zip(ins, ("start", "limit", "delta")):
            if len(t.shape) != 0:
                raise ctx.fail(f"the {what} must be a scalar (0 dimensions), not shape {tuple(t.shape)}")
        if len(y.shape) != 1:
            raise ctx.fail(f"the output must be 1-D, not shape {tuple(y.shape)}")
        self.dtype = np.dtype(start.dtype)
        self.n = int(y.shape[0])
        self.constant: Optional[np.ndarray] = None
        if all(t.data is not None for t in ins):
            s, lim, d = (t.array()[()] for t in ins)
            n, why = range_count(s, lim, d, self.dtype)
            if n is None:
                raise ctx.fail(why)
            if n != self.n:
                raise ctx.fail(f"range({s}, {lim}, {d}) has {n} elements; the output shape {tuple(y.shape)} "
                               f"holds {self.n}")
            self.constant = _values(s, d, n, self.dtype)
        else:
            self.workspace = {"steps": ((max(self.n, 1),), self.dtype)}

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Views (the values of constant inputs are already computed)."""
        self.start, self.limit, self.delta = inputs[0], inputs[1], inputs[2]
        self.y = outputs[0]
        if self.constant is None:
            self.steps = ws["steps"][:self.n]

    def run(self) -> None:
        """Write the range (the count of computed inputs checked against the planned output size)."""
        if self.constant is not None:
            np.copyto(self.y, self.constant)
            return
        s, lim, d = self.start[()], self.limit[()], self.delta[()]
        n, why = range_count(s, lim, d, self.dtype)
        if n is None:
            raise fail_at_run(self, why)
        if n != self.n:
            raise fail_at_run(self, f"range({s}, {lim}, {d}) has {n} elements; micro planned the output for "
                                    f"{self.n} (static shapes, as TFLM)")
        if n:
            self.steps.fill(d)
            self.steps[0] = s
            np.add.accumulate(self.steps, dtype=self.dtype, out=self.y)


def _values(start: "int | np.floating", delta: "int | np.floating", n: int, dtype: np.dtype) -> np.ndarray:
    """``n`` elements of the running sum ``start, start + delta, ...`` in ``dtype`` (LiteRT's order)."""
    steps = np.full(n, delta, dtype)
    if n:
        steps[0] = start
    return np.add.accumulate(steps, dtype=dtype)
