"""REDUCE_PROD over constant axes, as LiteRT's reference ``reduce.cc`` (tflite-micro has no REDUCE_PROD).

- float32: every output starts at 1.0f and multiplies its inputs in, one by one in float32, in
  row-major order of the input (``Reduce`` with ``ProdOp``; the all-axes case starts from the first
  element, the same product). :class:`FloatProduct` keeps that order (numpy's ``multiply.reduce``
  does not promise one).
- int32, int64, and int8/int16 without quantization: the product in the tensor type, wrapping on
  overflow (LiteRT's ``MulTensorValuesWithExpectedOverflow``); any order gives the same bits.
- quantized int8/int16 (``QuantizedReduceProd``): the first factor is ``x - zp_in``; each next
  product ``acc * (x - zp_in)`` (int64) is rescaled at once by LiteRT's 64-bit
  ``MultiplyByQuantizedMultiplier`` into int32; the result is rescaled once more, plus ``zp_out``,
  clamped. The multiplier is ``QuantizeMultiplier(s_in / s_out ** (1 / n))`` in double, ``n`` the
  elements per output, so the ``n`` rescalings give ``s_in ** n / s_out``. int16 needs zero points 0.
"""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.fixedpoint import quantize_multiplier
from edge_runtime.backends.micro.kernels.base import (
    Inputs, OpContext, Outputs, Scratch, Workspace, qparams, require_type,
)
from edge_runtime.backends.micro.kernels.reduce import FloatReduction
from edge_runtime.backends.micro.kernels.spatial.common import Reduction, Requantizer64

I32_MIN, I32_MAX = int(np.iinfo(np.int32).min), int(np.iinfo(np.int32).max)


class FloatProduct(FloatReduction):
    """Float32 products over axes in LiteRT's order: per output ``1.0f * x0 * x1 * ...`` in float32 with
    the reduced elements in row-major order. The blocks of :class:`FloatReduction`, multiplied instead of
    added (one vector multiply per reduced element, or ``np.multiply.accumulate`` along buffer rows)."""

    combine = np.multiply
    start = 1.0


class ReduceProd(Reduction):
    """REDUCE_PROD (version 1): float32, int32, int64, int8 and int16 (quantized or not)."""

    max_version = 1
    types = ("FLOAT32", "INT32", "INT64", "INT8", "INT16")

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        require_type(ctx, ctx.input(1), ("INT32",), "axis")
        x, y = self.xt, self.yt
        self.quantized = x.type_name in ("INT8", "INT16") and x.quantization is not None
        self.mode = "float" if x.type_name == "FLOAT32" else "quantized" if self.quantized else "wrap"
        if self.mode == "float":
            self.fprod = FloatProduct(tuple(x.shape), self.axes, ctx.workspace_limit // 4)
            self.workspace = {"buf": ((self.fprod.size,), np.dtype(np.float32))}
        elif self.mode == "wrap":
            if y.quantization is not None:
                raise ctx.fail("the input is not quantized but the output is")
        else:
            self._prepare_quantized(ctx)

    def _prepare_quantized(self, ctx: OpContext) -> None:
        """The per-step multiplier (LiteRT's ``GetQuantProdScaling``) and the two output stages."""
        x, y = self.xt, self.yt
        if y.quantization is None:
            raise ctx.fail("the input is quantized but the output is not")
        sx, zx = qparams(x)
        sy, zy = qparams(y)
        if x.quantization.per_channel or y.quantization.per_channel:
            raise ctx.fail("per-channel quantization is not supported (one scale per tensor)")
        if x.type_name == "INT16" and (zx != 0 or zy != 0):
            raise ctx.fail(f"int16 needs zero points 0 (input {zx}, output {zy})")
        if not (np.float32(sx) > 0 and np.float32(sy) > 0 and np.isfinite(np.float32(sx))
                and np.isfinite(np.float32(sy))):
            raise ctx.fail(f"scales must be positive and finite (input {sx}, output {sy})")
        n = x.num_elements // y.num_elements
        scaling = float(np.float32(sx)) / float(np.float32(sy)) ** (1.0 / n)
        mult, shift = quantize_multiplier(scaling)
        if shift > 14:  # 15 - shift would be no right shift: undefined in LiteRT's C
            raise ctx.fail(f"the per-step rescale {scaling:.6g} is too large (2**{shift}) for the 64-bit "
                           "MultiplyByQuantizedMultiplier")
        info = np.iinfo(x.dtype)
        self.zx = np.int64(zx)
        self.step = Requantizer64(np.array([mult]), np.array([shift]), 0, I32_MIN, I32_MAX)
        self.final = Requantizer64(np.array([mult]), np.array([shift]), zy, int(info.min), int(info.max))
        self.workspace = {"acc": (self.kshape, np.dtype(np.int64)), "term": (self.kshape, np.dtype(np.int64))}

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Views, and the reduced elements in row-major order as views over all outputs (quantized)."""
        super().bind(inputs, outputs, scratch, ws)
        if self.mode == "float":
            self.fprod.bind(self.x, self.y, ws["buf"])
        elif self.mode == "quantized":
            self.acc, self.term = ws["acc"], ws["term"]
            shape = self.xt.shape
            red = [shape[a] for a in self.axes]
            self.terms = []
            for j in np.ndindex(*red):
                index = [slice(None)] * len(shape)
                for a, i in zip(self.axes, j):
                    index[a] = slice(i, i + 1)
                self.terms.append(self.x[tuple(index)])

    def run(self) -> None:
        """Multiply."""
        if self.mode == "float":
            self.fprod.run()
        elif self.mode == "wrap":
            np.multiply.reduce(self.x, axis=self.axes, keepdims=True, dtype=self.x.dtype, out=self.y)
        else:
            self._run_quantized()

    def _run_quantized(self) -> None:
        """QuantizedReduceProd: first factor, rescaled products, the output stage."""
        acc, term = self.acc, self.term
        np.copyto(acc, self.terms[0])
        acc -= self.zx
        for t in self.terms[1:]:
            np.copyto(term, t)
            term -= self.zx
            acc *= term
            self.step.apply(acc, term, acc)
        self.final.apply(acc, term, self.y)
