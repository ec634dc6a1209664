"""MaxPool (also dilated), AveragePool (also dilated; ceil_mode, explicit padding, count_include_pad),
GlobalAverage/MaxPool.

A global average becomes MEAN rather than AVERAGE_POOL_2D: TFLite's int8 average pool keeps its
input's scale, while MEAN requantizes, so the (much narrower) mean gets a finer scale.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from converters.importers.onnx_ops.context import ImportContext
from converters.importers.onnx_ops.conv import as_2d, finish_2d, spatial_pads
from converters.ir import padding_mode, same_pads


def _out_len(size: int, k: int, s: int, p0: int, p1: int, ceil: bool) -> int:
    """ONNX pooling output length (a ceil-mode window must start inside the input or its begin padding)."""
    span = size + p0 + p1 - k
    o = (-(-span // s) if ceil else span // s) + 1
    if ceil and (o - 1) * s >= size + p0:
        o -= 1
    return o


def _counts(size: int, k: int, s: int, p0: int, out: int, lo: int, hi: int) -> np.ndarray:
    """Per output position, how many window taps fall inside ``[lo, hi)`` (input coordinates)."""
    starts = np.arange(out) * s - p0
    return np.array([max(0, min(st + k, hi) - max(st, lo)) for st in starts], np.float64)


def _dilated_counts(k: int, s: int, d: int, p0: int, out: int, lo: int, hi: int) -> np.ndarray:
    """Per output position, how many of the ``k`` taps (``dilation`` d apart) fall inside ``[lo, hi)``."""
    q = (np.arange(out) * s - p0)[:, None] + np.arange(k)[None, :] * d
    return ((q >= lo) & (q < hi)).sum(axis=1).astype(np.float64)


def pool(ctx: ImportContext, node: Any, a: dict) -> None:
    """MaxPool / AveragePool -> MAX_POOL_2D / AVERAGE_POOL_2D (with PAD and a count correction when needed)."""
    t = node.op_type
    x, lifted = as_2d(ctx, node, ctx.act(node, node.input[0]), "pooling")
    kernel = tuple(int(k) for k in a["kernel_shape"])
    strides = tuple(int(s) for s in a.get("strides", [1] * len(kernel)))
    dilations = tuple(int(d) for d in a.get("dilations", [1] * len(kernel)))
    if lifted:
        kernel, strides, dilations = (1,) + kernel, (1,) + strides, (1,) + dilations
    n, h, w, c = ctx.ir_shape(x)
    if any(d != 1 for d in dilations):
        dilated = _dilated_max_pool if t == "MaxPool" else _dilated_avg_pool
        dilated(ctx, node, a, x, lifted, kernel, strides, dilations)
        return
    pads = spatial_pads(ctx, node, a, (h, w), kernel, strides, (1, 1))
    ceil = bool(a.get("ceil_mode", 0))
    oh = _out_len(h, kernel[0], strides[0], pads[0], pads[2], ceil)
    ow = _out_len(w, kernel[1], strides[1], pads[1], pads[3], ceil)
    # padding the windows actually read, beyond the input (ceil mode can add some at the end)
    bottom = max((oh - 1) * strides[0] + kernel[0] - h - pads[0], 0)
    right = max((ow - 1) * strides[1] + kernel[1] - w - pads[1], 0)
    full = (pads[0], pads[1], bottom, right)
    out_shape = (n, oh, ow, c)
    out = node.output[0] if not lifted else ctx.tmp(f"{node.output[0]}/pool", out_shape)
    mode = padding_mode(full, (h, w), kernel, strides)
    base = {"kernel": kernel, "stride": strides, "act": "NONE", "count_include_pad": False}
    if t == "MaxPool":
        # padding_mode None: legalize pads with the lowest value, which max pooling ignores
        y = ctx.emit("MAX_POOL_2D", [x], out, dict(base, pads=full), node, shape=out_shape)
        if lifted:
            finish_2d(ctx, node, y, True)
        return
    include = bool(a.get("count_include_pad", 0))
    ch = _counts(h, kernel[0], strides[0], pads[0], oh, -pads[0] if include else 0, h + pads[2] if include else h)
    cw = _counts(w, kernel[1], strides[1], pads[1], ow, -pads[1] if include else 0, w + pads[3] if include else w)
    counts = np.outer(ch, cw)
    if not any(full):
        y = ctx.emit("AVERAGE_POOL_2D", [x], out, dict(base, pads=(0, 0, 0, 0)), node, shape=out_shape)
    elif mode == "SAME" and not include and full == same_pads((h, w), kernel, strides):
        y = ctx.emit("AVERAGE_POOL_2D", [x], out, dict(base, pads=full), node, shape=out_shape)
    else:
        padded = ctx.emit("PAD", [x], ctx.tmp(f"{node.output[0]}/padded", (n, h + full[0] + full[2],
                                                                              w + full[1] + full[3], c)),
                          {"pads": ((0, 0), (full[0], full[2]), (full[1], full[3]), (0, 0))}, node,
                          shape=(n, h + full[0] + full[2], w + full[1] + full[3], c))
        area = float(kernel[0] * kernel[1])
        if np.all(counts == area):
            y = ctx.emit("AVERAGE_POOL_2D", [padded], out, dict(base, pads=(0, 0, 0, 0)), node, shape=out_shape)
        else:
            if np.any(counts == 0):
                raise ctx.err(node, "a pooling window lies entirely in the padding")
            mid = ctx.emit("AVERAGE_POOL_2D", [padded], ctx.tmp(f"{node.output[0]}/sum", out_shape),
                           dict(base, pads=(0, 0, 0, 0)), node, shape=out_shape)
            corr = ctx.add_const(f"{node.output[0]}/count_correction", (area / counts).reshape(oh, ow, 1))
            y = ctx.emit("MUL", [mid, corr], out, {"act": "NONE"}, node, shape=out_shape)
    if lifted:
        finish_2d(ctx, node, y, True)


def _dilated_max_pool(ctx: ImportContext, node: Any, a: dict, x: str, lifted: bool, kernel: tuple[int, ...],
                      strides: tuple[int, ...], dilations: tuple[int, ...]) -> None:
    """Dilated MaxPool (TFLite's MAX_POOL_2D has no dilation). Max pooling is separable: the MAXIMUM of
    ``kw`` taps along the width, then of ``kh`` along the height. Tap ``i`` of output ``o`` reads input index
    ``o * stride - pad + i * dilation``; a tap in the padding reads the window's first (or last) real tap
    instead, which leaves the max unchanged and keeps every value finite (no -inf padding to calibrate).
    A tap is a STRIDED_SLICE when its indices are evenly spaced, else a GATHER; all share the input's int8
    parameters, so the result is exact."""
    n, h, w, c = ctx.ir_shape(x)
    span = tuple((k - 1) * d + 1 for k, d in zip(kernel, dilations))
    pads = spatial_pads(ctx, node, a, (h, w), kernel, strides, dilations)
    ceil = bool(a.get("ceil_mode", 0))
    out_hw = (_out_len(h, span[0], strides[0], pads[0], pads[2], ceil),
              _out_len(w, span[1], strides[1], pads[1], pads[3], ceil))
    name = node.output[0]
    out_shape = (n,) + out_hw + (c,)
    final = name if not lifted else ctx.tmp(f"{name}/pool", out_shape)

    def taps(axis: int) -> list[np.ndarray]:
        """Per kernel tap, the input index each output position reads along IR ``axis`` (1 or 2)."""
        size, k, d, s, p0 = (h, w)[axis - 1], kernel[axis - 1], dilations[axis - 1], strides[axis - 1], pads[axis - 1]
        starts = np.arange(out_hw[axis - 1]) * s - p0
        q = starts[:, None] + np.arange(k)[None, :] * d  # [out, k]
        real = (q >= 0) & (q < size)
        if not real.any(axis=1).all():
            raise ctx.err(node, "a pooling window lies entirely in the padding")
        first = np.where(real, q, np.iinfo(np.int64).max).min(axis=1, keepdims=True)
        last = np.where(real, q, -1).max(axis=1, keepdims=True)
        q = np.where(q < 0, first, np.where(q >= size, last, q))
        return [q[:, i] for i in range(k)]

    def max_of_taps(src: str, axis: int, shape: tuple[int, ...], dst: str) -> str:
        idx = taps(axis)
        picked = []
        for i, ix in enumerate(idx):
            tmp = dst if len(idx) == 1 else ctx.tmp(f"{dst}/tap{axis}_{i}", shape)
            step = np.diff(ix)
            if ix.size == 1 or (np.all(step == step[0]) and step[0] > 0):
                begin, end, stride = [0, 0, 0, 0], list(ctx.ir_shape(src)), [1, 1, 1, 1]
                begin[axis], end[axis] = int(ix[0]), int(ix[-1]) + 1
                stride[axis] = int(step[0]) if ix.size > 1 else 1
                picked.append(ctx.emit("STRIDED_SLICE", [src], tmp, {"begin": tuple(begin), "end": tuple(end),
                                                                   "strides": tuple(stride)}, node, shape=shape))
            else:
                picked.append(ctx.emit("GATHER", [src, ctx.add_const(f"{dst}/indices{axis}_{i}", ix, np.int32)], tmp,
                                       {"axis": axis}, node, shape=shape))
        cur = picked[0]
        for j, tap in enumerate(picked[1:], 1):
            to = dst if j == len(picked) - 1 else ctx.tmp(f"{dst}/max{axis}_{j}", shape)
            cur = ctx.emit("MAXIMUM", [cur, tap], to, {}, node, shape=shape)
        return cur

    cols = (n, h, out_hw[1], c)
    across = max_of_taps(x, 2, cols, ctx.tmp(f"{name}/cols", cols))
    y = max_of_taps(across, 1, out_shape, final)
    if lifted:
        finish_2d(ctx, node, y, True)


def _dilated_avg_pool(ctx: ImportContext, node: Any, a: dict, x: str, lifted: bool, kernel: tuple[int, ...],
                      strides: tuple[int, ...], dilations: tuple[int, ...]) -> None:
    """Dilated AveragePool (TFLite's AVERAGE_POOL_2D has no dilation) as one DEPTHWISE_CONV_2D with a
    dilation and every weight ``1 / (kh * kw)``: ``kh * kw`` MACs per output, like the pool itself, and
    1/area is exact in int8 (one per-channel scale, weights 127). The padding (explicit, SAME, and the
    end rows ``ceil_mode`` reads) is zeros, which add nothing to the sum; where a window holds fewer counted
    taps than its area (``count_include_pad=0`` near a border, or taps in the ceil-mode padding) a MUL by
    the constant ``area / count`` per output pixel rescales it. A dilated box's count is the product of
    its per-axis counts."""
    n, h, w, c = ctx.ir_shape(x)
    span = tuple((k - 1) * d + 1 for k, d in zip(kernel, dilations))
    pads = spatial_pads(ctx, node, a, (h, w), kernel, strides, dilations)
    ceil = bool(a.get("ceil_mode", 0))
    oh = _out_len(h, span[0], strides[0], pads[0], pads[2], ceil)
    ow = _out_len(w, span[1], strides[1], pads[1], pads[3], ceil)
    bottom = max((oh - 1) * strides[0] + span[0] - h - pads[0], 0)
    right = max((ow - 1) * strides[1] + span[1] - w - pads[1], 0)
    full = (pads[0], pads[1], bottom, right)
    include = bool(a.get("count_include_pad", 0))
    ch = _dilated_counts(kernel[0], strides[0], dilations[0], pads[0], oh,
                         -pads[0] if include else 0, h + pads[2] if include else h)
    cw = _dilated_counts(kernel[1], strides[1], dilations[1], pads[1], ow,
                         -pads[1] if include else 0, w + pads[3] if include else w)
    counts = np.outer(ch, cw)
    if np.any(counts == 0):
        raise ctx.err(node, "a pooling window lies entirely in the padding")
    name = node.output[0]
    out_shape = (n, oh, ow, c)
    area = float(kernel[0] * kernel[1])
    exact = bool(np.all(counts == area))
    final = name if not lifted else ctx.tmp(f"{name}/pool", out_shape)
    weights = ctx.add_const(f"{name}/window", np.full((1, kernel[0], kernel[1], c), 1.0 / area, np.float32))
    bias = ctx.add_const(f"{name}/window_bias", np.zeros(c, np.float32))
    y = ctx.emit("DEPTHWISE_CONV_2D", [x, weights, bias], final if exact else ctx.tmp(f"{name}/sum", out_shape),
                 {"stride": strides, "dilation": dilations, "pads": full, "act": "NONE", "multiplier": 1}, node,
                 shape=out_shape)
    if not exact:
        corr = ctx.add_const(f"{name}/count_correction", (area / counts).reshape(oh, ow, 1))
        y = ctx.emit("MUL", [y, corr], final, {"act": "NONE"}, node, shape=out_shape)
    if lifted:
        finish_2d(ctx, node, y, True)


def global_pool(ctx: ImportContext, node: Any, a: dict) -> None:
    """GlobalAveragePool -> MEAN over height and width; GlobalMaxPool -> a MAX_POOL_2D over them. A 5-D input
    ``[N, C, D, H, W]`` is pooled as ``[N, D, H * W, C]`` (RESHAPE + TRANSPOSE), whose ``[N, 1, 1, C]`` result
    is the ``[N, C, 1, 1, 1]`` output by a RESHAPE."""
    if len(ctx.src_shape(node, node.input[0])) == 5:
        _global_pool_3d(ctx, node)
        return
    x, lifted = as_2d(ctx, node, ctx.act(node, node.input[0]), "global pooling")
    n, h, w, c = ctx.ir_shape(x)
    out_shape = (n, 1, 1, c)
    out = node.output[0] if not lifted else ctx.tmp(f"{node.output[0]}/pool", out_shape)
    if node.op_type == "GlobalAveragePool":  # MEAN requantizes: the mean gets its own, finer int8 scale
        y = ctx.emit("MEAN", [x], out, {"axes": (1, 2), "keep_dims": True}, node, shape=out_shape)
    else:
        y = ctx.emit("MAX_POOL_2D", [x], out, {"kernel": (h, w), "stride": (h, w), "pads": (0, 0, 0, 0),
                                               "act": "NONE"}, node, shape=out_shape)
    if lifted:
        finish_2d(ctx, node, y, True)


def _global_pool_3d(ctx: ImportContext, node: Any) -> None:
    """GlobalAverage/MaxPool over the depth, height and width of a 5-D (ONNX layout) activation."""
    x = ctx.act(node, node.input[0])
    n, c, d, h, w = ctx.ir_shape(x)
    name = node.output[0]
    flat = ctx.emit("RESHAPE", [x], ctx.tmp(f"{name}/flat", (n, c, d, h * w)), {}, node, shape=(n, c, d, h * w))
    frames = ctx.transpose(flat, (0, 2, 3, 1), node=node)  # [n, d, h*w, c]
    out_shape = (n, 1, 1, c)
    if node.op_type == "GlobalAveragePool":
        y = ctx.emit("MEAN", [frames], ctx.tmp(f"{name}/pooled", out_shape), {"axes": (1, 2), "keep_dims": True},
                     node, shape=out_shape)
    else:
        y = ctx.emit("MAX_POOL_2D", [frames], ctx.tmp(f"{name}/pooled", out_shape),
                     {"kernel": (d, h * w), "stride": (d, h * w), "pads": (0, 0, 0, 0), "act": "NONE"}, node,
                     shape=out_shape)
    ctx.emit("RESHAPE", [y], name, {}, node, shape=(n, c, 1, 1, 1))


#: MaxPool / AveragePool are registered by :mod:`pool3d`, which sends 1-D and 2-D inputs to :func:`pool`
REGISTRY = {"GlobalAveragePool": global_pool, "GlobalMaxPool": global_pool}
