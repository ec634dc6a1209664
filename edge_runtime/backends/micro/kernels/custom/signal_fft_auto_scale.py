"""SignalFftAutoScale (TFLM custom op): shift an int16 frame left to use the full 16 bits.

Input int16 1-D; outputs: the scaled frame (int16, 1-D) and the shift (int32 scalar).
``shift = max(0, 15 - bit_length(max_abs))`` where max_abs follows TFLM's ``MaxAbs16``
literally (an int16 running maximum: a -32768 in the frame wraps it negative, and the
values after it restart the scan); the frame is multiplied by ``2**shift`` (wrapping).
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


def max_abs16(x: np.ndarray, wide: np.ndarray) -> int:
    """TFLM's ``MaxAbs16`` (int16 running maximum of value or its negation, wrapping); ``wide``: int32 scratch."""
    if not x.size:
        return 0
    if int(x.min()) != -32768:
        np.copyto(wide, x)
        np.abs(wide, out=wide)
        return int(wide.max())
    last = x.size - 1 - int(np.argmax(x[::-1] == -32768))  # rare path: restart after the last -32768
    m = -32768
    for v in x[last + 1:].tolist():
        if v > m:
            m = v
        elif -v > m:
            m = -v
    return m


class SignalFftAutoScale(Kernel):
    """Normalize a frame's magnitude by a power of two."""

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        require_io_count(ctx, 1, 2)
        x, y, s = ctx.input(0), ctx.output(0), ctx.output(1)
        check_tensor(ctx, x, "INT16", 1, "input")
        check_tensor(ctx, y, "INT16", 1, "output")
        check_tensor(ctx, s, "INT32", 0, "scale bits output")
        self.size = y.shape[0]
        if self.size > x.shape[0]:
            raise ctx.fail(f"the output ({self.size}) is longer than the input ({x.shape[0]})")
        self.workspace = {"acc": ((self.size,), np.dtype(np.int32))}

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Views."""
        self.x = inputs[0][:self.size]
        self.y = outputs[0]
        self.s = outputs[1].reshape(1)
        self.acc = ws["acc"]

    def run(self) -> None:
        """Scale by the largest shift that keeps the peak within int16."""
        m = max_abs16(self.x, self.acc)
        bits = 15 - (m.bit_length() if m > 0 else 32)
        bits = max(bits, 0)
        np.copyto(self.acc, self.x)
        np.left_shift(self.acc, bits, out=self.acc)
        np.copyto(self.y, self.acc, casting="unsafe")
        self.s[0] = bits
