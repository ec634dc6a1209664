"""TRANSPOSE_CONV: float32, int8 (per-channel weights, int32 bias) and 16x8 (int16
activations, int8 weights, int64 or int16 bias), as TFLM's reference kernels.

TFLM scatters every input pixel times the filter into an output-sized accumulator
(positions outside the output are dropped), then adds the bias and requantizes per
channel (int8: the 32-bit MultiplyByQuantizedMultiplier plus the output zero
point; 16x8: the 64-bit one, no output zero point). The padding is the "before"
half that a convolution from the output back to the input would use.

Here one matrix product per chunk of input rows computes every (pixel, tap, output
channel) term (exact in float64 for integers; chunks sized to the workspace limit),
and the taps are added into strided views of a zero-filled full-size canvas, from
which the output window is cut.

A filter or bias that is not constant data (a model input, another op's output) is read at
every invoke by :class:`VariableTransposeConv`: the scatter is rewritten as a gather (each
output position reads the input pixels whose taps land on it, in the order TFLM adds them:
input row, then column, ascending, i.e. filter row and column descending, then input channel).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from edge_runtime.backends.micro.fixedpoint import CLIP
from edge_runtime.backends.micro.kernels.base import (
    Chunking, Inputs, Kernel, OpContext, Outputs, Scratch, Workspace, float_activation_range, nbytes_of, qparams,
    quantized_activation_range, require_constant, require_type, scales32,
)
from edge_runtime.backends.micro.kernels.conv import per_channel_multipliers
from edge_runtime.backends.micro.kernels.spatial.common import (
    F64, I64, Requantizer64, requantizer, transpose_conv_options,
)
from edge_runtime.backends.micro.kernels.variable_weights import VariableWeights
from edge_runtime.formats.tflite import TensorInfo
from edge_runtime.backends.micro.options import PADDING_SAME, PADDING_VALID


def _padding(ctx: OpContext, padding: int, out_size: int, filt: int, stride: int) -> int:
    """TFLite's ``ComputePaddingHeightWidth`` "before" padding, with the output as the conv input."""
    if stride < 1:
        raise ctx.fail(f"invalid stride {stride}")
    if padding == PADDING_SAME:
        conv_out = (out_size + stride - 1) // stride
    elif padding == PADDING_VALID:
        conv_out = (out_size + stride - filt) // stride
    else:
        raise ctx.fail(f"unknown padding {padding}")
    total = max(0, (conv_out - 1) * stride + filt - out_size)
    return total // 2


