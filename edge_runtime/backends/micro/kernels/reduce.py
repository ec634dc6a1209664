"""MEAN over constant axes: float32, int8 and int16, as TFLM's ``EvalMeanHelper``.

Quantized (TFLite's ``QuantizedMeanOrSum``, which this tflite-micro release uses for int8
and int16 whatever the scales, equal ones included): sum, subtract zero point times
count, one MultiplyByQuantizedMultiplier whose multiplier absorbs 1/count, offset,
clamp. :func:`mean_or_sum_requantizer` is that output stage, shared with SUM.
"""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro import options as opt
from edge_runtime.backends.micro.fixedpoint import Requantizer, quantize_multiplier
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
        dt = np.dtype(np.int64) if self.quantized else np.dtype(np.float64)
        self.workspace = {"acc": (kshape, dt), "tmp": (kshape, np.dtype(np.int64))}
        if self.quantized:
            self.zx_n = np.int64(qparams(x)[1] * self.count)
            self.requant = mean_or_sum_requantizer(x, y, self.count, mean=self.is_mean)

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Views."""
        self.x = inputs[0]
        self.y = outputs[0].reshape(self.kshape)
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

    def run(self) -> None:
        """Reduce."""
        np.add.reduce(self.x, axis=self.axes, keepdims=True, dtype=self.acc.dtype, out=self.acc)
        if self.quantized:
            self.acc -= self.zx_n
            self.requant.apply(self.acc, self.tmp, self.y)
        else:
            if self.is_mean:
                self.acc /= self.count
            np.copyto(self.y, self.acc, casting="same_kind")
