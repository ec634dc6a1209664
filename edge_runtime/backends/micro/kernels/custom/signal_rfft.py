"""SignalRfft (TFLM custom op): real FFT of each row, int16 / int32 fixed point or float32.

Options ``T`` (the tensor type, as a TensorType code) and ``fft_length`` (even; its half must
factor into 2, 3 and 5). Each input row (last axis, at most ``fft_length`` values) is zero
padded to ``fft_length`` and transformed by KissFFT's ``kiss_fftr``; the output row holds
``fft_length / 2 + 1`` complex values as interleaved (re, im) pairs. Fixed point scales by
1/fft_length as KissFFT does; output positions past the spectrum are left untouched.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from edge_runtime.arena.traits import OpMemory
from edge_runtime.backends.micro.kernels.base import (
    Inputs,
    Kernel,
    OpContext,
    Outputs,
    Scratch,
    Workspace,
)
from edge_runtime.backends.micro.kernels.custom.signal_common import (
    KissFFTR,
    int32_option,
    require_io_count,
    signal_options,
)
from edge_runtime.errors import EdgeRuntimeError

#: TensorType code -> (type name, KissFFT build)
FFT_TYPES = {7: ("INT16", "int16"), 2: ("INT32", "int32"), 0: ("FLOAT32", "float32")}


def fft_type(ctx: OpContext, opts: dict[str, Any]) -> tuple[str, str]:
    """The (tensor type name, KissFFT build) selected by option ``T``."""
    code = opts.get("T")
    if code is None or isinstance(code, (bytes, str, list, dict)) or int(code) not in FFT_TYPES:
        raise ctx.fail(f"option T={code!r} is not one of int16 (7), int32 (2), float32 (0)")
    return FFT_TYPES[int(code)]


def fft_operands(ctx: OpContext) -> tuple[str, Any, Any, int]:
    """(KissFFT build, input, output, fft_length) of an RFFT/IRFFT op, its operand types and ranks checked."""
    require_io_count(ctx, 1, 1)
    opts = signal_options(ctx, ("T", "fft_length"))
    type_name, kind = fft_type(ctx, opts)
    x, y = ctx.input(0), ctx.output(0)
    if x.type_name != type_name or y.type_name != type_name:
        raise ctx.fail(f"input and output must be {type_name.lower()} (option T), got {x.type_name}, "
                       f"{y.type_name}")
    if not x.shape or len(y.shape) != len(x.shape):
        raise ctx.fail("input and output must have the same number of dimensions (>= 1)")
    return kind, x, y, int32_option(opts["fft_length"])


class SignalRfft(Kernel):
    """Real FFT of every row."""

    @staticmethod
    def op_memory(model: Any, subgraph: Any, op: Any, workspace_limit: int) -> OpMemory:
        """TFLM's arena scratch: one zero-padded row (fft_length values)."""
        try:
            k = SignalRfft(OpContext(model, subgraph, op, workspace_limit))
        except EdgeRuntimeError:
            return OpMemory()
        return OpMemory(scratch_bytes=k.fft_length * k.dtype.itemsize)

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        kind, x, y, n = fft_operands(ctx)
        self.fft_length = n
        self.dtype = np.dtype(x.dtype)
        self.in_len = x.shape[-1]
        self.out_len = y.shape[-1] // 2
        self.rows = x.num_elements // max(1, self.in_len)
        self.bins = n // 2 + 1
        if not 1 <= self.in_len <= n:
            raise ctx.fail(f"the rows hold {self.in_len} values; expected 1 to fft_length={n}")
        if self.out_len < self.bins:
            raise ctx.fail(f"the output rows hold {self.out_len} complex values; fft_length={n} needs {self.bins}")
        if y.num_elements // max(1, y.shape[-1]) != self.rows:
            raise ctx.fail(f"the output has {y.num_elements // max(1, y.shape[-1])} rows for {self.rows} input rows")
        self.fixed = kind != "float32"
        wdt = np.dtype(np.int64) if self.fixed else np.dtype(np.float32)
        try:
            self.fft = KissFFTR(n, False, kind, self.rows)
        except ValueError as exc:
            raise ctx.fail(str(exc)) from None
        self.workspace = {"pad": ((self.rows, n), wdt), "re": ((self.rows, self.bins), wdt),
                          "im": ((self.rows, self.bins), wdt)}

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Row views; the zero-padded rows and the spectrum staging."""
        self.x = inputs[0].reshape(self.rows, self.in_len)
        y = outputs[0].reshape(self.rows, -1)
        self.y_re = y[:, 0:2 * self.bins:2]
        self.y_im = y[:, 1:2 * self.bins:2]
        self.pad, self.re, self.im = ws["pad"], ws["re"], ws["im"]

    def run(self) -> None:
        """Transform every row (KissFFT stages allocate temporaries proportional to fft_length)."""
        self.pad.fill(0)
        np.copyto(self.pad[:, :self.in_len], self.x, casting="unsafe")
        self.fft.forward(self.pad, self.re, self.im)
        np.copyto(self.y_re, self.re, casting="unsafe")
        np.copyto(self.y_im, self.im, casting="unsafe")
