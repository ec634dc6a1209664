"""MEAN over constant axes: float32, int8 and int16, as TFLM's ``EvalMeanHelper``.

Quantized (TFLite's ``QuantizedMeanOrSum``, which this tflite-micro release uses for int8
and int16 whatever the scales, equal ones included): sum, subtract zero point times
count, one MultiplyByQuantizedMultiplier whose multiplier absorbs 1/count, offset,
clamp. :func:`mean_or_sum_requantizer` is that output stage, shared with SUM.

Float32 (TFLM's ``ReduceSumImpl``, then for MEAN ``sum / float(count)``): every output starts
at 0.0f and adds its inputs one by one in float32, in row-major order of the reduced indices;
reproduced bit for bit by :class:`FloatReduction` (sequential ``np.add.accumulate`` in blocks).
"""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro import options as opt
from edge_runtime.backends.micro.fixedpoint import Requantizer, quantize_multiplier
from edge_runtime.backends.micro.kernels.binary.common import chunk_slices
from edge_runtime.backends.micro.kernels.base import (
    Inputs, Kernel, OpContext, Outputs, Scratch, Workspace, qparams, require_constant, require_type,
)
from edge_runtime.formats.tflite import TensorInfo


def reduction_axes(ctx: OpContext, x: TensorInfo, y: TensorInfo) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The resolved (sorted, unique) constant axes of a reduction (input 1) and the output shape
    with reduced dims kept as 1; the output must hold that many elements (keep_dims or not)."""
    axes = require_constant(ctx, ctx.input(1), "axis").array().astype(np.int64).reshape(-1)
    rank = len(x.shape)
    if np.any((axes < -rank) | (axes >= rank)):
        raise ctx.fail(f"axis {axes.tolist()} out of range for rank {rank}")
    resolved = tuple(sorted({int(a) % rank for a in axes}))
    kshape = tuple(1 if d in resolved else s for d, s in enumerate(x.shape))
    if int(np.prod(kshape, dtype=np.int64)) != y.num_elements:
        raise ctx.fail(f"output shape {y.shape} does not match the reduction of {x.shape} over {list(resolved)}")
    return resolved, kshape


def mean_or_sum_requantizer(x: TensorInfo, y: TensorInfo, count: int, mean: bool) -> Requantizer:
    """``QuantizedMeanOrSum``'s output stage: multiplier ``s_in / s_out`` (for a mean divided by
    ``count`` with TFLite's shift clamps), output zero point, clamp to the tensor type."""
    sx, _ = qparams(x)
    sy, zy = qparams(y)
    mult, shift = quantize_multiplier(float(np.float32(sx)) / float(np.float32(sy)))
    if mean:
        sh = min(count.bit_length() - 1, 32, 31 + shift)
        mult = int((mult << sh) // count) if sh >= 0 else int((mult >> -sh) // count)
        shift -= sh
    info = np.iinfo(x.dtype)
    return Requantizer(np.array([mult]), np.array([shift]), zy, int(info.min), int(info.max))


def _keep_dims(index: tuple, rank: int) -> tuple:  # type: ignore[type-arg]
    """A :func:`chunk_slices` index tuple with its single indices as length-1 slices (padded to ``rank``)."""
    full = index + (slice(None),) * (rank - len(index))
    return tuple(slice(i, i + 1) if isinstance(i, (int, np.integer)) else i for i in full)


#: With at least this many outputs (and at most MAX_LOOP_TERMS terms each), the sums run as one
#: vector add per reduced element across all outputs; else by ``np.add.accumulate`` along rows.
MIN_LOOP_OUTPUTS = 64
MAX_LOOP_TERMS = 4096


class FloatReduction:
    """Float32 sums over axes in TFLM's order: per output, ``0.0f + x0 + x1 + ...`` in float32 with the
    reduced elements in row-major order (numpy's ``add.reduce`` sums pairwise, so it cannot be used).

    Many outputs: one float32 vector add into the output per reduced element (no workspace). Otherwise
    blocks of (kept, reduced) elements are copied into a float32 buffer of at most ``cap`` elements
    (``cap`` >= 2) with the running sums in column 0 and summed along each row by ``np.add.accumulate``
    (sequential, about 4 ns per element), whose last column carries into the next block."""

    def __init__(self, shape: tuple[int, ...], axes: tuple[int, ...], cap: int) -> None:
        rank = len(shape)
        self.kept_axes = tuple(d for d in range(rank) if d not in axes)
        self.perm = self.kept_axes + tuple(axes)
        self.kept_shape = tuple(shape[d] for d in self.kept_axes)
        self.red_shape = tuple(shape[d] for d in axes)
        k = int(np.prod(self.kept_shape, dtype=np.int64))
        r = int(np.prod(self.red_shape, dtype=np.int64))
        self.loop = k >= MIN_LOOP_OUTPUTS and r <= MAX_LOOP_TERMS
        cap = 2 if self.loop else max(2, cap)
        self.rmax = max(1, min(r, cap // 2 - 1))
        self.kmax = max(1, min(k, cap // (self.rmax + 1)))
        self.size = max(2, self.kmax * (self.rmax + 1))

    def bind(self, x: np.ndarray, y: np.ndarray, buf: np.ndarray) -> None:
        """Precompute the block views of input ``x``, output ``y`` (float32) and buffer ``buf`` (flat float32)."""
        xt = x.transpose(self.perm)
        yk = y.reshape(self.kept_shape)
        self.y = yk
        self.blocks = []
        nk, nr = len(self.kept_shape), len(self.red_shape)
        if self.loop:
            self.terms = [xt[(slice(None),) * nk + j] for j in np.ndindex(*self.red_shape)]
            return
        for ki in chunk_slices(self.kept_shape, self.kmax):
            kidx = _keep_dims(ki, nk) if nk else ()
            ych = yk[kidx] if nk else yk
            kn = ych.size
            steps = []
            for ri in chunk_slices(self.red_shape, self.rmax):
                ridx = _keep_dims(ri, nr) if nr else ()
                xch = xt[kidx + ridx]
                rn = int(np.prod(xch.shape[nk:], dtype=np.int64))
                b2 = buf[:kn * (rn + 1)].reshape(kn, rn + 1)
                steps.append((xch, b2, b2[:, 0].reshape(ych.shape), b2[:, 1:].reshape(xch.shape),
                              b2[:, rn].reshape(ych.shape)))
            self.blocks.append((ych, steps))

    #: how terms combine, and the value each output starts from (a product subclass sets np.multiply, 1.0)
    combine: np.ufunc = np.add
    start = 0.0

    def run(self) -> None:
        """``y`` = the float32 sums (the terms combined in order from :attr:`start`)."""
        combine = self.combine
        if self.loop:
            y = self.y
            y.fill(self.start)
            for t in self.terms:
                combine(y, t, out=y)
            return
        for ych, steps in self.blocks:
            ych.fill(self.start)
            for xch, b2, carry, dst, last in steps:
                np.copyto(carry, ych)
                np.copyto(dst, xch)
                combine.accumulate(b2, axis=1, out=b2)
                np.copyto(ych, last)


class Mean(Kernel):
    """MEAN (and, with ``is_mean`` False, SUM: the same computation without the division)."""

    max_version = 3
    is_mean = True

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        x = require_type(ctx, ctx.input(0), ("INT8", "INT16", "FLOAT32"), "input")
        y = require_type(ctx, ctx.output(0), (x.type_name,), "output")
        keep = opt.reducer(ctx.op)["keep_dims"]
        self.axes, kshape = reduction_axes(ctx, x, y)
        self.kshape = kshape
        self.count = int(np.prod([x.shape[a] for a in self.axes])) if self.axes else 1
        self.quantized = x.type_name != "FLOAT32"
        self.keep = keep
        if not self.quantized:
            self.fsum = FloatReduction(tuple(x.shape), self.axes, ctx.workspace_limit // 4)
            self.workspace = {"buf": ((self.fsum.size,), np.dtype(np.float32))}
            self.fcount = np.float32(self.count)
            return
        self.workspace = {"acc": (kshape, np.dtype(np.int64)), "tmp": (kshape, np.dtype(np.int64))}
        self.zx_n = np.int64(qparams(x)[1] * self.count)
        self.requant = mean_or_sum_requantizer(x, y, self.count, mean=self.is_mean)

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Views."""
        self.x = inputs[0]
        self.y = outputs[0].reshape(self.kshape)
        if not self.quantized:
            self.fsum.bind(self.x, self.y, ws["buf"])
            self.run = self._run_float  # type: ignore[method-assign]
            self._bind_fast_float()
            return
        self.acc, self.tmp = ws["acc"], ws["tmp"]
        self._bind_fast()

    def _bind_fast(self) -> None:
        """The compiled path for int8 sums over axes (1, 2) of a 4-D tensor (global average pooling)."""
        from edge_runtime.backends.micro import fast

        x = self.x
        if not (self.quantized and x.dtype == np.int8 and x.ndim == 4 and self.axes == (1, 2)
                and x.flags.c_contiguous and self.y.flags.c_contiguous and fast.available()):
            return
        from functools import partial

        from edge_runtime.backends.micro.fast.reduce import MAX_COUNT, mean_hw
        from edge_runtime.backends.micro.fast.requant import pack

        if self.count > MAX_COUNT:
            return
        n, h, w, c = x.shape
        args = (x.reshape(n, h * w, c), pack(self.requant), np.int64(self.zx_n),
                self.acc.reshape(-1).view(np.int32)[:c], self.y.reshape(n, c))
        self.run = partial(fast.jit_prepare(mean_hw, *args), *args)  # type: ignore[method-assign]
        self.path = "numba"

    def _bind_fast_float(self) -> None:
        """The compiled float32 sum when the reduced axes are one run of adjacent axes (x viewed as
        (before, reduced, after)): the same additions in the same order as :class:`FloatReduction`."""
        from edge_runtime.backends.micro import fast

        x, axes = self.x, self.axes
        if not (axes and axes == tuple(range(axes[0], axes[-1] + 1)) and x.flags.c_contiguous
                and self.y.flags.c_contiguous and fast.available()):
            return
        from edge_runtime.backends.micro.fast.reduce import sum_f32

        shape = tuple(x.shape)
        a = int(np.prod(shape[:axes[0]], dtype=np.int64))
        c = int(np.prod(shape[axes[-1] + 1:], dtype=np.int64))
        x3 = x.reshape(a, self.count, c)
        y2 = self.y.reshape(a, c)
        self.fast_sum = fast.jit_prepare(sum_f32, x3, y2)
        self.fast_args = (x3, y2)
        self.run = self._run_float_fast  # type: ignore[method-assign]
        self.path = "numba"

    def _run_float_fast(self) -> None:
        """Float32 on the compiled path (then MEAN's division, as :meth:`_run_float`)."""
        with np.errstate(over="ignore", invalid="ignore"):
            self.fast_sum(*self.fast_args)
            if self.is_mean:
                np.divide(self.y, self.fcount, out=self.y)

    def run(self) -> None:
        """Reduce (quantized)."""
        np.add.reduce(self.x, axis=self.axes, keepdims=True, dtype=self.acc.dtype, out=self.acc)
        self.acc -= self.zx_n
        self.requant.apply(self.acc, self.tmp, self.y)

    def _run_float(self) -> None:
        """Float32: TFLM's sequential float32 sum, MEAN then divides by ``float(count)`` in float32."""
        with np.errstate(over="ignore", invalid="ignore"):  # inf and NaN as in C, without warnings
            self.fsum.run()
            if self.is_mean:
                np.divide(self.y, self.fcount, out=self.y)
