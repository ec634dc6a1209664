"""SignalPCAN (TFLM custom op): per-channel amplitude normalization (PCAN auto gain control).

Inputs: channels (uint32, 1-D), the noise estimate (uint32, 1-D) and the gain table (int16,
1-D, at least 125 entries: TFLM indexes it up to ``4 * 32 - 4``). Output uint32, 1-D. Option
``snr_shift``. ``gain = WideDynamicFunction(noise)`` (piecewise quadratic in the table,
sign-extended to uint32), ``snr = (x * gain) >> snr_shift`` (uint64 product, truncated to
uint32), output ``PcanShrink(snr)``: ``snr**2 >> 20`` below 8192, else ``(snr >> 6) - 64``.
"""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.kernels.base import Inputs, Kernel, OpContext, Outputs, Scratch, Workspace
from edge_runtime.backends.micro.kernels.custom.signal_common import (
    MASK32, check_type, int32_option, msb32, require_io_count, require_rank, signal_options,
)

LUT_MIN = 4 * 32 - 6 + 3


def wide_dynamic_function(x: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """TFLM's ``WideDynamicFunction`` (int16 result as int64) for uint32 values ``x`` (int64 array)."""
    small = x <= 2
    interval = msb32(x)
    base = np.where(small, 0, 4 * interval - 6)
    frac = np.where(interval < 11, (x << np.maximum(11 - interval, 0)) & MASK32,
                    x >> np.maximum(interval - 11, 0)) & 0x3FF
    l0, l1, l2 = lut[base], lut[base + 1], lut[base + 2]
    r = (l2 * frac) >> 5
    r = r + l1 * 32
    r = r * frac
    r = ((r + (1 << 14)) >> 15) + l0
    r = ((r + 32768) & 0xFFFF) - 32768
    return np.where(small, lut[np.minimum(x, 2)], r)


class SignalPCAN(Kernel):
    """PCAN gain control of every channel."""

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        require_io_count(ctx, 3, 1)
        x, noise, lut, y = ctx.input(0), ctx.input(1), ctx.input(2), ctx.output(0)
        check_type(ctx, x, "UINT32", "input")
        check_type(ctx, noise, "UINT32", "noise estimate")
        check_type(ctx, lut, "INT16", "gain table")
        check_type(ctx, y, "UINT32", "output")
        for t, what in ((x, "input"), (noise, "noise estimate"), (lut, "gain table"), (y, "output")):
            require_rank(ctx, t, 1, what)
        if not (x.shape[0] > 0 and x.shape[0] == noise.shape[0] == y.shape[0]):
            raise ctx.fail(f"input, noise estimate and output sizes differ or are empty: {x.shape[0]}, "
                           f"{noise.shape[0]}, {y.shape[0]}")
        if lut.shape[0] < LUT_MIN:
            raise ctx.fail(f"the gain table holds {lut.shape[0]} entries; TFLM reads up to {LUT_MIN}")
        self.shift = int32_option(signal_options(ctx, ("snr_shift",))["snr_shift"])
        if not 0 <= self.shift <= 63:
            raise ctx.fail(f"snr_shift {self.shift} outside [0, 63]")
        self.n = x.shape[0]

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Views."""
        self.x, self.noise, self.lut, self.y = inputs[0], inputs[1], inputs[2], outputs[0]

    def run(self) -> None:
        """Gain, SNR, shrink (vectorized; small temporaries per channel vector)."""
        gain = wide_dynamic_function(self.noise.astype(np.int64), self.lut.astype(np.int64))
        gain_u = (gain & MASK32).astype(np.uint64)
        snr = ((self.x.astype(np.uint64) * gain_u) >> np.uint64(self.shift)) & np.uint64(MASK32)
        snr = snr.astype(np.int64)
        low = snr < (2 << 12)
        out = np.where(low, (snr * snr & MASK32) >> 20, ((snr >> 6) - 64) & MASK32)
        np.copyto(self.y, out, casting="unsafe")
