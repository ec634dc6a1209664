"""SignalStacker (TFLM custom op): stack consecutive int16 frames with left/right context.

Input: one frame of ``num_channels`` int16 values (1-D); outputs: the stack of
``num_channels * (left + right + 1)`` values (int16, 1-D) and a bool scalar "valid". Options
``num_channels``, ``stacker_left_context``, ``stacker_right_context``, ``stacker_step``. A FIFO
(TFLM's circular buffer) receives each frame; the very first frame is repeated ``left`` more
times; once the FIFO holds a full stack it is emitted and ``step`` frames are dropped,
otherwise the output is not written and valid is false. The FIFO is state kept between
invocations; :meth:`reset` empties it.
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
    int32_option,
    require_io_count,
    signal_options,
)


class SignalStacker(ResetWithModel, Kernel):
    """Frame stacking with a persistent FIFO."""

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        require_io_count(ctx, 1, 2)
        x, y, valid = ctx.input(0), ctx.output(0), ctx.output(1)
        check_tensor(ctx, x, "INT16", 1, "input")
        check_tensor(ctx, y, "INT16", 1, "output")
        check_tensor(ctx, valid, "BOOL", 0, "valid output")
        o = signal_options(ctx, ("num_channels", "stacker_left_context", "stacker_right_context", "stacker_step"))
        self.nch = int32_option(o["num_channels"])
        self.left = int32_option(o["stacker_left_context"])
        self.right = int32_option(o["stacker_right_context"])
        self.step = int32_option(o["stacker_step"])
        span = self.left + self.right + 1
        if self.nch < 1 or self.left < 0 or self.right < 0 or not 1 <= self.step <= span:
            raise ctx.fail(f"invalid options: num_channels {self.nch}, left {self.left}, right {self.right}, "
                           f"step {self.step} (1 <= step <= left + right + 1)")
        self.size = self.nch * span
        if x.shape[0] < self.nch or y.shape[0] < self.size:
            raise ctx.fail(f"input ({x.shape[0]}) / output ({y.shape[0]}) smaller than num_channels {self.nch} / "
                           f"the stack {self.size}")
        self.fifos = [np.zeros(self.size, np.int16) for _ in range(2)]
        self.reset()

    def reset(self) -> None:
        """Empty the FIFO; the next frame is again the first."""
        for f in self.fifos:
            f.fill(0)
        self.fifo = self.fifos[0]
        self.count = 0
        self.first = True

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Views."""
        self.x = inputs[0][:self.nch]
        self.y = outputs[0][:self.size]
        self.valid = outputs[1].reshape(1)

    def run(self) -> None:
        """Push the frame (repeated for the left context the first time); emit a full stack."""
        fifo, n, c = self.fifo, self.nch, self.count
        reps = 1 + self.left if self.first else 1
        self.first = False
        for _ in range(reps):
            np.copyto(fifo[c:c + n], self.x)
            c += n
        if c >= self.size:
            np.copyto(self.y, fifo)
            drop = n * self.step
            other = self.fifos[1] if fifo is self.fifos[0] else self.fifos[0]
            np.copyto(other[:c - drop], fifo[drop:c])  # drop `step` frames (into the other buffer)
            self.fifo = other
            c -= drop
            self.valid[0] = True
        else:
            self.valid[0] = False
        self.count = c
