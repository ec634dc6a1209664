"""3-D MaxPool / AveragePool over ``[N, C, D, H, W]`` as two 2-D poolings of :func:`pool.pool`.

A box window is separable: the 3-D max is the max over the depth window of the per-frame (H, W) maxima,
and the 3-D average is the depth average of the per-frame (H, W) averages, because the count of real
(or, with ``count_include_pad``, real-or-pad) taps of a box is the product of its per-axis counts. So:
frames ``[N * D, H, W, C]`` pooled over (H, W), then ``[N, D, H_out * W_out, C]`` pooled with a
``(kD, 1)`` window over (D, H_out * W_out); each stage takes the ONNX pads, strides, dilations,
``ceil_mode`` and ``count_include_pad`` of its axes, so padding and count semantics are exactly those of
the 2-D path (a dilated box is separable too). A stage whose window is one tap with stride 1 and no padding
is skipped.
Inputs of other ranks go straight to :func:`converters.importers.onnx_ops.pool.pool`.
"""
from __future__ import annotations

from typing import Any

from converters.importers.onnx_ops import pool as pool2d
from converters.importers.onnx_ops.context import ImportContext
from converters.importers.onnx_ops.conv3d import (
    from_frames,
    pads_3d,
    sub_node,
    to_frames,
    triple,
)


def _stage(ctx: ImportContext, node: Any, x: str, src_shape: tuple[int, ...], kernel: tuple[int, int],
           stride: tuple[int, int], dilation: tuple[int, int], pads: list[tuple[int, int]], a: dict,
           tag: str) -> str:
    """One 2-D pooling of 4-D IR activation ``x`` (ONNX shape ``src_shape``); returns its IR output."""
    attrs: dict = {"kernel_shape": list(kernel), "strides": list(stride),
                   "pads": [pads[0][0], pads[1][0], pads[0][1], pads[1][1]],
                   "ceil_mode": int(a.get("ceil_mode", 0))}
    attrs["dilations"] = list(dilation)
    if node.op_type != "MaxPool":
        attrs["count_include_pad"] = int(a.get("count_include_pad", 0))
    two = sub_node(ctx, node, [x], src_shape, attrs, tag)
    pool2d.pool(ctx, two, attrs)
    return ctx.name(two.output[0])


def pool3d(ctx: ImportContext, node: Any, a: dict) -> None:
    """3-D MaxPool / AveragePool -> a 2-D pooling over (H, W) per depth frame, then one over depth."""
    if len(node.output) > 1 and node.output[1]:
        raise ctx.err(node, "the Indices output of MaxPool is not supported")
    x = ctx.act(node, node.input[0])
    n, c, d, h, w = ctx.ir_shape(x)
    kernel = tuple(int(k) for k in a["kernel_shape"])
    if len(kernel) != 3:
        raise ctx.err(node, f"kernel_shape={list(kernel)} does not have 3 values for a 5-D input")
    stride = triple(ctx, node, a, "strides")
    dilation = triple(ctx, node, a, "dilations")
    pads = pads_3d(ctx, node, a, (d, h, w), kernel, stride, dilation)
    frames = to_frames(ctx, node, x)  # [n, d, h*w, c]
    y = ctx.emit("RESHAPE", [frames], ctx.tmp(f"{node.output[0]}/per_frame", (n * d, h, w, c)), {}, node,
                 shape=(n * d, h, w, c))
    if kernel[1:] != (1, 1) or stride[1:] != (1, 1) or any(pads[1]) or any(pads[2]):
        y = _stage(ctx, node, y, (n * d, c, h, w), kernel[1:], stride[1:], dilation[1:], pads[1:], a, "pool_hw")
    _, ho, wo, _ = ctx.ir_shape(y)
    y = ctx.emit("RESHAPE", [y], ctx.tmp(f"{node.output[0]}/depth_frames", (n, d, ho * wo, c)), {}, node,
                 shape=(n, d, ho * wo, c))
    if kernel[0] != 1 or stride[0] != 1 or any(pads[0]):
        y = _stage(ctx, node, y, (n, c, d, ho * wo), (kernel[0], 1), (stride[0], 1), (dilation[0], 1),
                   [pads[0], (0, 0)], a, "pool_d")
    d_out = ctx.ir_shape(y)[1]
    y = ctx.emit("RESHAPE", [y], ctx.tmp(f"{node.output[0]}/pooled", (n * d_out, ho, wo, c)), {}, node,
                 shape=(n * d_out, ho, wo, c))
    from_frames(ctx, node, y, n, d_out)


def pool_any(ctx: ImportContext, node: Any, a: dict) -> None:
    """MaxPool / AveragePool: 3-D (5-D input) here, 1-D and 2-D in :func:`converters.importers.onnx_ops.pool.pool`."""
    if len(ctx.src_shape(node, node.input[0])) == 5:
        pool3d(ctx, node, a)
    else:
        pool2d.pool(ctx, node, a)


REGISTRY = {"MaxPool": pool_any, "AveragePool": pool_any}
