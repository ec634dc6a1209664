"""FULLY_CONNECTED, CONV_2D and DEPTHWISE_CONV_2D whose weights or bias are not constant data, and
two layer forms the dense kernels do not take (see :func:`needs_general`): grouped CONV_2D (filter
depth = input channels / groups) and FULLY_CONNECTED with per-tensor int8 weights of non-zero zero point.

TFLM reads a layer's weights from the tensor at invoke time, so they may reach the op from
outside: a model input, an IF/WHILE/CALL_ONCE subgraph argument, the output of another op
(a DEQUANTIZE of int8 weights, a RESHAPE, ...). The dense kernels precompute from constant
weights (widened copies, folded zero points, requantization bounds); this kernel reads the
weights and the bias at every invoke instead, into workspace buffers prepared once.

Arithmetic, as TFLM's reference kernels:

- int8 (per tensor or per channel) and 16x8: the input (its zero point subtracted) is gathered
  into windows (padding reads 0), multiplied with the weights in int64 (exact), the bias is
  added and the sum wrapped to int32 (C int32 arithmetic) where TFLM sums in int32, then
  ``MultiplyByQuantizedMultiplier`` per channel, the output zero point and the activation clamp.
  FULLY_CONNECTED with per-tensor weights adds TFLM's filter offset (-zero point) to each weight
  (TFLM's per-channel FC and the convolutions ignore a weight zero point: those are refused).
- grouped CONV_2D: output channel c reads input channels ``g * fin .. (g + 1) * fin`` with
  ``g = c // (cout / groups)``; the windows are gathered per group and multiplied group by group.
- float32: each output starts at +0.0 and adds the float32 products one by one in TFLM's loop
  order (FULLY_CONNECTED: along the depth; CONV_2D: filter row, column, input channel;
  DEPTHWISE: filter row, column), skipping taps outside the input; then ``total + bias`` and
  the clamp. A skipped tap is a product replaced by -0.0, which leaves every sum unchanged.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional

import numpy as np

from edge_runtime.backends.micro import options as opt
from edge_runtime.backends.micro.fixedpoint import CLIP, Requantizer, wrap32
from edge_runtime.backends.micro.kernels.base import (
    Chunking, Inputs, Kernel, OpContext, Outputs, Scratch, Workspace, compute_padding, float_activation_range,
    qparams, quantized_activation_range, require_type, scales32,
)
from edge_runtime.backends.micro.kernels.conv import per_channel_multipliers
from edge_runtime.backends.micro.kernels.int16.common import OutputStage16, window_index
from edge_runtime.formats.tflite import TensorInfo

I64 = np.dtype(np.int64)
F32 = np.dtype(np.float32)
#: the ops this module runs, and the name of their weights in messages
OPS = {"FULLY_CONNECTED": "weights", "CONV_2D": "filter", "DEPTHWISE_CONV_2D": "filter"}


def grouped_conv(ctx: OpContext) -> bool:
    """True for a CONV_2D whose filter depth is smaller than the input depth (a grouped convolution)."""
    if ctx.op.name != "CONV_2D":
        return False
    x, w = ctx.input(0), ctx.input(1)
    return (x is not None and w is not None and len(x.shape) == 4 and len(w.shape) == 4
            and 0 < int(w.shape[3]) < int(x.shape[3]))


def offset_weights(ctx: OpContext) -> bool:
    """True for a FULLY_CONNECTED with int8 per-tensor weights of non-zero zero point and an integer input
    (TFLM's reference FC then adds the filter offset)."""
    if ctx.op.name != "FULLY_CONNECTED":
        return False
    x, w = ctx.input(0), ctx.input(1)
    if x is None or w is None or x.type_name not in ("INT8", "INT16") or w.type_name != "INT8":
        return False
    q = w.quantization
    return q is not None and np.asarray(q.zero_point).size == 1 and np.asarray(q.scale).size == 1 \
        and int(np.asarray(q.zero_point).reshape(-1)[0]) != 0


def needs_general(ctx: OpContext) -> bool:
    """True when the op must run on :class:`VariableWeights` although its weights may be constant:
    a grouped CONV_2D or a FULLY_CONNECTED with offset (non-zero zero point) per-tensor weights."""
    return grouped_conv(ctx) or offset_weights(ctx)


def weights_variable(ctx: OpContext) -> bool:
    """True when the op's weights (input 1) or bias (input 2) are present but not constant data."""
    if ctx.op.name not in OPS:
        return False
    return any(t is not None and not t.is_constant for t in (ctx.input(1), ctx.input(2)))


class VariableWeights(Kernel):
    """A FULLY_CONNECTED / CONV_2D / DEPTHWISE_CONV_2D reading its weights and bias at every invoke.

    Subclasses (TRANSPOSE_CONV) set other input positions and override :meth:`geometry`,
    :meth:`weights_view` and :meth:`int_stage`."""

    sixteen_by_eight = True  #: output in its own buffer (memory_traits), no in-place plan
    max_version = 12
    #: positions of the input, the weights and the bias among the op's inputs
    x_pos, w_pos, b_pos = 0, 1, 2
    w_zp = 0  #: the per-tensor weight zero point of an int8 FULLY_CONNECTED (TFLM's filter offset is -w_zp)
    groups = 1  #: groups of a grouped CONV_2D

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        what = OPS.get(ctx.op.name, "filter")
        x = require_type(ctx, ctx.input(self.x_pos), ("INT8", "INT16", "FLOAT32"), "input")
        self.kind = x.type_name
        wtypes = ("FLOAT32",) if self.kind == "FLOAT32" else ("INT8",)
        w_any = ctx.input(self.w_pos)
        if self.kind == "FLOAT32" and w_any is not None and w_any.type_name == "INT8" and not w_any.is_constant:
            raise ctx.fail(f"the int8 {what} of a float layer (hybrid) must be a constant tensor")
        w = require_type(ctx, w_any, wtypes, what)
        b = ctx.input(self.b_pos)
        y = require_type(ctx, ctx.output(0), (x.type_name,), "output")
        self.geometry(ctx, x, w, y)
        cout = self.cout
        self.has_bias = b is not None
        self.stage16: Optional[OutputStage16] = None
        self.requant: Optional[Any] = None  # Requantizer, or Requantizer64 for a 16x8 TRANSPOSE_CONV
        self.wrap32 = True  # the sum is int32 (C arithmetic) before the requantization
        act = self.options["activation"]
        if self.kind == "FLOAT32":
            if b is not None:
                require_type(ctx, b, ("FLOAT32",), "bias")
            lo, hi = float_activation_range(ctx, act)
            self.lo32, self.hi32 = np.full((), lo, F32), np.full((), hi, F32)
        else:
            self.w_zp = 0
            if offset_weights(ctx):  # TFLM's filter offset; the output stage sees symmetric weights
                self.w_zp = int(np.asarray(w.quantization.zero_point).reshape(-1)[0])
                if not -128 <= self.w_zp <= 127:
                    raise ctx.fail(f"the int8 {what} zero point {self.w_zp} is outside [-128, 127]")
                w = dataclasses.replace(w, quantization=dataclasses.replace(
                    w.quantization, zero_point=np.zeros_like(np.asarray(w.quantization.zero_point))))
            if w.quantization is None or np.any(w.quantization.zero_point != 0):
                if (ctx.op.name == "FULLY_CONNECTED" and w.quantization is not None
                        and np.asarray(w.quantization.zero_point).size > 1):
                    raise ctx.fail(f"per-channel int8 {what} must be symmetric (zero point 0): "
                                   "tflite-micro ignores a per-channel weight zero point")
                raise ctx.fail(f"int8 {what} must be symmetric (zero point 0)")
            self.in_zp = qparams(x)[1]
            self.int_stage(ctx, x, w, b, y, act)
        if b is not None and b.num_elements != cout:
            raise ctx.fail(f"bias '{b.name}' has {b.num_elements} values for {cout} output channels")
        # the bias is added at invoke time unless the 16x8 output stage already holds it
        self.add_bias = b is not None and not (self.stage16 is not None and b.is_constant)
        cdt = F32 if self.kind == "FLOAT32" else I64
        self.cdt = cdt
        cols = self.patch_cols
        per_row = cdt.itemsize * (int(np.prod(cols)) + (4 if self.groups > 1 else 2) * cout)
        fixed = cdt.itemsize * (self.x_elems + 1 + self.taps * cout + cout)
        ch = Chunking.fit(self.rows_total, fixed, lambda r: r * per_row, ctx.workspace_limit)
        self.rows = ch.rows
        self.workspace = {"xext": ((self.x_elems + 1,), cdt), "wmat": ((self.taps, cout), cdt),
                          "bias": ((cout,), cdt), "patch": ((self.rows, *cols), cdt),
                          "acc": ((self.rows, cout), cdt), "tmp": ((self.rows, cout), cdt)}
        if self.groups > 1:  # per-group sums and products, (groups, rows, cout / groups) each
            self.workspace.update({"accg": ((self.rows * cout,), cdt), "tmpg": ((self.rows * cout,), cdt)})

    def int_stage(self, ctx: OpContext, x: TensorInfo, w: TensorInfo, b: Optional[TensorInfo], y: TensorInfo,
                  act: int) -> None:
        """The int8 requantizer (``self.requant``) or the 16x8 output stage (``self.stage16``)."""
        in_scale = qparams(x)[0]
        out_scale, out_zp = qparams(y)
        if self.kind == "INT8":
            if b is not None:
                require_type(ctx, b, ("INT32",), "bias")
            m, s = per_channel_multipliers(ctx, in_scale, scales32(w), out_scale, self.cout)
            lo, hi = quantized_activation_range(ctx, act, out_scale, out_zp)
            self.requant = Requantizer(m, s, out_zp, lo, hi)
            return
        sb = b
        if b is not None:
            require_type(ctx, b, ("INT64", "INT32"), "bias")
            if not b.is_constant:  # the stage sees a zero bias of the same type; run() adds the values
                sb = dataclasses.replace(b, data=np.zeros(b.nbytes, np.uint8))
        self.stage16 = OutputStage16(ctx, x, w, sb, y, self.cout, act)

    def weights_view(self, w: np.ndarray, wmat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(source view of the weights tensor, matching view of ``wmat`` (taps, cout)) for the copy in run()."""
        if self.groups > 1:  # (cout, kh, kw, fin) -> (groups, kh*kw*fin, cout / groups)
            g = self.groups
            return w.reshape(g, self.cout // g, self.taps).transpose(0, 2, 1), wmat.reshape(g, self.taps, -1)
        if self.w_layout == "rows":  # (cout, ..., taps)
            return w.reshape(self.cout, self.taps).T, wmat
        return w.reshape(self.taps, self.cout), wmat  # depthwise (1, kh, kw, cout)

    def geometry(self, ctx: OpContext, x: TensorInfo, w: TensorInfo, y: TensorInfo) -> None:
        """Shapes, the gather index of the windows and which taps fall outside the input."""
        name = ctx.op.name
        self.index: Optional[np.ndarray] = None
        self.invalid: Optional[np.ndarray] = None  # (rows_total, taps) True where a tap is padding
        self.groups = 1
        if name == "FULLY_CONNECTED":
            o = opt.fully_connected(ctx.op)
            if o["weights_format"] != 0:
                raise ctx.fail("only the DEFAULT weights format is supported (not shuffled)")
            if len(w.shape) != 2:
                raise ctx.fail(f"weights must be 2-D, got {w.shape}")
            self.cout, k = int(w.shape[0]), int(w.shape[1])
            if k == 0 or x.num_elements % k:
                raise ctx.fail(f"input of {x.num_elements} elements is not a multiple of the weight depth {k}")
            self.rows_total = x.num_elements // k
            if y.num_elements != self.rows_total * self.cout:
                raise ctx.fail(f"output shape {y.shape} does not hold {self.rows_total}x{self.cout} values")
            self.options, self.depthwise, self.taps = o, False, k
            self.x_elems = x.num_elements
            self.patch_cols: tuple[int, ...] = (1,)  # (no gather: the rows are read from the input copy)
            self.w_layout = "rows"  # (cout, k)
            return
        self.depthwise = name == "DEPTHWISE_CONV_2D"
        o = opt.depthwise(ctx.op) if self.depthwise else opt.conv2d(ctx.op)
        self.options = o
        if len(x.shape) != 4 or len(w.shape) != 4 or len(y.shape) != 4:
            raise ctx.fail("input, filter and output must be 4-D (NHWC)")
        n, h, wd, cin = (int(v) for v in x.shape)
        yn, oh, ow, cout = (int(v) for v in y.shape)
        if yn != n:
            raise ctx.fail(f"input batch {n} and output batch {yn} differ")
        if self.depthwise:
            _, kh, kw, wc = (int(v) for v in w.shape)
            mult = o["depth_multiplier"]
            if w.shape[0] != 1 or wc != cout or cin == 0 or cout % cin or (mult and cin * mult != cout):
                raise ctx.fail(f"depthwise filter shape {w.shape} does not fit input {x.shape} / output {y.shape}")
        else:
            wc, kh, kw, wcin = (int(v) for v in w.shape)
            if wc != cout or wcin <= 0 or cin % wcin or cout % (cin // wcin):
                raise ctx.fail(f"filter shape {w.shape} does not fit input {x.shape} / output {y.shape} "
                               "(a grouped convolution needs input channels and output channels divisible "
                               "by the groups, input channels / filter depth)")
            self.groups = cin // wcin
        pt, _ = compute_padding(ctx, o["padding"], h, kh, o["stride_h"], o["dilation_h"], oh)
        pl, _ = compute_padding(ctx, o["padding"], wd, kw, o["stride_w"], o["dilation_w"], ow)
        idx = window_index(n, h, wd, cin, oh, ow, kh, kw, o["stride_h"], o["stride_w"], o["dilation_h"],
                           o["dilation_w"], pt, pl).reshape(n * oh * ow, kh * kw, cin)
        pad_slot = n * h * wd * cin
        self.rows_total, self.cout, self.x_elems = n * oh * ow, cout, pad_slot
        invalid = idx[:, :, 0] == pad_slot  # (rows, kh*kw)
        if self.depthwise:  # tap t of output channel c reads input channel c // mult
            self.index = np.repeat(idx, cout // cin, axis=2)  # (rows, kh*kw, cout)
            self.taps = kh * kw
            self.invalid = invalid
            self.patch_cols = (kh * kw, cout)
            self.w_layout = "taps"  # (1, kh, kw, cout)
        elif self.groups > 1:  # windows of each group: (groups, rows, kh*kw*fin), in the filter's order
            g, fin = self.groups, cin // self.groups
            self.taps = kh * kw * fin
            self.index = np.ascontiguousarray(idx.reshape(self.rows_total, kh * kw, g, fin).transpose(2, 0, 1, 3)
                                              .reshape(g, self.rows_total, self.taps))
            self.invalid = np.repeat(invalid, fin, axis=1)  # (rows, kh*kw*fin)
            self.patch_cols = (g * self.taps,)
            self.w_layout = "rows"
        else:
            self.index = idx.reshape(self.rows_total, kh * kw * cin)
            self.taps = kh * kw * cin
            self.invalid = np.repeat(invalid, cin, axis=1)  # (rows, kh*kw*cin), in the filter's order
            self.patch_cols = (self.taps,)
            self.w_layout = "rows"  # (cout, kh, kw, cin)
        if not self.invalid.any():
            self.invalid = None

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Views of the input, weights, bias and output, and of the per-chunk buffers."""
        self.x = inputs[self.x_pos].reshape(-1)
        self.xext, self.wmat, self.bias = ws["xext"], ws["wmat"], ws["bias"]
        self.w_src, self.w_dst = self.weights_view(inputs[self.w_pos], self.wmat)
        b_in = inputs[self.b_pos] if self.b_pos < len(inputs) else None
        self.b_src = b_in.reshape(-1) if self.add_bias and b_in is not None else None
        self.neg0 = np.full((), -0.0, F32)
        self.zero32 = np.zeros((), F32)
        y = outputs[0].reshape(self.rows_total, self.cout)
        self.steps = []
        if self.groups > 1:
            self.bind_grouped(ws, y)
            return
        for r0 in range(0, self.rows_total, self.rows):
            r = min(self.rows, self.rows_total - r0)
            idx = self.index[r0:r0 + r] if self.index is not None else None
            patch, acc, tmp = ws["patch"][:r], ws["acc"][:r], ws["tmp"][:r]
            src = self.xext[r0 * self.taps:(r0 + r) * self.taps].reshape(r, self.taps) if idx is None else patch
            taps = []
            if self.kind == "FLOAT32":
                inv = self.invalid[r0:r0 + r] if self.invalid is not None else None
                for t in range(self.taps):
                    mask = None
                    if inv is not None and inv[:, t].any():
                        mask = inv[:, t:t + 1].copy()
                    col = src[:, t, :] if self.depthwise else src[:, t:t + 1]
                    taps.append((col, self.wmat[t], mask))
            self.steps.append((idx, src, patch, acc, tmp, y[r0:r0 + r], taps))

    def bind_grouped(self, ws: Workspace, y: np.ndarray) -> None:
        """Grouped CONV_2D: per chunk, contiguous (groups, rows, taps) windows, (groups, rows, cout / groups)
        sums and, for float32, one (mask of padded rows, weight row) pair per tap."""
        g, k, fpg = self.groups, self.taps, self.cout // self.groups
        for r0 in range(0, self.rows_total, self.rows):
            r = min(self.rows, self.rows_total - r0)
            idx = self.index[:, r0:r0 + r]
            patch = ws["patch"].reshape(-1)[:g * r * k].reshape(g, r, k)
            accg = ws["accg"][:g * r * fpg].reshape(g, r, fpg)
            tmpg = ws["tmpg"][:g * r * fpg].reshape(g, r, fpg)
            acc, tmp = ws["acc"][:r], ws["tmp"][:r]
            taps = []
            if self.kind == "FLOAT32":
                inv = self.invalid[r0:r0 + r] if self.invalid is not None else None
                wg = self.wmat.reshape(g, k, fpg)
                for t in range(k):
                    mask = None
                    if inv is not None and inv[:, t].any():
                        mask = inv[:, t].reshape(1, r, 1).copy()
                    taps.append((patch[:, :, t:t + 1], wg[:, t:t + 1, :], mask))
            self.steps.append((idx, patch, (accg, tmpg), acc, tmp, y[r0:r0 + r], taps))

    def run_grouped(self) -> None:
        """Grouped CONV_2D: the windows of every group, the per-group sums (a batched product, or
        TFLM's float loop), the sums back in channel order, then the output stage."""
        xext, g, fpg = self.xext, self.groups, self.cout // self.groups
        wg = self.wmat.reshape(g, self.taps, fpg)
        for idx, patch, (accg, tmpg), acc, tmp, out, taps in self.steps:
            xext.take(idx, out=patch)
            if self.kind == "FLOAT32":
                self.float_sum(taps, accg, tmpg)
            else:
                np.matmul(patch, wg, out=accg)
            np.copyto(acc.reshape(-1, g, fpg), accg.transpose(1, 0, 2))
            self.finish(acc, tmp, out)

    def run(self) -> None:
        """Read the weights and bias, then compute every row chunk."""
        xext = self.xext
        np.copyto(self.w_dst, self.w_src, casting="unsafe")
        if self.w_zp:  # TFLM's filter offset (FULLY_CONNECTED, per-tensor weights)
            self.wmat -= self.w_zp
        if self.b_src is not None:
            np.copyto(self.bias, self.b_src, casting="unsafe")
        np.copyto(xext[:-1], self.x, casting="unsafe")
        if self.kind != "FLOAT32" and self.in_zp:
            xext -= self.in_zp
        xext[-1] = 0
        if self.groups > 1:
            self.run_grouped()
            return
        for idx, src, patch, acc, tmp, out, taps in self.steps:
            if idx is not None:
                xext.take(idx, out=patch)
            if self.kind == "FLOAT32":
                self.float_sum(taps, acc, tmp)
            elif self.depthwise:
                np.multiply(src, self.wmat, out=patch)
                patch.sum(axis=1, out=acc)
            else:
                np.matmul(src, self.wmat, out=acc)
            self.finish(acc, tmp, out)

    def float_sum(self, taps: list[tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]], acc: np.ndarray,
                  tmp: np.ndarray) -> None:
        """TFLM's float loop: +0.0, then each product in order; padded taps add -0.0 (no change)."""
        acc.fill(0.0)
        multiply, add, copyto, neg0 = np.multiply, np.add, np.copyto, self.neg0
        for col, wrow, mask in taps:
            multiply(col, wrow, out=tmp)
            if mask is not None:
                copyto(tmp, neg0, where=mask)
            add(acc, tmp, out=acc)

    def finish(self, acc: np.ndarray, tmp: np.ndarray, out: np.ndarray) -> None:
        """Bias, then the clamp (float) or the requantization (int8, 16x8)."""
        if self.kind == "FLOAT32":
            if self.has_bias:  # total + bias_value (a missing bias adds +0.0, as in TFLM)
                acc += self.bias
            else:
                acc += self.zero32
            CLIP(acc, self.lo32, self.hi32, out=out)
            return
        if self.add_bias:
            acc += self.bias
        if self.stage16 is not None:
            self.stage16.apply(acc, tmp, out)
            return
        if self.wrap32:
            wrap32(acc)
        rq = self.requant
        if isinstance(rq, Requantizer):  # (Requantizer.apply, with the clip as one ufunc call: np.clip's
            rq.scale(acc, tmp, with_zero_point=rq.fold_zp)  # wrapper fills a cache on its first calls)
            if not rq.fold_zp:
                acc += rq.zero_point
            CLIP(acc, rq.act_min, rq.act_max, out=out, casting="unsafe")
            return
        rq.apply(acc, tmp, out)  # type: ignore[union-attr]
