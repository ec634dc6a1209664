"""DeformConv (2-D) with constant offsets (and mask): a constant sparse sampling, then a 1x1 convolution.

With the offsets known, every output pixel ``p`` and kernel tap ``t`` reads ``X`` at a fixed point
``(p_h * stride - pad + t_h * dilation + dy, ...)`` by bilinear interpolation (zero outside the image, as
ONNX's reference: GridSample, align_corners, zeros padding), scaled by the mask. So the deformed
"im2col" matrix ``cols[p, t, c]`` is a constant GATHER of the four corner pixels of every (point, tap) from
``X`` as ``[N * H * W, C]`` and a BATCH_MATMUL with the constant ``[N * P * T, 1, 4]`` corner weights
(mask folded in): ``4`` MACs per value, never a ``P x (H * W)`` matrix. Each offset group samples its own
channel slice. Then one CONV_2D 1x1 over ``[N, OH, OW, T * C]`` with ``w2[o, t * C + c] = W[o, c, t]``
and the bias computes the convolution (grouped weights are written block-diagonal: ``group`` times the
MACs of a grouped convolution, in one op). Offsets or a mask computed at run time are refused.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from converters.importers.onnx_ops import conv as conv2d
from converters.importers.onnx_ops.context import ImportContext


def _corners(pos: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel indices ``[..., 2]`` and tent weights ``[..., 2]`` of positions ``pos`` along one axis (weight 0,
    index 0 for a corner outside the image)."""
    base = np.floor(pos)
    t = pos - base
    idx = base[..., None] + np.arange(2)
    w = np.stack([1.0 - t, t], axis=-1)
    inside = (idx >= 0) & (idx < size)
    return np.where(inside, idx, 0).astype(np.int64), np.where(inside, w, 0.0)


