"""SignalFramer (TFLM custom op): cut an int16 stream into overlapping frames.

Input ``[..., n * frame_step]`` (int16); outputs ``[..., n, frame_size]`` (int16) and a bool
scalar "all frames valid". Options ``frame_size``, ``frame_step``, ``prefill``. Each row has a
FIFO (TFLM's circular buffer, primed with ``frame_size - frame_step`` zeros when ``prefill``):
every step of input is appended; when ``frame_size`` samples are buffered they are emitted
and ``frame_step`` dropped, otherwise the frame is not written (left untouched, as in TFLM)
and the valid flag is false. The FIFOs are state kept between invocations; :meth:`reset`
restores their initial content.
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


class SignalFramer(ResetWithModel, Kernel):
    """Overlapping frames with a persistent per-row FIFO."""

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        require_io_count(ctx, 1, 2)
        x, y, valid = ctx.input(0), ctx.output(0), ctx.output(1)
        check_tensor(ctx, x, "INT16", None, "input")
        check_type(ctx, y, "INT16", "output")
        check_tensor(ctx, valid, "BOOL", 0, "valid output")
        if len(y.shape) != len(x.shape) + 1:
            raise ctx.fail("the output must have one more dimension than the input")
        o = signal_options(ctx, ("frame_size", "frame_step", "prefill"))
        self.size, self.step = int32_option(o["frame_size"]), int32_option(o["frame_step"])
        self.prefill = bool(o["prefill"])
        inner = x.shape[-1]
        if self.size < 1 or self.step < 1 or inner < self.step or inner % self.step:
            raise ctx.fail(f"frame_size {self.size} / frame_step {self.step} do not fit rows of {inner}")
        if self.prefill and self.size < self.step:
            raise ctx.fail("prefill needs frame_size >= frame_step")
        self.rows = x.num_elements // inner
        self.frames = inner // self.step
        if y.num_elements < self.rows * self.frames * self.size:
            raise ctx.fail(f"the output holds {y.num_elements} values; {self.rows * self.frames * self.size} needed")
        capacity = -(-self.size // self.step) * self.step
        self.fifos = [np.zeros((self.rows, capacity), np.int16) for _ in range(2)]
        self.reset()

    def reset(self) -> None:
        """Empty the FIFOs (primed with zeros when ``prefill``)."""
        for f in self.fifos:
            f.fill(0)
        self.fifo = self.fifos[0]
        self.count = self.size - self.step if self.prefill else 0

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Frame views."""
        self.x = inputs[0].reshape(self.rows, self.frames, self.step)
        self.y = outputs[0].reshape(-1)[:self.rows * self.frames * self.size].reshape(
            self.rows, self.frames, self.size)
        self.valid = outputs[1].reshape(1)

    def run(self) -> None:
        """Push each step, emit the frames that are complete."""
        fifo, size, step = self.fifo, self.size, self.step
        ok = True
        for f in range(self.frames):
            c = self.count
            np.copyto(fifo[:, c:c + step], self.x[:, f])
            c += step
            if c >= size:
                np.copyto(self.y[:, f], fifo[:, :size])
                other = self.fifos[1] if fifo is self.fifos[0] else self.fifos[0]
                np.copyto(other[:, :c - step], fifo[:, step:c])  # drop a step (into the other buffer)
                fifo = self.fifo = other
                c -= step
            else:
                ok = False
            self.count = c
        self.valid[0] = ok
