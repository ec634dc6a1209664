"""SignalIrfft (TFLM custom op): inverse real FFT of each row, int16 / int32 fixed point or float32.

Options ``T`` (TensorType code) and ``fft_length``. Each input row holds interleaved complex
bins (at least ``fft_length / 2 + 1``); KissFFT's ``kiss_fftri`` gives ``fft_length`` real
values. Fixed point keeps KissFFT's 1/(fft_length/2) stage scaling; float divides by
``fft_length`` as TFLM does. Output positions past ``fft_length`` are left untouched.
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
    KissFFTR,
)
from edge_runtime.backends.micro.kernels.custom.signal_rfft import fft_operands


class SignalIrfft(Kernel):
    """Inverse real FFT of every row."""

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        kind, x, y, n = fft_operands(ctx)
        self.fft_length = n
        self.in_len = x.shape[-1] // 2
        self.out_len = y.shape[-1]
        self.bins = n // 2 + 1
        if self.in_len < self.bins:
            raise ctx.fail(f"the input rows hold {self.in_len} complex values; fft_length={n} needs {self.bins}")
        if self.out_len < n:
            raise ctx.fail(f"the output rows hold {self.out_len} values; fft_length={n} needs {n}")
        self.rows = x.num_elements // 2 // self.in_len
        if y.num_elements // self.out_len != self.rows:
            raise ctx.fail(f"the output has {y.num_elements // self.out_len} rows for {self.rows} input rows")
        self.kind = kind
        wdt = np.dtype(np.float32) if kind == "float32" else np.dtype(np.int64)
        try:
            self.fft = KissFFTR(n, True, kind, self.rows)
        except ValueError as exc:
            raise ctx.fail(str(exc)) from None
        self.workspace = {"re": ((self.rows, self.bins), wdt), "im": ((self.rows, self.bins), wdt)}

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Row views and the staging of the bins."""
        x = inputs[0].reshape(self.rows, -1)
        self.x_re = x[:, 0:2 * self.bins:2]
        self.x_im = x[:, 1:2 * self.bins:2]
        self.y = outputs[0].reshape(self.rows, self.out_len)[:, :self.fft_length]
        self.re, self.im = ws["re"], ws["im"]

    def run(self) -> None:
        """Transform every row (KissFFT stages allocate temporaries proportional to fft_length)."""
        np.copyto(self.re, self.x_re, casting="unsafe")
        np.copyto(self.im, self.x_im, casting="unsafe")
        out = self.fft.inverse(self.re, self.im)
        if self.kind == "float32":
            np.divide(out, np.float32(self.fft_length), out=out)
        np.copyto(self.y, out, casting="unsafe")
