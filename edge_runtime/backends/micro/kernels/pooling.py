"""AVERAGE_POOL_2D and MAX_POOL_2D, int8, int16 and float32 (TFLM reference pooling).

Padding positions are not counted: the average divides by the number of valid
input positions under the window (precomputed per output position), rounding half
away from zero for int8 as TFLM does; the max ignores padding by padding with the
lowest value. Windows are strided views over a padded band; the reduction is one
numpy call per chunk. int8/int16 averages are summed in float64 (exact: integers far
below 2**53) and divided there: ``(sum + copysign(count // 2, sum)) / count``
truncated toward zero, TFLM's integer rounding; a correctly rounded quotient of
integers below 2**53 never crosses an integer, so the truncation is exact.

float32 runs TFLM's arithmetic: per output, one float32 pass over the window taps in row-major
order (``total += x`` from 0.0f, then ``total / count``; or ``if (max < x) max = x`` from the lowest
float, which skips NaN like TFLM and treats padding at -inf as absent), vectorized over all
outputs, then TFLM's clamp to the activation range (finite ends: no activation clamps to
[-FLT_MAX, FLT_MAX], so infinities saturate as in TFLM).
"""
from __future__ import annotations

from functools import partial

import numpy as np
from numpy.lib.stride_tricks import as_strided

from edge_runtime.backends.micro import fast, options as opt
from edge_runtime.backends.micro.fixedpoint import CLIP
from edge_runtime.backends.micro.kernels.reduce import FloatReduction
from edge_runtime.backends.micro.kernels.base import (
    Inputs, Kernel, OpContext, Outputs, Scratch, Workspace, compute_padding, float_activation_range,
    qparams, quantized_activation_range, require_type,
)


