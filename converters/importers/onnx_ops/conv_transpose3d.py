"""ConvTranspose beyond :func:`converters.importers.onnx_ops.conv.conv_transpose`: 3-D (5-D input) lowered
onto the 2-D op, dilations, and an ``output_shape`` past the full output.

3-D: output depth ``z`` of the full (unpadded) result sums, over the depth taps ``kd``, the 2-D transposed
convolution of input frame ``(z - kd * dilation_d) / stride_d`` (when that is a whole frame index inside
the input) with the weights' slice ``kd``. So for every output depth (after the ONNX begin padding) and tap,
a constant GATHER picks that input frame, or an all-zero frame appended by PAD when there is none; the
``kD`` gathers are stacked along channels (CONCATENATION) and the output depths ride on the batch axis: one
2-D ConvTranspose over ``[N * D_out, kD * C, H, W]`` with weights ``w[c, o, kd] -> w2[kd * C + c, o]``
computes every output depth, bias included once. Gathers, PAD and CONCATENATION share their input's int8
parameters, so only the one transposed convolution rounds. Its cost is ``D_out / D`` (about the depth
stride) times a direct 3-D transposed convolution: the zero frames are multiplied too.

Dilation: the kernel is dilated (zeros between taps, ``(k - 1) * d + 1`` wide), which is the same map; the
zero taps cost MACs (``d`` times more per axis) but keep one TRANSPOSE_CONV.

``output_shape`` past the full output: the begin padding follows ONNX's rule (``total - total // 2`` unless
SAME_UPPER), so an output one pixel larger than the full one starts at 0 and its last pixel gets only the
bias (:func:`conv.conv_transpose` grows the input at the end). A negative begin padding is refused.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from converters.importers.onnx_ops import conv as conv2d
from converters.importers.onnx_ops.context import ImportContext
from converters.importers.onnx_ops.conv3d import from_frames, sub_node, to_frames


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _begin_pads(ctx: ImportContext, node: Any, a: dict, in_sizes: tuple[int, ...], kernel: tuple[int, ...],
                stride: tuple[int, ...], dilation: tuple[int, ...], want: tuple[int, ...]) -> list[int]:
    """ONNX begin padding per spatial axis (may be negative: the output starts before the full output)."""
    k = len(in_sizes)
    auto = _text(a.get("auto_pad", "NOTSET"))
    if auto == "NOTSET" and "output_shape" not in a:
        p = [int(v) for v in a.get("pads", [0] * (2 * k))]
        if len(p) != 2 * k:
            raise ctx.err(node, f"pads {p} do not have {2 * k} values")
        return p[:k]
    if auto not in ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"):
        raise ctx.err(node, f"auto_pad={auto} is not supported")
    if auto == "VALID" and "output_shape" not in a:
        return [0] * k
    out_pad = [int(v) for v in a.get("output_padding", [0] * k)]
    begin = []
    for i in range(k):
        total = stride[i] * (in_sizes[i] - 1) + out_pad[i] + (kernel[i] - 1) * dilation[i] + 1 - want[i]
        begin.append(total // 2 if auto == "SAME_UPPER" else total - total // 2)
    return begin


def _dilate(w: np.ndarray, dilation: tuple[int, ...]) -> np.ndarray:
    """Weights ``[C_in, C_out/g, k...]`` with ``d - 1`` zeros between the taps of each spatial axis."""
    if all(d == 1 for d in dilation):
        return w
    spatial = w.shape[2:]
    out = np.zeros(w.shape[:2] + tuple((k - 1) * d + 1 for k, d in zip(spatial, dilation)), w.dtype)
    out[(slice(None), slice(None)) + tuple(slice(None, None, d) for d in dilation)] = w
    return out


def _call_2d(ctx: ImportContext, node: Any, x: str, w: np.ndarray, bias: Any, a: dict, in_sizes: tuple[int, ...],
             want: tuple[int, ...], src_shape: tuple[int, ...], tag: str) -> str:
    """Run :func:`conv.conv_transpose` on a stand-in node (input ``x`` of ONNX shape ``src_shape``, weights
    ``w`` undilated by the caller, output of ONNX spatial size ``want``) with explicit pads; returns its IR
    output (``tag`` names the stand-in's output)."""
    k = len(in_sizes)
    stride = tuple(int(s) for s in a.get("strides", [1] * k))
    dilation = tuple(int(d) for d in a.get("dilations", [1] * k))
    kernel = tuple(int(v) for v in w.shape[2:])
    begin = _begin_pads(ctx, node, a, in_sizes, kernel, stride, dilation, want)
    w = _dilate(w, dilation)
    if any(b < 0 for b in begin):
        raise ctx.err(node, f"an output starting before the full output (begin padding {begin}) is not supported")
    attrs = {"strides": list(stride), "pads": list(begin) + [0] * k, "group": int(a.get("group", 1))}
    w_key = ctx._fresh(f"{node.output[0]}/weights_{tag}")
    ctx.consts[w_key] = np.ascontiguousarray(w)
    inputs = [x, w_key] + ([bias] if bias else [])
    two = sub_node(ctx, node, inputs, src_shape, attrs, tag)
    ctx.shapes[two.output[0]] = (src_shape[0], w.shape[1] * attrs["group"]) + tuple(want)
    try:
        conv2d.conv_transpose(ctx, two, attrs)
    finally:
        del ctx.consts[w_key]
    return ctx.name(two.output[0])


def _needs_help(ctx: ImportContext, node: Any, a: dict, w: np.ndarray, in_sizes: tuple[int, ...],
                want: tuple[int, ...]) -> bool:
    """True when the 2-D handler would refuse: dilations, or a negative begin padding."""
    k = len(in_sizes)
    dilation = tuple(int(d) for d in a.get("dilations", [1] * k))
    if any(d != 1 for d in dilation):
        return True
    stride = tuple(int(s) for s in a.get("strides", [1] * k))
    begin = _begin_pads(ctx, node, a, in_sizes, tuple(w.shape[2:]), stride, dilation, want)
    if "output_shape" in a or _text(a.get("auto_pad", "NOTSET")) != "NOTSET":
        # the 2-D handler's own rule (the odd pixel at the end unless SAME_LOWER) decides whether it refuses
        full = [stride[i] * (in_sizes[i] - 1) + int(w.shape[2 + i]) for i in range(k)]
        lower = _text(a.get("auto_pad", "NOTSET")) == "SAME_LOWER"
        begin = [(f - t) // 2 if not lower else (f - t) - (f - t) // 2 for f, t in zip(full, want)]
    return any(b < 0 for b in begin)


def conv_transpose3d(ctx: ImportContext, node: Any, a: dict) -> None:
    """5-D ConvTranspose -> depth frames, per-tap constant GATHERs, CONCATENATION, one 2-D ConvTranspose over
    ``N * D_out`` frames, back to ``[N, O, D, H, W]``."""
    w = np.asarray(ctx.const(node, node.input[1]), np.float32)
    x = ctx.act(node, node.input[0])
    n, c, d, h, wd = ctx.ir_shape(x)
    if w.ndim != 5 or w.shape[0] != c:
        raise ctx.err(node, f"weight shape {w.shape} does not match a 3-D transposed convolution of {c} channels")
    if int(a.get("group", 1)) != 1:
        raise ctx.err(node, "grouped 3-D ConvTranspose is not supported (group=1 only)")
    for key in ("strides", "dilations"):
        if len(a.get(key, [1, 1, 1])) != 3 or any(int(v) < 1 for v in a.get(key, [1, 1, 1])):
            raise ctx.err(node, f"{key}={list(a.get(key))} must be 3 positive values")
    kd = int(w.shape[2])
    sd, dd = int(a.get("strides", [1, 1, 1])[0]), int(a.get("dilations", [1, 1, 1])[0])
    want = tuple(int(v) for v in ctx.src_shape(node, node.output[0]))
    o_ch, d_out = want[1], want[2]
    begin = _begin_pads(ctx, node, a, (d, h, wd), tuple(w.shape[2:]), (sd, 1, 1), (dd, 1, 1), want[2:])
    name = node.output[0]
    frames = to_frames(ctx, node, x)  # [n, d, h*w, c]
    idx = np.full((kd, d_out), d, np.int64)  # d: the zero frame
    for t in range(kd):
        q = np.arange(d_out) + begin[0] - t * dd
        ok = (q % sd == 0) & (q >= 0) & (q // sd < d)
        idx[t, ok] = q[ok] // sd
    if np.any(idx == d):
        frames = ctx.emit("PAD", [frames], ctx.tmp(f"{name}/zero_frame", (n, d + 1, h * wd, c)),
                          {"pads": ((0, 0), (0, 1), (0, 0), (0, 0))}, node, shape=(n, d + 1, h * wd, c))
    taps = [ctx.emit("GATHER", [frames, ctx.add_const(f"{name}/frames{t}", idx[t], np.int32)],
                     ctx.tmp(f"{name}/tap{t}", (n, d_out, h * wd, c)), {"axis": 1}, node,
                     shape=(n, d_out, h * wd, c)) for t in range(kd)]
    stacked = taps[0] if kd == 1 else ctx.emit(
        "CONCATENATION", taps, ctx.tmp(f"{name}/taps", (n, d_out, h * wd, kd * c)), {"axis": 3, "act": "NONE"},
        node, shape=(n, d_out, h * wd, kd * c))
    x2 = ctx.emit("RESHAPE", [stacked], ctx.tmp(f"{name}/as_2d", (n * d_out, h, wd, kd * c)), {}, node,
                  shape=(n * d_out, h, wd, kd * c))
    w2 = w.transpose(2, 0, 1, 3, 4).reshape(kd * c, o_ch, w.shape[3], w.shape[4])
    a2 = {k: list(v)[1:] for k, v in a.items() if k in ("strides", "dilations", "output_padding", "output_shape")}
    if "pads" in a:
        p = [int(v) for v in a["pads"]]
        a2["pads"] = [p[1], p[2], p[4], p[5]]
    if "auto_pad" in a:
        a2["auto_pad"] = a["auto_pad"]
    bias = node.input[2] if len(node.input) > 2 and node.input[2] else ""
    y = _call_2d(ctx, node, x2, w2, bias, a2, (h, wd), want[3:], (n * d_out, kd * c, h, wd), "convt2d")
    from_frames(ctx, node, y, n, d_out)


def conv_transpose_any(ctx: ImportContext, node: Any, a: dict) -> None:
    """ConvTranspose: 3-D here; 1-D/2-D with dilations or a negative begin padding normalized here, then
    :func:`converters.importers.onnx_ops.conv.conv_transpose` (which takes every other 1-D/2-D case)."""
    shape = tuple(int(v) for v in ctx.src_shape(node, node.input[0]))
    if len(shape) == 5:
        conv_transpose3d(ctx, node, a)
        return
    w = np.asarray(ctx.const(node, node.input[1]), np.float32)
    want = tuple(int(v) for v in ctx.src_shape(node, node.output[0]))
    if len(shape) not in (3, 4) or w.ndim != len(shape) or not _needs_help(ctx, node, a, w, shape[2:], want[2:]):
        conv2d.conv_transpose(ctx, node, a)
        return
    x = ctx.act(node, node.input[0])
    bias = node.input[2] if len(node.input) > 2 and node.input[2] else ""
    y = _call_2d(ctx, node, x, w, bias, a, shape[2:], want[2:], shape, "convt")
    ctx.alias[node.output[0]] = y


REGISTRY = {"ConvTranspose": conv_transpose_any}
