"""SignalFilterBankLog (TFLM custom op): fixed-point natural log of uint32 channels.

Input uint32 1-D, output int16 1-D. Options ``input_correction_bits`` and ``output_scale``:
``scaled = x << correction_bits`` (uint32, wrapping); values <= 1 give 0, others
``min(Log32(scaled, output_scale), 32767)`` (TFLM's table-corrected log2, times ln 2, scaled).
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
    MASK32,
    Log32,
    check_tensor,
    int32_option,
    require_io_count,
    signal_options,
)


class SignalFilterBankLog(Kernel):
    """Log of every channel."""

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        require_io_count(ctx, 1, 1)
        x, y = ctx.input(0), ctx.output(0)
        check_tensor(ctx, x, "UINT32", 1, "input")
        check_tensor(ctx, y, "INT16", 1, "output")
        o = signal_options(ctx, ("input_correction_bits", "output_scale"))
        self.bits = int32_option(o["input_correction_bits"])
        self.scale = int32_option(o["output_scale"]) & MASK32
        if not 0 <= self.bits <= 31:
            raise ctx.fail(f"input_correction_bits {self.bits} outside [0, 31]")
        if y.shape[0] < x.shape[0]:
            raise ctx.fail(f"the output ({y.shape[0]}) is shorter than the input ({x.shape[0]})")
        self.n = x.shape[0]
        self.log = Log32(self.n, self.scale)
        self.v = np.zeros(self.n, np.int64)
        self.res = np.zeros(self.n, np.int64)
        self.big = np.zeros(self.n, bool)

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Views."""
        self.x, self.y = inputs[0], outputs[0][:self.n]

    def run(self) -> None:
        """Shift, log (values <= 1 give 0), saturate to int16."""
        v, res, big = self.v, self.res, self.big
        np.copyto(v, self.x)
        np.left_shift(v, self.bits, out=v)
        np.bitwise_and(v, MASK32, out=v)
        np.greater(v, 1, out=big)
        np.maximum(v, 2, out=v)
        self.log(v, res)
        np.minimum(res, 32767, out=res)
        np.multiply(res, big, out=res)
        np.copyto(self.y, res, casting="unsafe")