class Pool2D(Kernel):
    """Average or max pooling over NHWC."""

    max_version = 3

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        self.is_max = ctx.op.name == "MAX_POOL_2D"
        o = opt.pool2d(ctx.op)
        x = require_type(ctx, ctx.input(0), ("INT8", "INT16", "FLOAT32"), "input")
        y = require_type(ctx, ctx.output(0), (x.type_name,), "output")
        if len(x.shape) != 4 or len(y.shape) != 4:
            raise ctx.fail("input and output must be 4-D (NHWC)")
        self.n, self.h, self.w, self.c = x.shape
        yn, self.ho, self.wo, c2 = y.shape
        if c2 != self.c or yn != self.n:
            raise ctx.fail("pooling cannot change the batch or channel count")
        self.kh, self.kw = o["filter_h"], o["filter_w"]
        self.sh, self.sw = o["stride_h"], o["stride_w"]
        self.pt, self.pb = compute_padding(ctx, o["padding"], self.h, self.kh, self.sh, 1, self.ho)
        self.pl, self.pr = compute_padding(ctx, o["padding"], self.w, self.kw, self.sw, 1, self.wo)
        self.quantized = x.type_name in ("INT8", "INT16")
        qdt = np.dtype(x.dtype)
        if self.quantized:
            sx, zx = qparams(x)
            sy, zy = qparams(y)
            if (np.float32(sx), zx) != (np.float32(sy), zy):
                raise ctx.fail("quantized pooling needs equal input and output quantization")
            self.lo, self.hi = quantized_activation_range(ctx, o["activation"], sy, zy, qdt)
        else:
            self.lo, self.hi = float_activation_range(ctx, o["activation"])
        self.padded = any((self.pt, self.pb, self.pl, self.pr))
        hp, wp = self.h + self.pt + self.pb, self.w + self.pl + self.pr
        if self.is_max:
            band_dt = qdt if self.quantized else np.dtype(np.float32)
        else:
            band_dt = np.dtype(np.float64) if self.quantized else np.dtype(np.float32)
        if self.quantized:
            self.workspace = {"acc": ((self.ho, self.wo, self.c), np.dtype(np.int64))}
        else:
            self.workspace = {"mask": ((self.ho, self.wo, self.c), np.dtype(np.bool_))} if self.is_max else {}
        if not self.quantized:
            self.lo_s, self.hi_s = np.float32(self.lo), np.float32(self.hi)
        elif self.is_max:
            st = qdt.type if self.quantized else np.float32
            self.lo_s, self.hi_s = st(self.lo), st(self.hi)
        else:
            self.lo_s, self.hi_s = np.float64(self.lo), np.float64(self.hi)
        if self.padded or (self.quantized and not self.is_max):
            self.workspace["band"] = ((hp, wp, self.c), band_dt)
        if not self.is_max:
            oy = np.arange(self.ho) * self.sh - self.pt
            ox = np.arange(self.wo) * self.sw - self.pl
            cy = np.minimum(oy + self.kh, self.h) - np.maximum(oy, 0)
            cx = np.minimum(ox + self.kw, self.w) - np.maximum(ox, 0)
            cnt = (cy[:, None] * cx[None, :]).astype(np.int64)
            if np.any(cnt <= 0):
                raise ctx.fail("a pooling window lies entirely in the padding")
            self.fcount = np.ascontiguousarray(np.broadcast_to(cnt[:, :, None], (self.ho, self.wo, self.c)),
                                               dtype=np.float64)
            self.fhalf = np.ascontiguousarray(np.broadcast_to((cnt // 2)[:, :, None], (self.ho, self.wo, self.c)),
                                              dtype=np.float64)
            if np.all(cnt == cnt.flat[0]):
                self.fcount, self.fhalf = np.float64(cnt.flat[0]), np.float64(cnt.flat[0] // 2)
            self.fcount32 = np.asarray(self.fcount, dtype=np.float32)
            if self.quantized:
                self.workspace["sign"] = ((self.ho, self.wo, self.c), np.dtype(np.int64))
        # float global average pooling (one window = the whole unpadded image): the window sum is a
        # reduction over (H, W), run by FloatReduction (same additions, same order) instead of H * W calls
        self.global_sum = (not self.quantized and not self.is_max and not self.padded and (self.ho, self.wo) == (1, 1)
                           and (self.kh, self.kw) == (self.h, self.w))
        if self.global_sum:
            self.gcap = ctx.workspace_limit // 4
            size = FloatReduction((self.h, self.w, self.c), (0, 1), self.gcap).size
            self.workspace["gbuf"] = ((size,), np.dtype(np.float32))

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Window views over the (padded) band of each image; or the compiled loop for int8."""
        x, y = inputs[0], outputs[0]
        self.path, self.compiled = "numpy", None
        if (x.dtype == np.int8 and fast.available() and x.flags.c_contiguous and y.flags.c_contiguous
                and not np.shares_memory(x, y)):
            from edge_runtime.backends.micro.fast.pooling import max_pool

            g = np.array([self.sh, self.sw, self.kh, self.kw, self.pt, self.pl, self.lo, self.hi], np.int64)
            if self.is_max:
                self.compiled = partial(fast.jit_prepare(max_pool, x, g, y), x, g, y)
            else:  # (channels innermost: window rows summed as contiguous runs into int32 sums)
                from edge_runtime.backends.micro.fast.pooling import average_pool_rows

                g = np.append(g, [self.h, self.w])
                args = (x.reshape(self.n * self.h, self.w * self.c), g, np.zeros(self.c, np.int32), y)
                self.compiled = partial(fast.jit_prepare(average_pool_rows, *args), *args)
            self.path = "numba"
            self.run = self.compiled  # type: ignore[method-assign]  # (the interpreter calls it directly)
            return
        self.y = y
        if self.quantized:
            self.acc = ws["acc"].view(np.float64)
        self.sign = ws["sign"].view(np.float64) if "sign" in ws else None
        self.mask = ws.get("mask")
        self.steps = []
        self.taps: list[list[np.ndarray]] = []
        for n in range(self.n):
            if "band" in ws:
                band = ws["band"]
                interior = band[self.pt:self.pt + self.h, self.pl:self.pl + self.w]
                src = band
            else:
                band, interior, src = None, None, x[n]
            s0, s1, s2 = src.strides
            win = as_strided(src, shape=(self.ho, self.wo, self.kh, self.kw, self.c),
                             strides=(s0 * self.sh, s1 * self.sw, s0, s1, s2), writeable=False)
            self.steps.append((band, interior, x[n], win, y[n]))
            if self.global_sum:
                red = FloatReduction((self.h, self.w, self.c), (0, 1), self.gcap)  # (this image's views)
                red.bind(x[n], y[n], ws["gbuf"])
                self.taps.append([red])  # type: ignore[list-item]
            elif not self.quantized:  # the taps in TFLM's order (filter row, then column)
                self.taps.append([win[:, :, i, j, :] for i in range(self.kh) for j in range(self.kw)])
        if self.is_max:
            self.pad_value = np.iinfo(x.dtype).min if self.quantized else -np.inf
        else:
            self.pad_value = 0

    def run(self) -> None:
        """Pool every image."""
        if not self.quantized:
            self._run_float()
            return
        for band, interior, xn, win, yn in self.steps:
            if band is not None:
                if self.padded:  # (unpadded, the band is all interior and fully overwritten)
                    band.fill(self.pad_value)
                np.copyto(interior, xn, casting="unsafe")
            if self.is_max:
                np.maximum.reduce(win, axis=(2, 3), out=yn)
                CLIP(yn, self.lo_s, self.hi_s, out=yn)
                continue
            acc, t = self.acc, self.sign
            np.add.reduce(win, axis=(2, 3), out=acc)
            np.copysign(self.fhalf, acc, out=t)
            np.add(acc, t, out=acc)
            np.divide(acc, self.fcount, out=acc)
            CLIP(acc, self.lo_s, self.hi_s, out=acc)
            np.copyto(yn, acc, casting="unsafe")  # truncates toward zero, as C's division

    def _run_float(self) -> None:
        """float32: TFLM's sequential pass over the window taps, the division (average), the clamp."""
        with np.errstate(over="ignore", invalid="ignore"):  # inf and NaN as in C, without warnings
            self._pool_float()

    def _pool_float(self) -> None:
        """The float32 passes (see :meth:`_run_float`)."""
        for (band, interior, xn, _, yn), taps in zip(self.steps, self.taps):
            if band is not None:
                band.fill(-np.inf if self.is_max else 0.0)
                np.copyto(interior, xn)
            if self.is_max:
                yn.fill(np.finfo(np.float32).min)
                for t in taps:
                    np.less(yn, t, out=self.mask)
                    np.copyto(yn, t, where=self.mask)
            elif self.global_sum:
                taps[0].run()  # type: ignore[attr-defined]
                np.divide(yn, self.fcount32, out=yn)
            else:
                yn.fill(0.0)
                for t in taps:  # (padding adds +0.0: the sum from +0.0 is never -0.0, so that changes nothing)
                    np.add(yn, t, out=yn)
                np.divide(yn, self.fcount32, out=yn)
            CLIP(yn, self.lo_s, self.hi_s, out=yn)
