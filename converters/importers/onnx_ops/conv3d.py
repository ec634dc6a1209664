"""3-D Conv over ``[N, C, D, H, W]``, lowered onto the 2-D path of :mod:`conv` (TFLite Micro has no 3-D ops).

Conv on a 4-D or 3-D input goes straight to :func:`converters.importers.onnx_ops.conv.conv`. A 5-D input
(kept in ONNX layout in the IR) becomes depth "frames" ``[N, D, H*W, C]`` (RESHAPE + TRANSPOSE), zero-padded
along depth (PAD) when the ONNX pads say so. The depth taps are folded into channels: for each tap ``kd`` a
STRIDED_SLICE picks the frames ``d * stride_d + kd * dilation_d`` of every output depth ``d``, a CONCATENATION
stacks the taps along channels (group-major, so each group's channels stay contiguous), and the output
depths ride on the batch axis: one 2-D Conv over ``[N * D_out, kD * C, H, W]`` with weights
``w[o, c, kd] -> w2[o, kd * C_g + c]`` computes every output depth at once. Slices and concatenation share
their input's int8 parameters, so only the one convolution rounds. ConvTranspose on 5-D input is lowered the
same way by :mod:`converters.importers.onnx_ops.conv_transpose3d`.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from converters.importers.onnx_ops import conv as conv2d
from converters.importers.onnx_ops.context import ImportContext


def pads_3d(ctx: ImportContext, node: Any, a: dict, in_dhw: tuple[int, ...], kernel: tuple[int, ...],
            stride: tuple[int, ...], dilation: tuple[int, ...]) -> list[tuple[int, int]]:
    """``[(begin, end)]`` per spatial axis (D, H, W) from ONNX ``pads`` or ``auto_pad``."""
    auto = a.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto == "NOTSET":
        p = [int(v) for v in a.get("pads", [0] * 6)]
        if len(p) != 6:
            raise ctx.err(node, f"pads {p} do not have 6 values for a 3-D window")
        return [(p[i], p[i + 3]) for i in range(3)]
    if auto == "VALID":
        return [(0, 0)] * 3
    if auto not in ("SAME_UPPER", "SAME_LOWER"):
        raise ctx.err(node, f"auto_pad={auto} is not supported")
    out = []
    for i in range(3):
        o = -(-in_dhw[i] // stride[i])
        total = max((o - 1) * stride[i] + (kernel[i] - 1) * dilation[i] + 1 - in_dhw[i], 0)
        small, big = total // 2, total - total // 2
        out.append((small, big) if auto == "SAME_UPPER" else (big, small))
    return out


def triple(ctx: ImportContext, node: Any, a: dict, key: str) -> tuple[int, int, int]:
    """A 3-value attribute (``strides``, ``dilations``), 1s when absent; refuses a wrong length."""
    v = tuple(int(s) for s in a.get(key, [1, 1, 1]))
    if len(v) != 3:
        raise ctx.err(node, f"{key}={list(v)} does not have 3 values for a 3-D window")
    if any(s < 1 for s in v):
        raise ctx.err(node, f"{key}={list(v)} must be positive")
    return v  # type: ignore[return-value]


def to_frames(ctx: ImportContext, node: Any, x: str) -> str:
    """5-D activation ``x`` (ONNX layout ``[N, C, D, H, W]``) as 4-D depth frames ``[N, D, H*W, C]``."""
    n, c, d, h, w = ctx.ir_shape(x)
    flat = ctx.emit("RESHAPE", [x], ctx.tmp(f"{node.output[0]}/flat", (n, c, d, h * w)), {}, node,
                    shape=(n, c, d, h * w))
    return ctx.transpose(flat, (0, 2, 3, 1), node=node)


def from_frames(ctx: ImportContext, node: Any, y: str, n: int, depth: int) -> None:
    """Write batch-of-frames ``y`` (``[N * D, H, W, C]``) into the node's 5-D output ``[N, C, D, H, W]``."""
    _, h, w, c = ctx.ir_shape(y)
    frames = ctx.emit("RESHAPE", [y], ctx.tmp(f"{node.output[0]}/frames", (n, depth, h * w, c)), {}, node,
                      shape=(n, depth, h * w, c))
    chw = ctx.transpose(frames, (0, 3, 1, 2), node=node)
    want = (n, c, depth, h, w)
    # ceil_mode pooling: onnx's shape inference keeps a last window that starts in the end padding, which
    # onnxruntime (and the 2-D path) drop; the computed shape is the one the ops produce
    ctx.shapes[node.output[0]] = want
    ctx.emit("RESHAPE", [chw], node.output[0], {}, node, shape=want)


