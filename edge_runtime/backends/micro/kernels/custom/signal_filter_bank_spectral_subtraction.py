"""SignalFilterBankSpectralSubtraction (TFLM custom op): noise-floor subtraction with a running estimate.

Input uint32 1-D; outputs: the cleaned channels and the noise estimate (uint32, 1-D). Options
(alphabetical): alternate_one_minus_smoothing, alternate_smoothing, clamping,
min_signal_remaining, num_channels, one_minus_smoothing, smoothing, smoothing_bits,
spectral_subtraction_bits. Even channels use (smoothing, one_minus_smoothing), odd ones the
alternates. Per channel: ``up = x << smoothing_bits`` (uint32);
``noise = (up * s + noise * (1 - s)) >> spectral_subtraction_bits`` (uint64, stored uint32);
the estimate is capped at ``up`` (and the state too when clamping); the output is
``max((up - estimate) >> smoothing_bits, (x * min_signal_remaining) >> spectral_subtraction_bits)``.
The noise estimate is state kept between invocations; :meth:`reset` zeroes it.
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
    ResetWithModel,
    check_type,
    int32_option,
    require_io_count,
    require_rank,
    signal_options,
)

U64 = np.uint64
OPTION_NAMES = ("alternate_one_minus_smoothing", "alternate_smoothing", "clamping", "min_signal_remaining",
                "num_channels", "one_minus_smoothing", "smoothing", "smoothing_bits", "spectral_subtraction_bits")


class SignalFilterBankSpectralSubtraction(ResetWithModel, Kernel):
    """Spectral subtraction with a persistent noise estimate."""

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        require_io_count(ctx, 1, 2)
        x, y, noise = ctx.input(0), ctx.output(0), ctx.output(1)
        for t, what in ((x, "input"), (y, "output"), (noise, "noise estimate output")):
            check_type(ctx, t, "UINT32", what)
            require_rank(ctx, t, 1, what)
        o = signal_options(ctx, OPTION_NAMES)
        self.clamping = bool(o["clamping"])
        v = {k: int32_option(o[k]) for k in OPTION_NAMES if k != "clamping"}
        self.nch = nch = v["num_channels"]
        self.sbits, self.ssbits = v["smoothing_bits"], v["spectral_subtraction_bits"]
        if nch < 1 or x.shape[0] < nch or y.shape[0] < nch or noise.shape[0] > nch:
            raise ctx.fail(f"num_channels {nch} does not fit the input ({x.shape[0]}), output ({y.shape[0]}) "
                           f"and noise estimate ({noise.shape[0]})")
        if not 0 <= self.sbits <= 31 or not 0 <= self.ssbits <= 63:
            raise ctx.fail(f"smoothing_bits {self.sbits} / spectral_subtraction_bits {self.ssbits} out of range")
        even = np.arange(nch) % 2 == 0
        self.smooth = np.where(even, v["smoothing"] & MASK32, v["alternate_smoothing"] & MASK32).astype(U64)
        self.keep = np.where(even, v["one_minus_smoothing"] & MASK32,
                             v["alternate_one_minus_smoothing"] & MASK32).astype(U64)
        self.min_sig = U64(v["min_signal_remaining"] & MASK32)
        self.noise_n = noise.shape[0]
        self.state = np.zeros(nch, U64)
        names = ("up", "a", "b", "est")
        self.workspace = {k: ((nch,), np.dtype(U64)) for k in names}

    def reset(self) -> None:
        """Zero the noise estimate (TFLM's Reset)."""
        self.state.fill(0)

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Views and staging."""
        self.x = inputs[0][:self.nch]
        self.y = outputs[0][:self.nch]
        self.noise_out = outputs[1]
        self.ws = ws

    def run(self) -> None:
        """One smoothing step and the subtraction (uint64 arithmetic, truncated to uint32 where C stores)."""
        up, a, b, est = self.ws["up"], self.ws["a"], self.ws["b"], self.ws["est"]
        m32, st = U64(MASK32), self.state
        np.copyto(up, self.x)
        np.left_shift(up, U64(self.sbits), out=up)
        np.bitwise_and(up, m32, out=up)
        np.multiply(up, self.smooth, out=a)
        np.multiply(st, self.keep, out=b)
        np.add(a, b, out=a)
        np.right_shift(a, U64(self.ssbits), out=a)
        np.bitwise_and(a, m32, out=st)
        np.minimum(st, up, out=est)
        if self.clamping:
            np.copyto(st, est)
        np.subtract(up, est, out=a)
        np.right_shift(a, U64(self.sbits), out=a)
        np.multiply(self.x, self.min_sig, out=b, dtype=U64)
        np.right_shift(b, U64(self.ssbits), out=b)
        np.bitwise_and(b, m32, out=b)
        np.maximum(a, b, out=a)
        np.copyto(self.y, a, casting="unsafe")
        np.copyto(self.noise_out, st[:self.noise_n], casting="unsafe")
