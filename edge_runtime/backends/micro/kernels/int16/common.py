"""Shared parts of the 16x8 kernels: the gather index of a convolution window and the output stage.

TFLM's 16x8 kernels take a symmetric int16 input (zero point 0), int8 weights with one scale
per output channel (or one for all), and an int64 or int32 bias. Products are summed in the
bias's width (int32, wrapping like C arithmetic, with an int32 bias; int64 with an int64
bias or none) and scaled back with ``MultiplyByQuantizedMultiplier`` in the matching width: the
int64 form rounds the multiplier to 16 bits (``(m + 2**15) >> 16``, capped at 0x7FFF) and
shifts once by ``15 - shift``; the int32 form is the usual doubling high multiply and
rounding shift. The result is clamped to the fused activation's int16 range.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from edge_runtime.backends.micro.fixedpoint import CLIP, Requantizer, wrap32
from edge_runtime.backends.micro.kernels.base import OpContext, qparams, quantized_activation_range, scales32
from edge_runtime.backends.micro.kernels.conv import per_channel_multipliers
from edge_runtime.formats.tflite import TensorInfo

I64 = np.dtype(np.int64)


def window_index(n: int, h: int, w: int, c: int, oh: int, ow: int, kh: int, kw: int, sh: int, sw: int,
                 dh: int, dw: int, pt: int, pl: int) -> np.ndarray:
    """Flat input index of every (batch, out_y, out_x, tap_y, tap_x, channel); padding points at index n*h*w*c.

    The caller keeps one zero element after the input's copy, so padded taps read 0 (the int16
    input's zero point is 0).
    """
    oy = np.arange(oh)[:, None] * sh - pt + np.arange(kh)[None, :] * dh  # (oh, kh)
    ox = np.arange(ow)[:, None] * sw - pl + np.arange(kw)[None, :] * dw  # (ow, kw)
    vy = (oy >= 0) & (oy < h)
    vx = (ox >= 0) & (ox < w)
    pix = (np.clip(oy, 0, h - 1)[:, None, :, None] * w + np.clip(ox, 0, w - 1)[None, :, None, :])  # (oh, ow, kh, kw)
    valid = vy[:, None, :, None] & vx[None, :, None, :]
    base = np.arange(n)[:, None, None, None, None] * (h * w) + pix[None]
    idx = base[..., None] * c + np.arange(c)
    pad_slot = n * h * w * c
    idx = np.where(valid[None, ..., None], idx, pad_slot)
    return idx.astype(np.intp)


class OutputStage16:
    """Bias, scaling and clamping of int64 accumulators into int16, preallocated for ``rows`` x ``channels``."""

    def __init__(self, ctx: OpContext, x: TensorInfo, w: TensorInfo, b: Optional[TensorInfo], y: TensorInfo,
                 channels: int, activation: int) -> None:
        in_scale, in_zp = qparams(x)
        out_scale, out_zp = qparams(y)
        if in_zp != 0 or out_zp != 0:
            raise ctx.fail("int16 input and output must have zero point 0 (symmetric)")
        if w.quantization is None or np.any(w.quantization.zero_point != 0):
            raise ctx.fail("int8 weights must be symmetric (zero point 0)")
        self.mult, self.shift = per_channel_multipliers(ctx, in_scale, scales32(w), out_scale, channels)
        self.lo, self.hi = quantized_activation_range(ctx, activation, out_scale, 0, np.dtype(np.int16))
        self.wide = b is None or b.type_name == "INT64"  # TFLM sums in int64 unless the bias is int32
        if b is not None and b.type_name not in ("INT64", "INT32"):
            raise ctx.fail(f"the bias of a 16x8 op must be int32 or int64, got {b.type_name}")
        if b is not None and b.data is None:
            raise ctx.fail("the bias must be a constant tensor")
        self.bias = (b.array().astype(np.int64).reshape(-1) if b is not None else np.zeros(channels, np.int64))
        if self.bias.size != channels:
            raise ctx.fail(f"the bias has {self.bias.size} values for {channels} output channels")
        if self.wide:
            m = self.mult
            self.reduced = np.where(m < 0x7FFF0000, (m + (1 << 15)) >> 16, 0x7FFF).astype(np.int64)
            self.total_shift = (15 - self.shift).astype(np.int64)
            self.round = np.left_shift(np.int64(1), self.total_shift - 1)
        else:
            self.requant = Requantizer(self.mult, self.shift, 0, self.lo, self.hi)

    def apply(self, acc: np.ndarray, tmp: np.ndarray, out: np.ndarray) -> None:
        """``acc`` (int64, (rows, channels)) holds the raw sums; write the int16 result to ``out``."""
        acc += self.bias
        if self.wide:
            acc *= self.reduced
            acc += self.round
            np.right_shift(acc, self.total_shift, out=acc)
            wrap32(acc)
            CLIP(acc, self.lo, self.hi, out=acc)
            np.copyto(out, acc, casting="unsafe")
        else:
            wrap32(acc)
            self.requant.apply(acc, tmp, out)