def sub_node(ctx: ImportContext, node: Any, inputs: list[str], src_shape: tuple[int, ...], attrs: dict,
             tag: str) -> Any:
    """A 2-D ONNX node standing in for part of 3-D ``node``: same op type and name (refusals name the
    original node), first input's ONNX shape registered as ``src_shape``, a fresh output name."""
    from onnx import helper

    ctx.shapes[inputs[0]] = tuple(int(v) for v in src_shape)
    out = ctx.tmp(f"{node.output[0]}/{tag}", (1,))  # a fresh name; the 2-D handler re-registers its shape
    return helper.make_node(node.op_type, inputs, [out], name=node.name or node.output[0], **attrs)


def conv3d(ctx: ImportContext, node: Any, a: dict) -> None:
    """3-D Conv -> frames, depth PAD, one STRIDED_SLICE per (group, depth tap), CONCATENATION, 2-D Conv
    over ``N * D_out`` frames, back to ``[N, O, D, H, W]``."""
    w = np.asarray(ctx.const(node, node.input[1]), np.float32)
    x = ctx.act(node, node.input[0])
    n, c, d, h, wd = ctx.ir_shape(x)
    if w.ndim != 5:
        raise ctx.err(node, f"weight shape {w.shape} does not match a 3-D convolution")
    group = int(a.get("group", 1))
    if group < 1 or c != w.shape[1] * group or w.shape[0] % group:
        raise ctx.err(node, f"input has {c} channels but the weights {w.shape} with group={group} "
                            f"expect {w.shape[1] * group}")
    o_ch, cg, kd, kh, kw = w.shape
    stride = triple(ctx, node, a, "strides")
    dilation = triple(ctx, node, a, "dilations")
    pads = pads_3d(ctx, node, a, (d, h, wd), (kd, kh, kw), stride, dilation)
    (pd0, pd1), (ph0, ph1), (pw0, pw1) = pads
    dp = d + pd0 + pd1
    d_out = (dp - ((kd - 1) * dilation[0] + 1)) // stride[0] + 1
    if d_out < 1:
        raise ctx.err(node, f"the depth kernel ({kd}, dilation {dilation[0]}) is larger than the padded depth {dp}")
    name = node.output[0]
    frames = to_frames(ctx, node, x)  # [n, d, h*w, c]
    hw = h * wd
    if pd0 or pd1:
        frames = ctx.emit("PAD", [frames], ctx.tmp(f"{name}/depth_padded", (n, dp, hw, c)),
                          {"pads": ((0, 0), (pd0, pd1), (0, 0), (0, 0))}, node, shape=(n, dp, hw, c))
    parts = []
    for g in range(group):
        for k in range(kd):
            begin = (0, k * dilation[0], 0, g * cg)
            end = (n, k * dilation[0] + (d_out - 1) * stride[0] + 1, hw, (g + 1) * cg)
            if begin == (0, 0, 0, 0) and end == (n, dp, hw, c) and stride[0] == 1:
                parts.append(frames)
                continue
            parts.append(ctx.emit("STRIDED_SLICE", [frames], ctx.tmp(f"{name}/tap{g}_{k}", (n, d_out, hw, cg)),
                                  {"begin": begin, "end": end, "strides": (1, stride[0], 1, 1)}, node,
                                  shape=(n, d_out, hw, cg)))
    taps = parts[0] if len(parts) == 1 else ctx.emit(
        "CONCATENATION", parts, ctx.tmp(f"{name}/taps", (n, d_out, hw, kd * c)), {"axis": 3, "act": "NONE"}, node,
        shape=(n, d_out, hw, kd * c))
    x2 = ctx.emit("RESHAPE", [taps], ctx.tmp(f"{name}/as_2d", (n * d_out, h, wd, kd * c)), {}, node,
                  shape=(n * d_out, h, wd, kd * c))
    w2 = np.ascontiguousarray(w.transpose(0, 2, 1, 3, 4).reshape(o_ch, kd * cg, kh, kw))
    w_key = ctx._fresh(f"{name}/weights_2d")  # the 2-D handler reads the folded weights as an ONNX constant
    ctx.consts[w_key] = w2
    inputs = [x2, w_key] + ([node.input[2]] if len(node.input) > 2 and node.input[2] else [])
    attrs = {"group": group, "kernel_shape": [kh, kw], "strides": list(stride[1:]), "dilations": list(dilation[1:]),
             "pads": [ph0, pw0, ph1, pw1]}
    two = sub_node(ctx, node, inputs, (n * d_out, kd * c, h, wd), attrs, "conv2d")
    try:
        conv2d.conv(ctx, two, attrs)
    finally:
        del ctx.consts[w_key]
    from_frames(ctx, node, ctx.name(two.output[0]), n, d_out)


def conv_any(ctx: ImportContext, node: Any, a: dict) -> None:
    """Conv: 3-D (5-D input) here, 1-D and 2-D in :func:`converters.importers.onnx_ops.conv.conv`."""
    if len(ctx.src_shape(node, node.input[0])) == 5:
        conv3d(ctx, node, a)
    else:
        conv2d.conv(ctx, node, a)


REGISTRY = {"Conv": conv_any}
