"""SignalWindow (TFLM custom op): multiply int16 frames by an int16 window, shift right, saturate.

Inputs: the signal (int16, >= 1-D; its flat data is a sequence of frames of the window's
length) and the window weights (int16, 1-D). Option ``shift``. Each value is
``clamp((x * w) >> shift, int16)`` with the product in int32 and an arithmetic shift.
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
    check_type,
    int32_option,
    require_io_count,
    require_rank,
    signal_options,
)


class SignalWindow(Kernel):
    """Window each frame of an int16 signal."""

    inplace_ok = False

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        require_io_count(ctx, 2, 1)
        x, w, y = ctx.input(0), ctx.input(1), ctx.output(0)
        for t, what in ((x, "input"), (w, "weights"), (y, "output")):
            check_type(ctx, t, "INT16", what)
        require_rank(ctx, x, None, "input")
        require_rank(ctx, w, 1, "weights")
        if len(y.shape) != len(x.shape):
            raise ctx.fail("input and output must have the same number of dimensions")
        self.shift = int32_option(signal_options(ctx, ("shift",))["shift"])
        if not 0 <= self.shift <= 31:
            raise ctx.fail(f"shift {self.shift} is outside [0, 31]")
        self.size, self.width = x.num_elements, w.shape[0]
        if self.width < 1 or self.size % self.width:
            raise ctx.fail(f"the input size {self.size} is not a multiple of the window length {self.width}")
        if y.num_elements != self.size:
            raise ctx.fail(f"the output has {y.num_elements} values for {self.size} inputs")
        self.workspace = {"acc": ((self.size // self.width, self.width), np.dtype(np.int32))}

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Frame views of the signal and output, the window, the int32 accumulator."""
        self.x = inputs[0].reshape(-1, self.width)
        self.w = inputs[1].reshape(self.width)
        self.y = outputs[0].reshape(-1, self.width)
        self.acc = ws["acc"]

    def run(self) -> None:
        """y = clamp((x * w) >> shift)."""
        np.multiply(self.x, self.w, out=self.acc, dtype=np.int32)
        np.right_shift(self.acc, self.shift, out=self.acc)
        np.maximum(self.acc, -32768, out=self.acc)
        np.minimum(self.acc, 32767, out=self.acc)
        np.copyto(self.y, self.acc, casting="unsafe")
