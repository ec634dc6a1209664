"""Weighted and windowed TFLite ops: CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, TRANSPOSE_CONV
(and MediaPipe's custom ``Convolution2DTransposeBias``), pooling, BATCH_MATMUL."""
from __future__ import annotations

from typing import Any

import numpy as np

from converters.importers.tflite_ops.context import TFLiteContext
from converters.ir import same_pads


def _bias(ctx: TFLiteContext, op: Any, k: int, n: int) -> str:
    """The op's bias; a bias constant that several ops share (MediaPipe's palm detector reuses one zero bias
    in four depthwise convolutions) gets a copy per op: its int32 form depends on each op's scales."""
    if len(op.inputs) > k and op.inputs[k] >= 0:
        name = ctx.name(op.inputs[k])
        data = ctx.tensors[name].data
        if name in ctx.biases_used and data is not None:
            return ctx.add_const(f"{name}/op{op.index}", data)
        ctx.biases_used.add(name)
        return name
    return ctx.add_const(f"{ctx.name(op.outputs[0])}/bias", np.zeros(n, np.float32))


def _check_window(ctx: TFLiteContext, op: Any, x: str, k: tuple[int, int], stride: tuple[int, int],
                  dilation: tuple[int, int], same: bool) -> None:
    """Refuse in one line a windowed op whose stored output height/width do not follow from its input,
    window, stride, dilation and padding. A file exported with a dynamic input (shape signature -1) stores
    placeholder shapes, e.g. openWakeWord's melspectrogram.tflite: audio stored as (1, 1) under a 512-tap
    convolution; the converter works at the stored shapes, so such a model cannot be converted as is."""
    size = ctx.shape(x)[1:3]
    if same:
        want = tuple(-(-n // s) for n, s in zip(size, stride))
    else:
        want = tuple((n - d * (kk - 1) - 1) // s + 1 for n, kk, s, d in zip(size, k, stride, dilation))
    out = ctx.shape(ctx.name(op.outputs[0]))
    if len(out) == 4 and tuple(out[1:3]) == want:
        return
    raise ctx.err(op, f"stored output {list(out)} does not follow from the {size[0]}x{size[1]} input, "
                      f"{k[0]}x{k[1]} window, stride {stride} and {'SAME' if same else 'VALID'} padding "
                      f"(height x width {want[0]}x{want[1]}){ctx.dynamic_hint()}")


def conv(ctx: TFLiteContext, op: Any) -> None:
    """CONV_2D and DEPTHWISE_CONV_2D (SAME/VALID, stride, dilation, fused activation)."""
    x, w = ctx.act_in(op, 0), ctx.tensors[ctx.name(op.inputs[1])]
    if w.data is None:
        raise ctx.err(op, "the filter must be a constant")
    if len(ctx.shape(x)) != 4:
        raise ctx.err(op, f"input of rank {len(ctx.shape(x))}; a 4-D NHWC input is required")
    kh, kw = w.shape[1], w.shape[2]
    attrs: dict = {}
    if op.name == "CONV_2D":
        padding, sw, sh = int(ctx.option(op, 0, "b", 0)), int(ctx.option(op, 1, "i", 1)), int(ctx.option(op, 2, "i", 1))
        act, dw, dh = ctx.act(op.options, 3), int(ctx.option(op, 4, "i", 1)), int(ctx.option(op, 5, "i", 1))
        cin, n_out = ctx.shape(x)[3], w.shape[0]
        if w.shape[3] != cin and (w.shape[3] <= 0 or cin % w.shape[3] or n_out % (cin // w.shape[3])):
            raise ctx.err(op, f"grouped CONV_2D with filter depth {w.shape[3]} and input depth {cin}: the groups "
                              f"(input depth / filter depth) must divide the input depth and the {n_out} filters")
    else:
        padding, sw, sh = int(ctx.option(op, 0, "b", 0)), int(ctx.option(op, 1, "i", 1)), int(ctx.option(op, 2, "i", 1))
        attrs["multiplier"] = int(ctx.option(op, 3, "i", 1))
        act, dw, dh = ctx.act(op.options, 4), int(ctx.option(op, 5, "i", 1)), int(ctx.option(op, 6, "i", 1))
        n_out = w.shape[3]
    _check_window(ctx, op, x, (kh, kw), (sh, sw), (dh, dw), padding == 0)
    pads = same_pads(ctx.shape(x)[1:3], (kh, kw), (sh, sw), (dh, dw)) if padding == 0 else (0, 0, 0, 0)
    attrs.update(stride=(sh, sw), dilation=(dh, dw), pads=pads, act=act)
    if op.name == "CONV_2D" and w.shape[3] != ctx.shape(x)[3]:
        _grouped_conv(ctx, op, x, w.data, _bias(ctx, op, 2, n_out), attrs)
        return
    ctx.emit(op, op.name, [x, w.name, _bias(ctx, op, 2, n_out)], ctx.name(op.outputs[0]), attrs)


def _grouped_conv(ctx: TFLiteContext, op: Any, x: str, w: np.ndarray, bias: str, attrs: dict) -> None:
    """A grouped CONV_2D (filter depth = input depth / groups) as one CONV_2D per group over its slice of the
    input channels, then CONCATENATION along the channels (the form the ONNX importer gives grouped Conv)."""
    b = ctx.tensors[bias].data
    if b is None:
        raise ctx.err(op, "the bias of a grouped CONV_2D must be a constant")
    n, h, wd, cin = ctx.shape(x)
    fin = w.shape[3]
    groups = cin // fin
    per = w.shape[0] // groups
    out = ctx.name(op.outputs[0])
    part_shape = tuple(ctx.shape(out)[:3]) + (per,)
    parts = []
    for g in range(groups):
        xs = ctx.emit(op, "STRIDED_SLICE", [x], ctx.tmp(f"{out}/group{g}_in", (n, h, wd, fin)),
                      {"begin": (0, 0, 0, g * fin), "end": (n, h, wd, (g + 1) * fin), "strides": (1, 1, 1, 1)})
        wg = ctx.add_const(f"{out}/weights{g}", w[g * per:(g + 1) * per])
        bg = ctx.add_const(f"{out}/bias{g}", np.asarray(b).reshape(-1)[g * per:(g + 1) * per])
        parts.append(ctx.emit(op, "CONV_2D", [xs, wg, bg], ctx.tmp(f"{out}/group{g}", part_shape), dict(attrs)))
    ctx.emit(op, "CONCATENATION", parts, out, {"axis": 3, "act": "NONE"})


def fully_connected(ctx: TFLiteContext, op: Any) -> None:
    """FULLY_CONNECTED; inputs of rank > 2 are flattened to rows first."""
    x, w = ctx.act_in(op, 0), ctx.tensors[ctx.name(op.inputs[1])]
    if w.data is None:
        raise ctx.err(op, "the weights must be a constant")
    out = ctx.name(op.outputs[0])
    attrs = {"act": ctx.act(op.options, 0)}
    ins = [w.name, _bias(ctx, op, 2, w.shape[0])]
    xs = ctx.shape(x)
    if len(xs) == 2 and len(ctx.shape(out)) == 2:
        ctx.emit(op, "FULLY_CONNECTED", [x] + ins, out, attrs)
        return
    rows = int(np.prod(xs)) // w.shape[1]
    flat = ctx.emit(op, "RESHAPE", [x], ctx.tmp(f"{out}/rows", (rows, w.shape[1])))
    y = ctx.emit(op, "FULLY_CONNECTED", [flat] + ins, ctx.tmp(f"{out}/flat", (rows, w.shape[0])), attrs)
    ctx.emit(op, "RESHAPE", [y], out)


def _transpose_conv(ctx: TFLiteContext, op: Any, x: str, w: np.ndarray, bias: str, padding_same: bool,
                    stride: tuple[int, int]) -> None:
    """Full-size VALID TRANSPOSE_CONV, then the crop that TFLite's SAME padding implies."""
    out = ctx.name(op.outputs[0])
    n, h, wd, _ = ctx.shape(x)
    o_ch, kh, kw = w.shape[0], w.shape[1], w.shape[2]
    full = ((h - 1) * stride[0] + kh, (wd - 1) * stride[1] + kw)
    want = ctx.shape(out)[1:3]
    if not padding_same and tuple(want) != full:
        raise ctx.err(op, f"VALID output {want} differs from the full size {full}")
    begin = ((full[0] - want[0]) // 2, (full[1] - want[1]) // 2)
    wname = ctx.add_const(f"{out}/weights", w)
    if tuple(want) == full:
        ctx.emit(op, "TRANSPOSE_CONV", [x, wname, bias], out, {"stride": stride})
        return
    y = ctx.emit(op, "TRANSPOSE_CONV", [x, wname, bias], ctx.tmp(f"{out}/full", (n, full[0], full[1], o_ch)),
                 {"stride": stride})
    ctx.emit(op, "STRIDED_SLICE", [y], out, {"begin": (0, begin[0], begin[1], 0),
                                            "end": (n, begin[0] + want[0], begin[1] + want[1], o_ch),
                                            "strides": (1, 1, 1, 1)})


def transpose_conv(ctx: TFLiteContext, op: Any) -> None:
    """TRANSPOSE_CONV (inputs: output_shape, weights, input[, bias])."""
    w = np.asarray(ctx.value(op, 1), np.float32)
    x = ctx.act_in(op, 2)
    padding_same = int(ctx.option(op, 0, "b", 0)) == 0
    stride = (int(ctx.option(op, 2, "i", 1)), int(ctx.option(op, 1, "i", 1)))
    if ctx.act(op.options, 3) != "NONE":
        raise ctx.err(op, "a fused activation on TRANSPOSE_CONV is not supported")
    _transpose_conv(ctx, op, x, w, _bias(ctx, op, 3, w.shape[0]), padding_same, stride)


def transpose_conv_bias(ctx: TFLiteContext, op: Any) -> None:
    """MediaPipe's custom ``Convolution2DTransposeBias``: a transposed convolution plus bias, whose
    custom options are TfLiteTransposeConvParams (int32 padding 1=SAME 2=VALID, stride_w, stride_h)."""
    raw = op.custom_options
    if raw is None or len(raw) < 12:
        raise ctx.err(op, "custom options (padding, strides) are missing")
    padding, sw, sh = (int(v) for v in np.frombuffer(np.asarray(raw, np.uint8).tobytes()[:12], "<i4"))
    if padding not in (1, 2):
        raise ctx.err(op, f"padding code {padding} is not SAME (1) or VALID (2)")
    w = np.asarray(ctx.value(op, 1), np.float32)
    _transpose_conv(ctx, op, ctx.act_in(op, 0), w, _bias(ctx, op, 2, w.shape[0]), padding == 1, (sh, sw))


def pool(ctx: TFLiteContext, op: Any) -> None:
    """AVERAGE_POOL_2D / MAX_POOL_2D."""
    x = ctx.act_in(op, 0)
    padding, sw, sh = int(ctx.option(op, 0, "b", 0)), int(ctx.option(op, 1, "i", 1)), int(ctx.option(op, 2, "i", 1))
    fw, fh = int(ctx.option(op, 3, "i", 1)), int(ctx.option(op, 4, "i", 1))
    pads = same_pads(ctx.shape(x)[1:3], (fh, fw), (sh, sw)) if padding == 0 else (0, 0, 0, 0)
    ctx.emit(op, op.name, [x], ctx.name(op.outputs[0]), {"kernel": (fh, fw), "stride": (sh, sw), "pads": pads,
                                                         "act": ctx.act(op.options, 5), "count_include_pad": False})


def batch_matmul(ctx: TFLiteContext, op: Any) -> None:
    """BATCH_MATMUL (adj_x/adj_y become TRANSPOSEs of the last two axes)."""
    ins = []
    for k, field in ((0, 0), (1, 1)):
        name = ctx.act_in(op, k)
        if bool(ctx.option(op, field, "b", False)):
            shape = ctx.shape(name)
            perm = tuple(range(len(shape) - 2)) + (len(shape) - 1, len(shape) - 2)
            if ctx.tensors[name].is_constant:
                name = ctx.add_const(f"{name}/adj", np.transpose(ctx.tensors[name].data, perm))
            else:
                name = ctx.emit(op, "TRANSPOSE", [name], ctx.tmp(f"{name}/adj", tuple(shape[p] for p in perm)),
                                {"perm": perm})
        ins.append(name)
    ctx.emit(op, "BATCH_MATMUL", ins, ctx.name(op.outputs[0]))


REGISTRY = {
    "CONV_2D": conv, "DEPTHWISE_CONV_2D": conv, "FULLY_CONNECTED": fully_connected,
    "TRANSPOSE_CONV": transpose_conv, "Convolution2DTransposeBias": transpose_conv_bias,
    "AVERAGE_POOL_2D": pool, "MAX_POOL_2D": pool, "BATCH_MATMUL": batch_matmul,
}