class TransposeConv(Kernel):
    """TRANSPOSE_CONV (inputs: output shape, weights OHWI, input NHWC, optional bias)."""

    max_version = 5

    def __new__(cls, ctx: OpContext) -> "TransposeConv | VariableTransposeConv":  # type: ignore[misc]
        """A :class:`VariableTransposeConv` when the filter or the bias is not constant data."""
        if cls is TransposeConv and any(t is not None and not t.is_constant for t in (ctx.input(1), ctx.input(3))):
            return VariableTransposeConv(ctx)
        return super().__new__(cls)

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        if len(ctx.op.inputs) not in (3, 4):
            raise ctx.fail("TRANSPOSE_CONV takes 3 or 4 inputs")
        x = require_type(ctx, ctx.input(2), ("INT8", "INT16", "FLOAT32"), "input")
        y = require_type(ctx, ctx.output(0), (x.type_name,), "output")
        wtype = "FLOAT32" if x.type_name == "FLOAT32" else "INT8"
        w = require_constant(ctx, require_type(ctx, ctx.input(1), (wtype,), "filter"), "filter")
        b = ctx.input(3)
        if len(x.shape) != 4 or len(w.shape) != 4 or len(y.shape) != 4:
            raise ctx.fail("input, filter and output must be 4-D")
        self.n, self.h, self.w, cin = x.shape
        cout, self.kh, self.kw, wcin = w.shape
        yn, self.ho, self.wo, ycout = y.shape
        if wcin != cin or ycout != cout or yn != self.n:
            raise ctx.fail(f"shapes do not match: input {x.shape}, filter {w.shape}, output {y.shape}")
        o = self.options(ctx)
        self.sh, self.sw = o["stride_h"], o["stride_w"]
        self.pt = _padding(ctx, o["padding"], self.ho, self.kh, self.sh)
        self.pl = _padding(ctx, o["padding"], self.wo, self.kw, self.sw)
        self.cout, self.cin = cout, cin
        self.kind = x.type_name
        # the full canvas every tap lands on, large enough to hold the output window too
        self.fh = max((self.h - 1) * self.sh + self.kh, self.pt + self.ho)
        self.fw = max((self.w - 1) * self.sw + self.kw, self.pl + self.wo)
        wf = w.array().astype(np.float64)  # (cout, kh, kw, cin)
        self.wmat = np.ascontiguousarray(wf.transpose(3, 1, 2, 0).reshape(cin, self.kh * self.kw * cout))
        if self.kind == "FLOAT32":
            self.in_zp = 0
            bias = None
            if b is not None:
                bias = require_constant(ctx, require_type(ctx, b, ("FLOAT32",), "bias"), "bias").array()
                if bias.size != cout:
                    raise ctx.fail(f"bias has {bias.size} values for {cout} output channels")
            self.fbias = None if bias is None else bias.astype(np.float64).reshape(-1)
            self.lo, self.hi = float_activation_range(ctx, o["activation"])
            # the output window copied out contiguous (ufuncs in place on strided views copy)
            self.workspace["acc"] = ((self.n, self.ho, self.wo, cout), F64)
        else:
            if w.quantization is None or np.any(w.quantization.zero_point != 0):
                raise ctx.fail("int8 weights must be symmetric (zero point 0)")
            sx, zx = qparams(x)
            sy, zy = qparams(y)
            if self.kind == "INT16" and (zx != 0 or zy != 0):
                raise ctx.fail("int16 input and output must have zero point 0")
            self.in_zp = zx
            bias = None
            if b is not None:
                btypes = ("INT32",) if self.kind == "INT8" else ("INT64", "INT16")  # TFLM misreads int32
                bt = require_constant(ctx, require_type(ctx, b, btypes, "bias"), "bias")
                bias = bt.array().astype(np.int64).reshape(-1)
                if bias.size != cout:
                    raise ctx.fail(f"bias has {bias.size} values for {cout} output channels")
            m, s = per_channel_multipliers(ctx, sx, scales32(w), sy, cout)
            dt = np.dtype(np.int8) if self.kind == "INT8" else np.dtype(np.int16)
            lo, hi = quantized_activation_range(ctx, o["activation"], sy, zy, dt)
            self.requant = requantizer(self.kind == "INT16", m, s, zy, lo, hi, bias)
            self.workspace["acc"] = ((self.n, self.ho, self.wo, cout), I64)
            self.workspace["tmp"] = ((self.n, self.ho, self.wo, cout), I64)
        # input rows per chunk: the widened rows and their products must fit the workspace limit
        canvas_bytes = nbytes_of((self.n, self.fh, self.fw, cout), F64) + (
            (2 if self.kind != "FLOAT32" else 1) * nbytes_of((self.n, self.ho, self.wo, cout), I64))
        per_row = self.w * (cin + self.kh * self.kw * cout) * 8
        self.chunk = Chunking.fit(self.h, canvas_bytes, lambda r: r * per_row, ctx.workspace_limit)
        rows = self.chunk.rows * self.w
        self.workspace["xf"] = ((rows, cin), F64)
        self.workspace["prod"] = ((rows, self.kh * self.kw * cout), F64)
        self.workspace["canvas"] = ((self.n, self.fh, self.fw, cout), F64)

    def options(self, ctx: OpContext) -> dict[str, int]:
        """padding (schema Padding), stride_h/stride_w and fused activation of the op."""
        return transpose_conv_options(ctx.op)

    @property
    def cache_bytes(self) -> int:
        """Bytes of the weights widened to float64 at prepare time."""
        return int(self.wmat.nbytes)

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Views of the taps on the canvas and of the output window."""
        x = inputs[2]
        self.y = outputs[0]
        self.canvas = ws["canvas"]
        self.steps = []
        for n in range(self.n):
            for y0 in self.chunk.starts:
                y1 = min(self.h, y0 + self.chunk.rows)
                r = (y1 - y0) * self.w
                xf, prod = ws["xf"][:r], ws["prod"][:r]
                p = prod.reshape(y1 - y0, self.w, self.kh, self.kw, self.cout)
                taps = []
                for ky in range(self.kh):
                    for kx in range(self.kw):
                        dst = self.canvas[n, y0 * self.sh + ky:(y1 - 1) * self.sh + ky + 1:self.sh,
                                          kx:kx + (self.w - 1) * self.sw + 1:self.sw, :]
                        taps.append((dst, p[:, :, ky, kx, :]))
                self.steps.append((x[n, y0:y1].reshape(r, self.cin), xf, prod, taps))
        self.window = self.canvas[:, self.pt:self.pt + self.ho, self.pl:self.pl + self.wo, :]
        self.acc, self.tmp = ws["acc"], ws.get("tmp")
        self._bind_fast(x, ws)

    def _bind_fast(self, x: np.ndarray, ws: Workspace) -> None:
        """The compiled path (int8, C-contiguous input and output): one call per op."""
        from edge_runtime.backends.micro import fast

        if not (self.kind == "INT8" and x.flags.c_contiguous and self.y.flags.c_contiguous and fast.available()):
            return
        from functools import partial

        from edge_runtime.backends.micro.fast.requant import pack
        from edge_runtime.backends.micro.fast.transpose_conv import MAX_GEMM_CIN, transpose_conv, transpose_conv_gemm

        if self.cin <= MAX_GEMM_CIN and fast.blas_available():  # (one exact float32 BLAS product per chunk)
            q = pack(self.requant, (self.sh, self.sw, self.pt, self.pl, self.kh, self.kw, int(self.in_zp)))
            rows = self.chunk.rows
            m, taps = rows * self.w, self.kh * self.kw * self.cout
            self.fast_weights = np.ascontiguousarray(self.wmat, dtype=np.float32)  # (cin, kh * kw * cout)
            canvas = ws["canvas"].reshape(-1).view(np.int32)[:self.fh * self.fw * self.cout]
            args = (x, self.fast_weights, q, np.int64(rows),
                    ws["xf"].reshape(-1).view(np.float32)[:m * self.cin].reshape(m, self.cin),
                    ws["prod"].reshape(-1).view(np.float32)[:m * taps].reshape(m, taps),
                    canvas.reshape(self.fh, self.fw, self.cout), self.y)
            self.run = partial(fast.jit_prepare(transpose_conv_gemm, *args), *args)  # type: ignore[method-assign]
            self.path = "numba"
            return
        w2 = np.ascontiguousarray(self.wmat.reshape(self.cin, self.kh * self.kw * self.cout).T).astype(np.int32)
        q = pack(self.requant, (self.sh, self.sw, self.pt, self.pl, self.kh, self.kw, int(self.in_zp)))
        canvas = ws["canvas"].reshape(-1).view(np.int32)[:self.fh * self.fw * self.cout]
        w3 = np.ascontiguousarray(w2.reshape(self.kh * self.kw, self.cout, self.cin).transpose(0, 2, 1))
        args = (x, w2, w3, q, ws["xf"].reshape(-1).view(np.int32)[:self.cin],
                canvas.reshape(self.fh, self.fw, self.cout), self.y)
        self.run = partial(fast.jit_prepare(transpose_conv, *args), *args)  # type: ignore[method-assign]
        self.path = "numba"
        self.fast_weights = (w2, w3)

    def run(self) -> None:
        """Scatter all taps, then bias, requantize/clamp."""
        self.canvas.fill(0.0)
        for x, xf, prod, taps in self.steps:
            np.copyto(xf, x, casting="unsafe")
            if self.in_zp:
                xf -= self.in_zp
            np.matmul(xf, self.wmat, out=prod)
            for dst, src in taps:
                np.add(dst, src, out=dst)
        acc = self.acc
        np.copyto(acc, self.window, casting="unsafe")
        if self.kind == "FLOAT32":
            if self.fbias is not None:
                acc += self.fbias
            CLIP(acc, self.lo, self.hi, out=acc)
            np.copyto(self.y, acc, casting="same_kind")
            return
        self.requant.apply(acc, self.tmp, self.y)


class VariableTransposeConv(VariableWeights):
    """TRANSPOSE_CONV whose filter or bias is read at every invoke (float32 as TFLM's float loop, int8, 16x8)."""

    max_version = 5
    x_pos, w_pos, b_pos = 2, 1, 3

    def geometry(self, ctx: OpContext, x: TensorInfo, w: TensorInfo, y: TensorInfo) -> None:
        """The gather index: output (batch, y, x) x tap (filter row, column descending) x input channel."""
        if len(ctx.op.inputs) not in (3, 4):
            raise ctx.fail("TRANSPOSE_CONV takes 3 or 4 inputs")
        if len(x.shape) != 4 or len(w.shape) != 4 or len(y.shape) != 4:
            raise ctx.fail("input, filter and output must be 4-D")
        n, h, wd, cin = (int(v) for v in x.shape)
        cout, kh, kw, wcin = (int(v) for v in w.shape)
        yn, ho, wo, ycout = (int(v) for v in y.shape)
        if wcin != cin or ycout != cout or yn != n:
            raise ctx.fail(f"shapes do not match: input {x.shape}, filter {w.shape}, output {y.shape}")
        o = transpose_conv_options(ctx.op)
        self.options, self.depthwise = o, False
        sh, sw = o["stride_h"], o["stride_w"]
        pt = _padding(ctx, o["padding"], ho, kh, sh)
        pl = _padding(ctx, o["padding"], wo, kw, sw)
        ty = np.arange(ho)[:, None] + pt - np.arange(kh)[::-1][None, :]  # (ho, kh): input row times the stride
        tx = np.arange(wo)[:, None] + pl - np.arange(kw)[::-1][None, :]
        vy = (ty >= 0) & (ty % sh == 0) & (ty // sh < h)
        vx = (tx >= 0) & (tx % sw == 0) & (tx // sw < wd)
        iy, ix = np.clip(ty // sh, 0, h - 1), np.clip(tx // sw, 0, wd - 1)
        pix = iy[:, None, :, None] * wd + ix[None, :, None, :]  # (ho, wo, kh, kw)
        valid = vy[:, None, :, None] & vx[None, :, None, :]
        pad_slot = n * h * wd * cin
        base = np.arange(n)[:, None, None, None, None] * (h * wd) + pix[None]
        idx = np.where(valid[None, ..., None], base[..., None] * cin + np.arange(cin), pad_slot)
        self.rows_total, self.cout, self.x_elems = n * ho * wo, cout, pad_slot
        self.taps = kh * kw * cin
        self.index = idx.reshape(self.rows_total, self.taps).astype(np.intp)
        invalid = np.repeat(~np.broadcast_to(valid[None], (n, ho, wo, kh, kw)).reshape(self.rows_total, kh * kw),
                            cin, axis=1)
        self.invalid = invalid if invalid.any() else None
        self.patch_cols = (self.taps,)
        self.w_layout = "tconv"
        self.kernel_hw = (kh, kw)

    def weights_view(self, w: np.ndarray, wmat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The filter (cout, kh, kw, cin) flipped and reordered to (kh, kw, cin, cout), as ``wmat`` is laid out."""
        kh, kw = self.kernel_hw
        return w[:, ::-1, ::-1, :].transpose(1, 2, 3, 0), wmat.reshape(kh, kw, w.shape[3], self.cout)

    def int_stage(self, ctx: OpContext, x: TensorInfo, w: TensorInfo, b: Optional[TensorInfo], y: TensorInfo,
                  act: int) -> None:
        """int8: the 32-bit requantization; 16x8: the 64-bit one (int64 sums, int64 or int16 bias)."""
        sx, zx = qparams(x)
        sy, zy = qparams(y)
        wide = self.kind == "INT16"
        if wide and (zx != 0 or zy != 0):
            raise ctx.fail("int16 input and output must have zero point 0")
        if b is not None:
            require_type(ctx, b, ("INT64", "INT16") if wide else ("INT32",), "bias")  # (TFLM misreads int32)
        m, s = per_channel_multipliers(ctx, sx, scales32(w), sy, self.cout)
        lo, hi = quantized_activation_range(ctx, act, sy, zy, np.dtype(np.int16 if wide else np.int8))
        self.requant = Requantizer64(m, s, zy, lo, hi) if wide else requantizer(False, m, s, zy, lo, hi)
        self.wrap32 = not wide