def deform_conv(ctx: ImportContext, node: Any, a: dict) -> None:
    """DeformConv(X [N, C, H, W], W [O, C/g, kh, kw], offset [N, G*2*kh*kw, OH, OW] constant, B?, mask?)."""
    from onnx import helper

    x_shape = tuple(int(v) for v in ctx.src_shape(node, node.input[0]))
    if len(x_shape) != 4:
        raise ctx.err(node, f"only 2-D deformable convolution converts (X {x_shape})")
    w = np.asarray(ctx.const(node, node.input[1]), np.float64)
    if not ctx.is_const(node.input[2]):
        raise ctx.err(node, "offset must be constant (offsets computed at run time are not supported)")
    offset = np.asarray(ctx.const(node, node.input[2]), np.float64)
    has_mask = len(node.input) > 4 and node.input[4]
    if has_mask and not ctx.is_const(node.input[4]):
        raise ctx.err(node, "mask must be constant (a mask computed at run time is not supported)")
    n, c, h, wd = x_shape
    group, og = int(a.get("group", 1)), int(a.get("offset_group", 1))
    if w.ndim != 4 or c != w.shape[1] * group or w.shape[0] % group or og < 1 or c % og:
        raise ctx.err(node, f"weights {w.shape}, group={group}, offset_group={og} do not fit {c} input channels")
    o_ch, _, kh, kw = w.shape
    taps = kh * kw
    stride = [int(v) for v in a.get("strides", [1, 1])]
    dil = [int(v) for v in a.get("dilations", [1, 1])]
    pads = [int(v) for v in a.get("pads", [0, 0, 0, 0])]
    oh = (h + pads[0] + pads[2] - (kh - 1) * dil[0] - 1) // stride[0] + 1
    ow = (wd + pads[1] + pads[3] - (kw - 1) * dil[1] - 1) // stride[1] + 1
    if offset.shape != (n, og * 2 * taps, oh, ow):
        raise ctx.err(node, f"offset shape {offset.shape} is not {(n, og * 2 * taps, oh, ow)}")
    mask = (np.asarray(ctx.const(node, node.input[4]), np.float64) if has_mask
            else np.ones((n, og * taps, oh, ow)))
    if mask.shape != (n, og * taps, oh, ow):
        raise ctx.err(node, f"mask shape {mask.shape} is not {(n, og * taps, oh, ow)}")
    off = offset.reshape(n, og, kh, kw, 2, oh, ow).transpose(0, 1, 5, 6, 2, 3, 4)  # [n, og, oh, ow, kh, kw, 2]
    msk = mask.reshape(n, og, kh, kw, oh, ow).transpose(0, 1, 4, 5, 2, 3)
    ys = (np.arange(oh) * stride[0] - pads[0])[:, None, None, None] + (np.arange(kh) * dil[0])[None, None, :, None]
    xs = (np.arange(ow) * stride[1] - pads[1])[None, :, None, None] + (np.arange(kw) * dil[1])[None, None, None, :]
    out = node.output[0]
    x = ctx.act(node, node.input[0])  # NHWC
    flat = ctx.emit("RESHAPE", [x], ctx.tmp(f"{out}/pixels", (n * h * wd, c)), {}, node, shape=(n * h * wd, c))
    rows = n * oh * ow * taps
    cg = c // og
    parts = []
    for g in range(og):
        yi, yw = _corners(ys + off[:, g, ..., 0], h)  # [n, oh, ow, kh, kw, 2]
        xi, xw = _corners(xs + off[:, g, ..., 1], wd)
        index = (yi[..., :, None] * wd + xi[..., None, :]) + (np.arange(n) * h * wd).reshape(n, 1, 1, 1, 1, 1, 1)
        weight = yw[..., :, None] * xw[..., None, :] * msk[:, g][..., None, None]
        src = flat
        if og > 1:
            src = ctx.emit("STRIDED_SLICE", [flat], ctx.tmp(f"{out}/offset_group{g}", (n * h * wd, cg)),
                           {"begin": (0, g * cg), "end": (n * h * wd, (g + 1) * cg), "strides": (1, 1)}, node,
                           shape=(n * h * wd, cg))
        picked = ctx.emit("GATHER", [src, ctx.add_const(f"{out}/corners{g}", index.reshape(-1), np.int32)],
                          ctx.tmp(f"{out}/corner_values{g}", (rows * 4, cg)), {"axis": 0}, node,
                          shape=(rows * 4, cg))
        picked = ctx.emit("RESHAPE", [picked], ctx.tmp(f"{out}/per_tap{g}", (rows, 4, cg)), {}, node,
                          shape=(rows, 4, cg))
        parts.append(ctx.emit("BATCH_MATMUL", [ctx.add_const(f"{out}/corner_weights{g}",
                                                            weight.reshape(rows, 1, 4).astype(np.float32)), picked],
                              ctx.tmp(f"{out}/sampled{g}", (rows, 1, cg)), {}, node, shape=(rows, 1, cg)))
    cols = parts[0] if og == 1 else ctx.emit("CONCATENATION", parts, ctx.tmp(f"{out}/sampled", (rows, 1, c)),
                                            {"axis": 2, "act": "NONE"}, node, shape=(rows, 1, c))
    cols = ctx.emit("RESHAPE", [cols], ctx.tmp(f"{out}/columns", (n, oh, ow, taps * c)), {}, node,
                    shape=(n, oh, ow, taps * c))
    full = np.zeros((o_ch, taps, c))
    per_out, per_in = o_ch // group, c // group
    for gi in range(group):
        block = w[gi * per_out:(gi + 1) * per_out].reshape(per_out, per_in, taps).transpose(0, 2, 1)
        full[gi * per_out:(gi + 1) * per_out, :, gi * per_in:(gi + 1) * per_in] = block
    w_key = ctx._fresh(f"{out}/pointwise_weights")
    ctx.consts[w_key] = full.reshape(o_ch, taps * c, 1, 1).astype(np.float32)
    inputs = [cols, w_key] + ([node.input[3]] if len(node.input) > 3 and node.input[3] else [])
    ctx.shapes[cols] = (n, taps * c, oh, ow)
    stand_in = helper.make_node("Conv", inputs, [out], name=node.name or out, kernel_shape=[1, 1])
    try:
        conv2d.conv(ctx, stand_in, {"kernel_shape": [1, 1]})
    finally:
        del ctx.consts[w_key]


REGISTRY = {"DeformConv": deform_conv}
