"""SignalFilterBankSquareRoot (TFLM custom op): rounded square root of uint64 channels, shifted down.

Inputs: channels (uint64, 1-D) and the shift (int32 scalar). Output uint32, 1-D:
``Sqrt64(x) >> shift``, TFLM's integer square root rounded to nearest (capped at
0xFFFF below 2**32 and 0xFFFFFFFF above).
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
    require_io_count,
)


class SignalFilterBankSquareRoot(Kernel):
    """Square root of every channel."""

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        require_io_count(ctx, 2, 1)
        x, s, y = ctx.input(0), ctx.input(1), ctx.output(0)
        check_tensor(ctx, x, "UINT64", 1, "input")
        check_tensor(ctx, s, "INT32", 0, "scale bits")
        check_tensor(ctx, y, "UINT32", 1, "output")
        if y.shape[0] < x.shape[0]:
            raise ctx.fail(f"the output ({y.shape[0]}) is shorter than the input ({x.shape[0]})")
        if s.data is not None and not 0 <= int(s.array().reshape(-1)[0]) <= 31:
            raise ctx.fail(f"scale bits {int(s.array().reshape(-1)[0])} outside [0, 31]")
        self.n = n = x.shape[0]
        self.f64 = np.zeros(n, np.float64)
        self.r, self.t, self.u, self.cap = (np.zeros(n, np.uint64) for _ in range(4))
        self.m1, self.m2 = np.zeros(n, bool), np.zeros(n, bool)

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Views."""
        self.x, self.s, self.y = inputs[0], inputs[1].reshape(1), outputs[0][:self.n]

    def run(self) -> None:
        """Exact integer square roots (float estimate, corrected), rounded as TFLM, shifted."""
        x, f, r, t, u, cap, m1, m2 = self.x, self.f64, self.r, self.t, self.u, self.cap, self.m1, self.m2
        top = np.uint64(0xFFFFFFFF)
        np.copyto(f, x)
        np.sqrt(f, out=f)
        np.floor(f, out=f)
        np.minimum(f, float(top), out=f)
        np.copyto(r, f, casting="unsafe")
        np.multiply(r, r, out=t)                         # estimate too high by one?
        np.greater(t, x, out=m1)
        np.subtract(r, m1, out=r, casting="unsafe")
        np.add(r, np.uint64(1), out=u)                   # too low by one? ((r+1)**2 fits unless r = 2**32-1)
        np.less(r, top, out=m2)
        np.multiply(u, u, out=t)
        np.less_equal(t, x, out=m1)
        np.logical_and(m1, m2, out=m1)
        np.add(r, m1, out=r, casting="unsafe")
        np.multiply(r, r, out=t)                         # remainder; round up when it exceeds r
        np.subtract(x, t, out=t)
        np.greater(t, r, out=m1)
        np.less(x, np.uint64(1 << 32), out=m2)
        np.copyto(cap, top)
        np.copyto(cap, np.uint64(0xFFFF), where=m2)
        np.not_equal(r, cap, out=m2)
        np.logical_and(m1, m2, out=m1)
        np.add(r, m1, out=r, casting="unsafe")
        np.right_shift(r, np.uint64(int(self.s[0]) & 31), out=r)
        np.copyto(self.y, r, casting="unsafe")
