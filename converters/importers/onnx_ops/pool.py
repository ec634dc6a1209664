"""MaxPool, AveragePool (ceil_mode, explicit padding, count_include_pad), GlobalAverage/MaxPool.

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


def pool(ctx: ImportContext, node: Any, a: dict) -> None:
    """MaxPool / AveragePool -> MAX_POOL_2D / AVERAGE_POOL_2D (with PAD and a count correction when needed)."""
    t = node.op_type
    x, lifted = as_2d(ctx, node, ctx.act(node, node.input[0]), "pooling")
    kernel = tuple(int(k) for k in a["kernel_shape"])
    strides = tuple(int(s) for s in a.get("strides", [1] * len(kernel)))
    if any(int(d) != 1 for d in a.get("dilations", [1] * len(kernel))):
        raise ctx.err(node, "dilated pooling is not supported")
    if lifted:
        kernel, strides = (1,) + kernel, (1,) + strides
    n, h, w, c = ctx.ir_shape(x)
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


def global_pool(ctx: ImportContext, node: Any, a: dict) -> None:
    """GlobalAveragePool -> MEAN over height and width; GlobalMaxPool -> a MAX_POOL_2D over them."""
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


REGISTRY = {"MaxPool": pool, "AveragePool": pool, "GlobalAveragePool": global_pool, "GlobalMaxPool": global_pool}
