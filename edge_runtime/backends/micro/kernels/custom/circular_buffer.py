"""CIRCULAR_BUFFER (TFLM custom op): the sliding history of a strided streaming int8 model.

Input ``[B, 1, H, D]``, output ``[B, slots, H, D]`` (int8), and optionally a bool "valid"
output. Each invocation shifts the output's first ``slots * H * D`` values left by one
``H * D`` sample and appends the input. TFLM keeps that history in the output tensor's own
memory; micro keeps it in the kernel (zeros at first, where TFLM shows whatever the arena
held) and copies it to the output, so that an in-place plan reusing the output's bytes after
the op cannot erase it. Option ``cycles_max``: the op "runs" every ``cycles_max``-th
invocation; with the valid output that is reported there, without it TFLM aborts the rest of
the graph on the other invocations, which micro can only mirror when nothing follows the op
(other models are refused). ``cycles_max <= 0`` takes TFLM's fallback: 1 for 5, 13 or 25
slots, else 2 (the one shape where TFLM consults a process-wide counter is refused).
TFLM has no reset for this op; neither has this kernel (the cycle count carries on).
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
    signal_options,
)


class CircularBuffer(Kernel):
    """Shift-in history buffer (kept in the kernel, copied to the output)."""

    inplace_ok = False

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        if len(ctx.op.inputs) != 1 or ctx.input(0) is None or len(ctx.op.outputs) not in (1, 2):
            raise ctx.fail("expects 1 input and 1 or 2 outputs")
        x, y = ctx.input(0), ctx.output(0)
        check_type(ctx, x, "INT8", "input")
        check_type(ctx, y, "INT8", "output")
        if len(x.shape) != 4 or len(y.shape) != 4 or x.shape[1] != 1 or x.shape[0] != y.shape[0] \
                or x.shape[2] != y.shape[2] or x.shape[3] != y.shape[3] or y.shape[1] < 1:
            raise ctx.fail(f"input must be [B, 1, H, D] and output [B, slots, H, D]; got {x.shape}, {y.shape}")
        self.has_valid = len(ctx.op.outputs) == 2
        if self.has_valid:
            v = ctx.output(1)
            check_type(ctx, v, "BOOL", "valid output")
            if v.num_elements != 1:
                raise ctx.fail("the valid output must hold one value")
        raw = ctx.op.custom_options
        cycles = int32_option(signal_options(ctx, ("cycles_max",))["cycles_max"]) if raw is not None and raw.size \
            else 0
        if cycles <= 0:
            if y.shape[1] in (5, 13, 25):
                cycles = 1
            elif y.shape[2] == 2 and y.shape[3] == 96:
                raise ctx.fail("cycles_max <= 0 with a [., ., 2, 96] output: TFLM picks the period from a "
                               "process-wide prepare counter")
            else:
                cycles = 2
        if cycles > 1 and not self.has_valid and ctx.op.index != len(ctx.subgraph.operators) - 1:
            raise ctx.fail(f"with cycles_max={cycles} and no valid output TFLM aborts the rest of the graph on "
                           "skipped cycles; micro runs such a buffer only as the last op")
        self.cycles = cycles
        self.until_run = cycles
        self.slots = y.shape[1]
        self.depth = y.shape[2] * y.shape[3]
        self.hist = np.zeros((self.slots, self.depth), np.int8)

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """The sample and the output's first batch (the history's copy)."""
        self.x = inputs[0].reshape(-1)[:self.depth]
        self.y = outputs[0].reshape(-1)[:self.slots * self.depth].reshape(self.slots, self.depth)
        self.valid = outputs[1].reshape(-1) if self.has_valid else None

    def run(self) -> None:
        """Shift the history by one sample, append the input, count the cycle."""
        h, y = self.hist, self.y
        if self.slots > 1:  # move by one sample, through the output (rewritten below anyway)
            np.copyto(y[:-1], h[1:])
            np.copyto(h[:-1], y[:-1])
        np.copyto(h[-1], self.x)
        np.copyto(y, h)
        self.until_run -= 1
        ran = self.until_run == 0
        if ran:
            self.until_run = self.cycles
        if self.valid is not None:
            self.valid[0] = ran
