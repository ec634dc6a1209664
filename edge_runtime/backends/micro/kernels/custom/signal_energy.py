"""SignalEnergy (TFLM custom op): squared magnitude of int16 complex spectrum bins.

Input: int16, 1-D, interleaved (re, im) pairs; output: uint32, 1-D. Options ``end_index``
and ``start_index``: for bins ``start <= i < end``, ``out[i] = re*re + im*im`` computed in
int32 (stored as uint32); other output positions are left untouched, as in TFLM.
"""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.kernels.base import (
    Inputs,
    Kernel,
    OpContext,
    Outputs,
    Scratch,
    Workspace,
)
from edge_runtime.backends.micro.kernels.custom.signal_common import (
    check_tensor,
    int32_option,
    require_io_count,
    signal_options,
)


class SignalEnergy(Kernel):
    """Energy of spectrum bins [start, end)."""

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        require_io_count(ctx, 1, 1)
        x, y = ctx.input(0), ctx.output(0)
        check_tensor(ctx, x, "INT16", 1, "input")
        check_tensor(ctx, y, "UINT32", 1, "output")
        o = signal_options(ctx, ("end_index", "start_index"))
        self.start, self.end = int32_option(o["start_index"]), int32_option(o["end_index"])
        if self.start < 0 or (self.end > self.start and (2 * self.end > x.shape[0] or self.end > y.shape[0])):
            raise ctx.fail(f"bins [{self.start}, {self.end}) do not fit the input ({x.shape[0] // 2} bins) and "
                           f"output ({y.shape[0]} values)")
        self.count = max(0, self.end - self.start)
        self.workspace = {"acc": ((self.count,), np.dtype(np.uint32)), "tmp": ((self.count,), np.dtype(np.uint32))}

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Views of the selected bins."""
        s, e = self.start, self.start + self.count
        self.re = inputs[0][2 * s:2 * e:2]
        self.im = inputs[0][2 * s + 1:2 * e:2]
        self.y = outputs[0][s:e]
        self.acc, self.tmp = ws["acc"], ws["tmp"]

    def run(self) -> None:
        """re^2 + im^2 (modulo 2**32, as the int32 sum stored into uint32)."""
        if not self.count:
            return
        np.copyto(self.acc, self.re, casting="unsafe")
        np.multiply(self.acc, self.acc, out=self.acc)
        np.copyto(self.tmp, self.im, casting="unsafe")
        np.multiply(self.tmp, self.tmp, out=self.tmp)
        np.add(self.acc, self.tmp, out=self.y)
