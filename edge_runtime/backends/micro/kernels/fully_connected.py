"""FULLY_CONNECTED, int8 (TFLM ``FullyConnected``, per-tensor or per-channel) and float32/hybrid.

Rows of the input are processed in chunks: widen to float, one matrix product
with the weights (widened once at bind time into a cached array), add the bias
(with the input zero point folded in), requantize (float64 :class:`FloatRequantizer`
where it is exact for these weights, else the int64 :class:`Requantizer`). One row
with small weights takes a single float64 product with the requantization folded
into the weights. Each output row depends only on its input row, so the op can run
in place when an output row is no larger than an input row.
"""
from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np

from edge_runtime.backends.micro import fast, options as opt
from edge_runtime.backends.micro.kernels.base import (
    Chunking, Inputs, Kernel, OpContext, Outputs, Scratch, Workspace, float_activation_range, qparams,
    quantized_activation_range, require_constant, require_type, scales32,
)
from edge_runtime.backends.micro.kernels.conv import (
    choose_path, int_workspace, output_tail, per_channel_multipliers, prepare_output_stage, widened,
)
from edge_runtime.backends.micro.weight_cache import WeightCache, cache_of, shared


def _float32_transposed(w: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(w.T, dtype=np.float32)


class FullyConnected(Kernel):
    """y = x @ W.T + b, then requantize or clamp."""

    inplace_ok = True
    max_version = 9
    weight_cache: "WeightCache | None" = None  #: the interpreter's, set by :meth:`attach`

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        o = opt.fully_connected(ctx.op)
        if o["weights_format"] != 0:
            raise ctx.fail("only the DEFAULT weights format is supported (not shuffled)")
        x = require_type(ctx, ctx.input(0), ("INT8", "FLOAT32"), "input")
        w = require_constant(ctx, require_type(ctx, ctx.input(1), ("INT8", "FLOAT32"), "weights"), "weights")
        b = ctx.input(2)
        y = require_type(ctx, ctx.output(0), (x.type_name,), "output")
        if len(w.shape) != 2:
            raise ctx.fail(f"weights must be 2-D, got {w.shape}")
        self.units, self.k = w.shape
        if x.num_elements % self.k:
            raise ctx.fail(f"input of {x.num_elements} elements is not a multiple of the weight depth {self.k}")
        self.rows_total = x.num_elements // self.k
        if y.num_elements != self.rows_total * self.units:
            raise ctx.fail(f"output shape {y.shape} does not hold {self.rows_total}x{self.units} values")
        self.quantized = x.type_name == "INT8"
        wa = w.array()
        self.weight_scale = None
        if self.quantized:
            if w.type_name != "INT8":
                raise ctx.fail("int8 input with float weights is not supported")
            if b is not None:
                require_constant(ctx, require_type(ctx, b, ("INT32",), "bias"), "bias")
            in_scale, self.in_zp = qparams(x)
            out_scale, out_zp = qparams(y)
            if w.quantization is None or np.any(w.quantization.zero_point != 0):
                # (per-tensor weights with a zero point run on VariableWeights, see dispatch.py)
                raise ctx.fail("per-channel int8 weights must be symmetric (zero point 0): tflite-micro ignores a "
                               "per-channel weight zero point" if w.quantization is not None
                               and np.asarray(w.quantization.zero_point).size > 1
                               else "int8 weights must be symmetric (zero point 0)")
            # TFLM (this tflite-micro release) takes the FC multipliers the way convolutions do:
            # input_scale * filter_scale / output_scale in double, per channel or per tensor. (The
            # older GetQuantizedConvolutionMultipler multiplied the scales in float32 first; that
            # differs in the last bits and gives outputs one step off on some inputs.)
            m, s = per_channel_multipliers(ctx, in_scale, scales32(w), out_scale, self.units)
            lo, hi = quantized_activation_range(ctx, o["activation"], out_scale, out_zp)
            self.requant_args = (m, s, out_zp, lo, hi)
        else:
            self.in_zp = 0
            if b is not None:
                require_constant(ctx, require_type(ctx, b, ("FLOAT32",), "bias"), "bias")
            self.act = float_activation_range(ctx, o["activation"])
            if w.type_name == "INT8":
                if w.quantization is None:
                    raise ctx.fail("int8 weights of a float layer have no scale")
                self.weight_scale = np.asarray(w.quantization.scale, np.float64)
        prepare_output_stage(self, wa, 0, self.k, self.units, b)
        q = self.quantized
        cdt = self.cdt
        cs = cdt.itemsize

        def per_rows(r: int) -> int:
            return cs * (r * self.k + r * self.units) + (16 * r * self.units if q else 0)

        ch = Chunking.fit(self.rows_total, cs * self.k * self.units, per_rows, ctx.workspace_limit)
        self.rows = ch.rows
        r = ch.rows
        # (the chunking still counts the widened weights, now cached at bind time, so that the
        # rows per chunk, and with them the in-place rule of memory_traits, do not change)
        self.workspace = {"lhs": ((r, self.k), cdt), "acc": ((r, self.units), cdt)}
        if q:
            self.workspace.update(int_workspace(r, self.units))

    def attach(self, interp: Any) -> None:
        """Take the interpreter's shared weight cache: ops reading one weight tensor share its widened copy."""
        self.weight_cache = cache_of(interp)

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Precompute the row-chunk views; the widened weights come from the shared cache (one per buffer)."""
        x = inputs[0].reshape(self.rows_total, self.k)
        y = outputs[0].reshape(self.rows_total, self.units)
        wsrc = inputs[1].T
        cache = self.weight_cache
        self.wmat_shared = cache is not None  # (then the interpreter counts the widened weights, once)
        src0, dst0 = inputs[0], outputs[0]
        same = src0.__array_interface__["data"][0] == dst0.__array_interface__["data"][0]
        if np.shares_memory(src0, dst0) and not (same and (self.units <= self.k or self.rows >= self.rows_total)):
            raise self.ctx.fail("the arena plan overlaps input and output in a way this kernel cannot run in place")
        self.steps = []
        self.fused = None
        self.compiled = None
        self.path = "numpy"
        # compiled path: rows are computed before they are written, so it runs in place when an output
        # row fits in an input row or there is one row
        fits = not np.shares_memory(src0, dst0) or self.units <= self.k or self.rows_total == 1
        gemm = self.rows_total >= 8 and self.k <= 1024 and bool(self.quantized) and fast.available() \
            and fast.blas_available()  # (many rows: one exact float32 BLAS product; the input is read first)
        if (fits or gemm) and choose_path(self, [x, y, inputs[1]]):
            from edge_runtime.backends.micro.fast.fully_connected import fully_connected

            if gemm:
                from edge_runtime.backends.micro.fast.fully_connected_gemm import fully_connected_gemm

                self.wmat = shared(cache, inputs[1], "float32.T", _float32_transposed)  # (k, units)
                self.gemm_bufs = (np.empty((self.rows_total, self.k), np.float32),
                                  np.empty((self.rows_total, self.units), np.float32))
                args = (x, self.wmat, self.fast, *self.gemm_bufs, ws["acc"][0].view(np.int32)[:self.units], y)
                self.compiled = partial(fast.jit_prepare(fully_connected_gemm, *args), *args)
                self.run = self.compiled  # type: ignore[method-assign]
                return
            self.wmat = shared(cache, inputs[1], "int16",  # (units, k): int32 sums of int16 products
                               partial(widened, scale=None, dtype=np.dtype(np.int16)))
            xs = ws["lhs"][0].view(np.int16)[:self.k]
            args = (x, self.wmat, self.fast, xs, ws["acc"][0].view(np.int32)[:self.units], y)
            self.compiled = partial(fast.jit_prepare(fully_connected, *args), *args)
            self.run = self.compiled  # type: ignore[method-assign]  # (the interpreter calls it directly)
            return
        if (self.frq is not None and self.rows >= self.rows_total and self.rows_total <= 16
                and (self.k + 1) * self.units <= 32768):
            # Few rows, small weights: the cost is in the number of numpy calls, not in BLAS. Fold the
            # requantization scale into float64 weights and the offset into an extra input column
            # of ones (a private row buffer), so one product gives y = acc * g + h exactly.
            r = self.rows_total
            self.lhs1 = np.ones((r, self.k + 1), np.float64)
            self.wfold = self.frq.folded_weights(wsrc)
            yv = ws["acc_i"][:r].view(np.float64)
            self.fused = (x, self.lhs1[:, :self.k], self.lhs1, self.wfold, yv,
                          self.frq.bind_rounding(yv, ws["tmp"][:r].view(np.float64), y))
            self.wmat = None
            return
        scale = None if self.weight_scale is None else self.weight_scale.tobytes()
        self.wmat = shared(cache, wsrc, ("widened", self.cdt.str, scale),
                           partial(widened, scale=self.weight_scale, dtype=self.cdt))
        for r0 in range(0, self.rows_total, self.rows):
            r = min(self.rows, self.rows_total - r0)
            acc = ws["acc"][:r]
            tail = output_tail(self, acc, ws["acc_i"][:r] if self.quantized else None,
                              ws["tmp"][:r] if self.quantized else None, y[r0:r0 + r])
            self.steps.append((x[r0:r0 + r], ws["lhs"][:r], acc, tail))

    @property
    def cache_bytes(self) -> int:
        """Bytes of the widened weights and tiled requantization constants built at bind time."""
        own = getattr(self, "wmat", None) is not None and not getattr(self, "wmat_shared", False)
        n = int(self.wmat.nbytes) if own else 0  # (shared widened weights: Interpreter.weight_cache)
        if getattr(self, "fused", None) is not None:
            n += int(self.wfold.nbytes) + int(self.lhs1.nbytes)
        if getattr(self, "fast", None) is not None:
            n += int(self.fast.nbytes)
        n += sum(int(b.nbytes) for b in getattr(self, "gemm_bufs", ()))
        return n + (self.frq.tile_bytes() if self.frq is not None else 0)

    def run(self) -> None:
        """Compute all row chunks."""
        if self.fused is not None:
            src, lhs_x, lhs, wfold, yv, rounding = self.fused
            np.copyto(lhs_x, src, casting="unsafe")
            np.dot(lhs, wfold, out=yv)
            rounding()
            return
        wmat, copyto, matmul = self.wmat, np.copyto, np.matmul
        for src, lhs, acc, tail in self.steps:
            copyto(lhs, src, casting="unsafe")
            matmul(lhs, wmat, out=acc)
            tail()
