"""Conv (plain, depthwise, grouped, 1-D) and ConvTranspose."""
from __future__ import annotations

from typing import Any

import numpy as np

from converters.importers.onnx_ops.context import ImportContext
from converters.ir import padding_mode

#: ONNX auto_pad values that mean "explicit pads"
NOTSET = (b"NOTSET", "NOTSET")


def spatial_pads(ctx: ImportContext, node: Any, a: dict, in_hw: tuple[int, ...], kernel: tuple[int, ...],
                 stride: tuple[int, ...], dilation: tuple[int, ...]) -> tuple[int, int, int, int]:
    """``(top, left, bottom, right)`` from ONNX ``pads`` or ``auto_pad`` for a 2-D window op."""
    auto = a.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto == "NOTSET":
        p = [int(v) for v in a.get("pads", [0] * (2 * len(kernel)))]
        if len(p) == 2:  # 1-D op lifted to 2-D
            return (0, p[0], 0, p[1])
        return (p[0], p[1], p[2], p[3])
    if auto == "VALID":
        return (0, 0, 0, 0)
    if auto not in ("SAME_UPPER", "SAME_LOWER"):
        raise ctx.err(node, f"auto_pad={auto} is not supported")
    out = []
    for i in range(len(kernel)):
        o = -(-in_hw[i] // stride[i])
        total = max((o - 1) * stride[i] + (kernel[i] - 1) * dilation[i] + 1 - in_hw[i], 0)
        small, big = total // 2, total - total // 2
        out.append((small, big) if auto == "SAME_UPPER" else (big, small))
    if len(out) == 1:
        return (0, out[0][0], 0, out[0][1])
    return (out[0][0], out[1][0], out[0][1], out[1][1])


def as_2d(ctx: ImportContext, node: Any, x: str, what: str) -> tuple[str, bool]:
    """A 4-D NHWC view of ``x``: 1-D ops (``[N, C, L]``) get a height of 1. Returns (tensor, lifted)."""
    shape = ctx.src_shape(node, node.input[0])
    if len(shape) == 4:
        return x, False
    if len(shape) == 3:
        n, c, length = shape
        return ctx.reshape(x, (n, c, 1, length), node=node), True
    raise ctx.err(node, f"{what} on a {len(shape)}-D input {shape} is not supported (2-D or 1-D {what} only)")


def finish_2d(ctx: ImportContext, node: Any, y4: str, lifted: bool) -> None:
    """Write the 4-D result ``y4`` into the node's output, dropping the height of a lifted 1-D op."""
    out = node.output[0]
    if lifted:
        ctx.reshape(y4, ctx.src_shape(node, out), out, node)
    else:
        ctx.alias[out] = y4


def conv(ctx: ImportContext, node: Any, a: dict) -> None:
    """Conv -> CONV_2D, DEPTHWISE_CONV_2D, or per-group CONV_2D + CONCATENATION."""
    w = np.asarray(ctx.const(node, node.input[1]), np.float32)
    x, lifted = as_2d(ctx, node, ctx.act(node, node.input[0]), "convolution")
    if lifted:
        if w.ndim != 3:
            raise ctx.err(node, f"weight shape {w.shape} does not match a 1-D convolution")
        w = w[:, :, None, :]
        a = dict(a, strides=[1] + list(a.get("strides", [1])), dilations=[1] + list(a.get("dilations", [1])),
                 kernel_shape=[1] + list(a.get("kernel_shape", [w.shape[3]])))
    if w.ndim != 4:
        raise ctx.err(node, f"only 1-D and 2-D convolutions are supported (weight shape {w.shape})")
    n, h, wd, in_ch = ctx.ir_shape(x)
    o_ch = w.shape[0]
    group = int(a.get("group", 1))
    if in_ch != w.shape[1] * group:
        raise ctx.err(node, f"input has {in_ch} channels but the weights {w.shape} with group={group} "
                            f"expect {w.shape[1] * group}")
    bias = (np.asarray(ctx.const(node, node.input[2]), np.float32).reshape(-1)
            if len(node.input) > 2 and node.input[2] else np.zeros(o_ch, np.float32))
    stride = tuple(int(s) for s in a.get("strides", [1, 1]))
    dilation = tuple(int(d) for d in a.get("dilations", [1, 1]))
    kernel = (w.shape[2], w.shape[3])
    pads = spatial_pads(ctx, node, a, (h, wd), kernel, stride, dilation)
    if lifted and a.get("auto_pad", b"NOTSET") in NOTSET:
        p = [int(v) for v in a.get("pads", [0, 0])]
        pads = (0, p[0], 0, p[1])
    attrs = {"stride": stride, "dilation": dilation, "pads": pads, "act": "NONE"}
    oh = (h + pads[0] + pads[2] - ((kernel[0] - 1) * dilation[0] + 1)) // stride[0] + 1
    ow = (wd + pads[1] + pads[3] - ((kernel[1] - 1) * dilation[1] + 1)) // stride[1] + 1
    out_shape = (n, oh, ow, o_ch)
    out = node.output[0] if not lifted else None
    if group == 1:
        y = ctx.emit("CONV_2D", [x, ctx.add_const(f"{node.output[0]}/weights", w.transpose(0, 2, 3, 1)),
                                 ctx.add_const(f"{node.output[0]}/bias", bias)],
                     out or ctx.tmp(f"{node.output[0]}/conv", out_shape), attrs, node, shape=out_shape)
    elif group == in_ch and w.shape[1] == 1:
        y = ctx.emit("DEPTHWISE_CONV_2D", [x, ctx.add_const(f"{node.output[0]}/weights", w.transpose(1, 2, 3, 0)),
                                           ctx.add_const(f"{node.output[0]}/bias", bias)],
                     out or ctx.tmp(f"{node.output[0]}/conv", out_shape),
                     dict(attrs, multiplier=o_ch // in_ch), node, shape=out_shape)
    else:
        y = grouped(ctx, node, x, w, bias, group, attrs, out_shape, out)
    if lifted:
        finish_2d(ctx, node, y, True)


def grouped(ctx: ImportContext, node: Any, x: str, w: np.ndarray, bias: np.ndarray, group: int, attrs: dict,
            out_shape: tuple[int, ...], out: Any) -> str:
    """Grouped convolution as one CONV_2D per group over a channel slice, then CONCATENATION.

    TFLite Micro's CONV_2D does not run grouped filters, so the split form is the one both runtimes take.
    """
    n, h, wd, in_ch = ctx.ir_shape(x)
    cin, cout = in_ch // group, w.shape[0] // group
    t, l, b, r = attrs["pads"]
    if padding_mode(attrs["pads"], (h, wd), (w.shape[2], w.shape[3]), attrs["stride"], attrs["dilation"]) is None:
        # pad once here rather than once per group
        h, wd = h + t + b, wd + l + r
        x = ctx.emit("PAD", [x], ctx.tmp(f"{node.output[0]}/padded", (n, h, wd, in_ch)),
                     {"pads": ((0, 0), (t, b), (l, r), (0, 0))}, node, shape=(n, h, wd, in_ch))
        attrs = dict(attrs, pads=(0, 0, 0, 0))
    parts = []
    for g in range(group):
        xs = ctx.emit("STRIDED_SLICE", [x], ctx.tmp(f"{node.output[0]}/group{g}_in", (n, h, wd, cin)),
                      {"begin": (0, 0, 0, g * cin), "end": (n, h, wd, (g + 1) * cin), "strides": (1, 1, 1, 1)},
                      node, shape=(n, h, wd, cin))
        wg = w[g * cout:(g + 1) * cout].transpose(0, 2, 3, 1)
        part_shape = out_shape[:3] + (cout,)
        parts.append(ctx.emit("CONV_2D", [xs, ctx.add_const(f"{node.output[0]}/weights{g}", wg),
                                          ctx.add_const(f"{node.output[0]}/bias{g}", bias[g * cout:(g + 1) * cout])],
                              ctx.tmp(f"{node.output[0]}/group{g}", part_shape), dict(attrs), node, shape=part_shape))
    return ctx.emit("CONCATENATION", parts, out or ctx.tmp(f"{node.output[0]}/conv", out_shape),
                    {"axis": 3, "act": "NONE"}, node, shape=out_shape)


def conv_transpose(ctx: ImportContext, node: Any, a: dict) -> None:
    """ConvTranspose (2-D, or 1-D with a height of 1) -> TRANSPOSE_CONV (VALID, full size; one per group,
    concatenated, when grouped) then a crop for the ONNX pads / output_padding / output_shape."""
    w = np.asarray(ctx.const(node, node.input[1]), np.float32)  # [C_in, C_out/g, kh, kw]
    x, lifted = as_2d(ctx, node, ctx.act(node, node.input[0]), "transposed convolution")
    if lifted and w.ndim == 3:  # 1-D: a height of 1
        w = w[:, :, None, :]
        p1 = [int(v) for v in a.get("pads", [0, 0])]
        a = dict(a, strides=[1] + list(a.get("strides", [1])), dilations=[1] + list(a.get("dilations", [1])),
                 pads=[0, p1[0], 0, p1[1]], **({"output_shape": [1] + list(a["output_shape"])}
                                               if "output_shape" in a else {}))
    if w.ndim != 4 or len(ctx.ir_shape(x)) != 4:
        raise ctx.err(node, f"only 2-D transposed convolutions are supported (weight shape {w.shape})")
    if any(int(d) != 1 for d in a.get("dilations", [1, 1])):
        raise ctx.err(node, "dilated ConvTranspose is not supported")
    group = int(a.get("group", 1))
    n, h, wd, in_ch = ctx.ir_shape(x)
    if in_ch != w.shape[0] or in_ch % group:
        raise ctx.err(node, f"input has {in_ch} channels but the weights {w.shape} with group={group} do not match")
    cout_g = w.shape[1]
    o_ch = cout_g * group
    bias = (np.asarray(ctx.const(node, node.input[2]), np.float32).reshape(-1)
            if len(node.input) > 2 and node.input[2] else np.zeros(o_ch, np.float32))
    stride = tuple(int(s) for s in a.get("strides", [1, 1]))
    kh, kw = w.shape[2], w.shape[3]
    full = ((h - 1) * stride[0] + kh, (wd - 1) * stride[1] + kw)
    want = ctx.src_shape(node, node.output[0])
    want_hw = (1, want[2]) if lifted else (want[2], want[3])
    final = ctx.tmp(f"{node.output[0]}/2d", (n,) + want_hw + (o_ch,)) if lifted else node.output[0]
    auto = a.get("auto_pad", b"NOTSET")
    if auto in NOTSET and "output_shape" not in a:
        p = [int(v) for v in a.get("pads", [0, 0, 0, 0])]
        begin = (p[0], p[1])
    else:  # SAME_* / output_shape: ONNX puts the odd pixel at the end for SAME_UPPER
        totals = [full[i] - want_hw[i] for i in range(2)]
        upper = auto not in (b"SAME_LOWER", "SAME_LOWER")
        begin = tuple(t // 2 if upper else t - t // 2 for t in totals)
    if any(b < 0 for b in begin):
        raise ctx.err(node, f"output_padding/pads giving {want_hw} from a full output of {full} are not supported")
    # output_padding past the full output: those pixels get no tap, only the bias. Zero input rows/columns
    # at the end grow the full output by a stride each, without changing what is already there.
    extra = tuple(max(0, -(-(begin[i] + want_hw[i] - full[i]) // stride[i])) for i in range(2))
    if any(extra):
        h, wd = h + extra[0], wd + extra[1]
        x = ctx.emit("PAD", [x], ctx.tmp(f"{node.output[0]}/grown", (n, h, wd, in_ch)),
                     {"pads": ((0, 0), (0, extra[0]), (0, extra[1]), (0, 0))}, node, shape=(n, h, wd, in_ch))
        full = ((h - 1) * stride[0] + kh, (wd - 1) * stride[1] + kw)
    full_shape = (n, full[0], full[1], o_ch)
    crop = (begin[0], begin[1]) != (0, 0) or want_hw != full
    y_name = ctx.tmp(f"{node.output[0]}/full", full_shape) if crop else final
    cin = in_ch // group
    parts = []
    for g in range(group):
        xg = x
        if group > 1:
            xg = ctx.emit("STRIDED_SLICE", [x], ctx.tmp(f"{node.output[0]}/group{g}_in", (n, h, wd, cin)),
                          {"begin": (0, 0, 0, g * cin), "end": (n, h, wd, (g + 1) * cin), "strides": (1, 1, 1, 1)},
                          node, shape=(n, h, wd, cin))
        wt = w[g * cin:(g + 1) * cin].transpose(1, 2, 3, 0)  # [out, kh, kw, in]
        part_shape = full_shape[:3] + (cout_g,)
        parts.append(ctx.emit("TRANSPOSE_CONV", [xg, ctx.add_const(f"{node.output[0]}/weights{g}", wt),
                                                 ctx.add_const(f"{node.output[0]}/bias{g}",
                                                               bias[g * cout_g:(g + 1) * cout_g])],
                              y_name if group == 1 else ctx.tmp(f"{node.output[0]}/group{g}", part_shape),
                              {"stride": stride}, node, shape=part_shape))
    y = parts[0] if group == 1 else ctx.emit("CONCATENATION", parts, y_name, {"axis": 3, "act": "NONE"}, node,
                                             shape=full_shape)
    if crop:
        ctx.emit("STRIDED_SLICE", [y], final,
                 {"begin": (0, begin[0], begin[1], 0),
                  "end": (n, begin[0] + want_hw[0], begin[1] + want_hw[1], o_ch), "strides": (1, 1, 1, 1)}, node,
                 shape=(n,) + want_hw + (o_ch,))
    if lifted:
        finish_2d(ctx, node, final, True)


#: Conv is registered by :mod:`conv3d`, which sends 1-D and 2-D inputs to :func:`conv`; ConvTranspose by
#: :mod:`conv_transpose3d`, which sends the 1-D and 2-D cases it does not normalize to :func:`conv_transpose`
REGISTRY: dict = {}
