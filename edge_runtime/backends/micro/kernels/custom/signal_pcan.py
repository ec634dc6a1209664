"""SignalPCAN (TFLM custom op): per-channel amplitude normalization (PCAN auto gain control).

Inputs: channels (uint32, 1-D), the noise estimate (uint32, 1-D) and the gain table (int16,
1-D, at least 125 entries: TFLM indexes it up to ``4 * 32 - 4``). Output uint32, 1-D. Option
``snr_shift``. ``gain = WideDynamicFunction(noise)`` (piecewise quadratic in the table,
sign-extended to uint32), ``snr = (x * gain) >> snr_shift`` (uint64 product, truncated to
uint32), output ``PcanShrink(snr)``: ``snr**2 >> 20`` below 8192, else ``(snr >> 6) - 64``.
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
    check_type,
    int32_option,
    msb32_into,
    require_io_count,
    require_rank,
    signal_options,
)

LUT_MIN = 4 * 32 - 6 + 3


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
        self.n = n = x.shape[0]
        self.f64, self.e32 = np.zeros(n, np.float64), np.zeros(n, np.int32)
        self.small = np.zeros(n, bool)
        self.nz, self.itv, self.base, self.frac, self.r, self.t = (np.zeros(n, np.int64) for _ in range(6))
        self.x64, self.g64 = np.zeros(n, np.uint64), np.zeros(n, np.uint64)
        self.u = np.zeros(n, np.int64)
        self.lut64 = np.zeros(lut.shape[0], np.int64)

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Views."""
        self.x, self.noise, self.lut, self.y = inputs[0], inputs[1], inputs[2], outputs[0]

    def _gain(self) -> np.ndarray:
        """TFLM's ``WideDynamicFunction`` of the noise estimate (int16 values, in ``self.r``)."""
        nz, itv, base, frac, r, t, u, lut = (self.nz, self.itv, self.base, self.frac, self.r, self.t, self.u,
                                             self.lut64)
        np.copyto(lut, self.lut)
        np.copyto(nz, self.noise)
        np.less_equal(nz, 2, out=self.small)
        np.maximum(nz, 1, out=t)
        msb32_into(t, self.f64, self.e32, itv)           # interval = bit length
        np.multiply(itv, 4, out=base)
        np.subtract(base, 6, out=base)
        np.copyto(base, 0, where=self.small)
        np.subtract(11, itv, out=t)                      # frac: 10 bits after the leading one
        np.maximum(t, 0, out=frac)
        np.left_shift(nz, frac, out=frac)
        np.negative(t, out=t)
        np.maximum(t, 0, out=t)
        np.right_shift(frac, t, out=frac)
        np.bitwise_and(frac, 0x3FF, out=frac)
        np.add(base, 2, out=t)
        lut.take(t, out=r)
        np.multiply(r, frac, out=r)
        np.right_shift(r, 5, out=r)
        np.add(base, 1, out=t)
        lut.take(t, out=u)
        np.multiply(u, 32, out=u)
        np.add(r, u, out=r)
        np.multiply(r, frac, out=r)
        np.add(r, 1 << 14, out=r)
        np.right_shift(r, 15, out=r)
        lut.take(base, out=u)
        np.add(r, u, out=r)
        np.add(r, 32768, out=r)                          # stored as int16
        np.bitwise_and(r, 0xFFFF, out=r)
        np.subtract(r, 32768, out=r)
        np.minimum(nz, 2, out=t)
        lut.take(t, out=u)
        np.copyto(r, u, where=self.small)
        return r

    def run(self) -> None:
        """Gain, SNR, shrink."""
        r, t = self._gain(), self.t
        np.bitwise_and(r, MASK32, out=r)                 # int16 gain sign-extended to uint32
        np.copyto(self.g64, r, casting="unsafe")
        np.copyto(self.x64, self.x)
        np.multiply(self.x64, self.g64, out=self.x64)
        np.right_shift(self.x64, np.uint64(self.shift), out=self.x64)
        np.bitwise_and(self.x64, np.uint64(MASK32), out=self.x64)
        snr = self.nz
        np.copyto(snr, self.x64, casting="unsafe")
        np.less(snr, 2 << 12, out=self.small)
        np.multiply(snr, snr, out=r)                     # x**2 / 4 in output bits (low branch only)
        np.bitwise_and(r, MASK32, out=r)
        np.right_shift(r, 20, out=r)
        np.right_shift(snr, 6, out=t)                    # x - 1 in output bits
        np.subtract(t, 64, out=t)
        np.bitwise_and(t, MASK32, out=t)
        np.copyto(t, r, where=self.small)
        np.copyto(self.y, t, casting="unsafe")
