"""SignalFilterBankSquareRoot (TFLM custom op): rounded square root of uint64 channels, shifted down.

Inputs: channels (uint64, 1-D) and the shift (int32 scalar). Output uint32, 1-D:
``Sqrt64(x) >> shift``, TFLM's integer square root rounded to nearest (capped at
0xFFFF below 2**32 and 0xFFFFFFFF above).
"""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.kernels.base import Inputs, Kernel, OpContext, Outputs, Scratch, Workspace
from edge_runtime.backends.micro.kernels.custom.signal_common import (
    check_type, require_io_count, require_rank, sqrt_rounded,
)


class SignalFilterBankSquareRoot(Kernel):
    """Square root of every channel."""

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        require_io_count(ctx, 2, 1)
        x, s, y = ctx.input(0), ctx.input(1), ctx.output(0)
        check_type(ctx, x, "UINT64", "input")
        check_type(ctx, s, "INT32", "scale bits")
        check_type(ctx, y, "UINT32", "output")
        require_rank(ctx, x, 1, "input")
        require_rank(ctx, s, 0, "scale bits")
        require_rank(ctx, y, 1, "output")
        if y.shape[0] < x.shape[0]:
            raise ctx.fail(f"the output ({y.shape[0]}) is shorter than the input ({x.shape[0]})")
        if s.data is not None and not 0 <= int(s.array().reshape(-1)[0]) <= 31:
            raise ctx.fail(f"scale bits {int(s.array().reshape(-1)[0])} outside [0, 31]")
        self.n = x.shape[0]

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Views."""
        self.x, self.s, self.y = inputs[0], inputs[1].reshape(1), outputs[0][:self.n]

    def run(self) -> None:
        """Integer square roots (a few dozen channels: Python integers)."""
        shift = int(self.s[0]) & 31
        self.y[:] = [sqrt_rounded(v) >> shift for v in self.x.tolist()]
