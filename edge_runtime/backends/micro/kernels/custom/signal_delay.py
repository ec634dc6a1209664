"""SignalDelay (TFLM custom op): delay every int16 row by ``delay_length`` samples.

Input and output int16 of the same shape; each row (last axis) is one frame. Option
``delay_length``. The output frame is the last ``frame`` samples of (previous ``delay_length``
samples, this frame); the delay line starts at zeros. :meth:`reset` restores the zeros.
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
    ResetWithModel,
    check_tensor,
    check_type,
    int32_option,
    require_io_count,
    signal_options,
)


class SignalDelay(ResetWithModel, Kernel):
    """A per-row delay line."""

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        require_io_count(ctx, 1, 1)
        x, y = ctx.input(0), ctx.output(0)
        check_tensor(ctx, x, "INT16", None, "input")
        check_type(ctx, y, "INT16", "output")
        if y.num_elements != x.num_elements:
            raise ctx.fail(f"output size {y.num_elements} differs from the input size {x.num_elements}")
        self.delay = int32_option(signal_options(ctx, ("delay_length",))["delay_length"])
        if self.delay < 0:
            raise ctx.fail(f"delay_length {self.delay} is negative")
        self.frame = x.shape[-1]
        if self.frame < 1:
            raise ctx.fail("the frames are empty")
        self.rows = x.num_elements // self.frame
        self.lines = [np.zeros((self.rows, self.delay + self.frame), np.int16) for _ in range(2)]
        self.line = self.lines[0]

    def reset(self) -> None:
        """Zero the delay line."""
        for line in self.lines:
            line.fill(0)

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Row views."""
        self.x = inputs[0].reshape(self.rows, self.frame)
        self.y = outputs[0].reshape(self.rows, self.frame)

    def run(self) -> None:
        """Append the frame, emit the oldest ``frame`` samples, keep the newest ``delay_length``."""
        d, f, line = self.delay, self.frame, self.line
        np.copyto(line[:, d:], self.x)
        np.copyto(self.y, line[:, :f])
        if d:  # the newest samples move to the front of the other buffer (no overlapping copy)
            other = self.lines[1] if line is self.lines[0] else self.lines[0]
            np.copyto(other[:, :d], line[:, f:f + d])
            self.line = other
