"""Resize (opset 10+) and Upsample (opset 7-9) -> RESIZE_NEAREST_NEIGHBOR / RESIZE_BILINEAR, or constant
per-axis interpolation matrices.

Nearest: the source pixel ONNX picks for every output row and column (:func:`onnx_nearest_indices`, from
the coordinate transformation and the rounding rule of the spec) is compared with the one TFLite's
RESIZE_NEAREST_NEIGHBOR picks (:func:`tflite_nearest_indices`); when no flag setting of that op picks the
same pixels (a tie rounded the other way, ``align_corners`` with ``floor``, a scale that is not
output / input), the resize is two GATHERs with the exact indices (int8 GATHER moves values unchanged).

Linear and cubic (opset 11+): the ``[out, in]`` weights ONNX applies along the height and the width
(:func:`interpolation_matrix`: every coordinate transformation, ``cubic_coeff_a``, ``exclude_outside``,
``antialias``, ``axes``, ``keep_aspect_ratio_policy``, the roi of tf_crop_and_resize) are compared with the
ones RESIZE_BILINEAR computes (:func:`tflite_bilinear_matrix`); where they differ (cubic, antialiased
downsampling, tf_crop_and_resize, half_pixel_symmetric, a scale that is not output / input, pytorch_half_pixel
to one pixel), the resize is a FULLY_CONNECTED by the constant matrix along the width, then the height
(:mod:`~converters.importers.onnx_ops.axis_matmul`), plus tf_crop_and_resize's extrapolation value as a
constant ADD. Resize is separable, so the two 1-D maps are exactly the 2-D one.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from converters.importers.onnx_ops.axis_matmul import apply_along_axis
from converters.importers.onnx_ops.context import ImportContext


def _text(v: Any, default: str) -> str:
    if v is None:
        return default
    return v.decode() if isinstance(v, bytes) else str(v)


def onnx_nearest_indices(n_in: int, n_out: int, scale: float, coord: str, nearest: str) -> np.ndarray:
    """The input index ONNX nearest Resize reads for each of ``n_out`` outputs (``scale`` as the model gives
    it, or ``n_out / n_in``), clamped to the input."""
    i = np.arange(n_out, dtype=np.float64)
    if coord == "half_pixel":
        x = (i + 0.5) / scale - 0.5
    elif coord == "pytorch_half_pixel":
        x = (i + 0.5) / scale - 0.5 if n_out > 1 else np.zeros_like(i)
    elif coord == "align_corners":
        x = i * (n_in - 1) / (n_out - 1) if n_out > 1 else np.zeros_like(i)
    elif coord == "asymmetric":
        x = i / scale
    elif coord == "tf_half_pixel_for_nn":
        x = (i + 0.5) / scale
    elif coord == "half_pixel_symmetric":
        offset = n_in / 2 * (1 - n_out / (scale * n_in))
        x = offset + (i + 0.5) / scale - 0.5
    else:
        raise ValueError(coord)
    rounding = {"round_prefer_floor": lambda v: np.ceil(v - 0.5), "round_prefer_ceil": lambda v: np.floor(v + 0.5),
                "floor": np.floor, "ceil": np.ceil}[nearest]
    return np.clip(rounding(x), 0, n_in - 1).astype(np.int64)


def tflite_nearest_indices(n_in: int, n_out: int, align_corners: bool, half_pixel_centers: bool) -> np.ndarray:
    """The input index TFLite's RESIZE_NEAREST_NEIGHBOR reads for each of ``n_out`` outputs (float32 maths,
    as its kernel computes it)."""
    f = np.float32
    scale = f(n_in - 1) / f(n_out - 1) if align_corners and n_out > 1 else f(n_in) / f(n_out)
    x = (np.arange(n_out, dtype=f) + f(0.5 if half_pixel_centers else 0.0)) * scale
    idx = np.floor(x + f(0.5)) if align_corners else np.floor(x)  # TfLiteRound: halves away from zero, x >= 0
    idx = np.minimum(idx.astype(np.int64), n_in - 1)
    return np.maximum(idx, 0) if half_pixel_centers else idx


_FLAGS = ((False, False), (False, True), (True, False))
#: how far RESIZE_BILINEAR's per-axis weights may be from ONNX's and still stand for them (float32 rounding of
#: its coordinates grows with the index; far below int8's 1/256)
BILINEAR_ATOL = 1e-3


def _nearest(ctx: ImportContext, node: Any, x: str, src: tuple, out_src: tuple, scales: Any, coord: str,
             nearest: str, legacy: tuple[bool, bool] | None) -> None:
    """Nearest resize: RESIZE_NEAREST_NEIGHBOR when a flag setting (``legacy`` first) picks ONNX's pixels,
    else GATHER along the height, then the width, with ONNX's indices."""
    if coord == "tf_crop_and_resize":
        raise ctx.err(node, "nearest resize with coordinate_transformation_mode=tf_crop_and_resize is not supported")
    if nearest not in ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil"):
        raise ctx.err(node, f"nearest_mode={nearest} is not supported")
    want = [onnx_nearest_indices(src[k], out_src[k], float(scales[k]) if scales is not None
                                 else out_src[k] / src[k], coord, nearest) for k in (2, 3)]
    for flags in ((legacy,) if legacy else ()) + _FLAGS:
        if all(np.array_equal(tflite_nearest_indices(src[k], out_src[k], *flags), want[k - 2]) for k in (2, 3)):
            ctx.emit("RESIZE_NEAREST_NEIGHBOR", [x], node.output[0],
                     {"align_corners": flags[0], "half_pixel_centers": flags[1]}, node)
            return
    n, _, w, c = ctx.ir_shape(x)
    out = node.output[0]
    rows = ctx.emit("GATHER", [x, ctx.add_const(f"{out}/rows", want[0].astype(np.int32), np.int32)],
                    ctx.tmp(f"{out}/rows", (n, out_src[2], w, c)), {"axis": 1}, node, shape=(n, out_src[2], w, c))
    ctx.emit("GATHER", [rows, ctx.add_const(f"{out}/cols", want[1].astype(np.int32), np.int32)], out,
             {"axis": 2}, node, shape=(n, out_src[2], out_src[3], c))


def resize(ctx: ImportContext, node: Any, a: dict) -> None:
    """Resize/Upsample of the height and width of a 4-D tensor: nearest; linear as RESIZE_BILINEAR where its
    weights are ONNX's, else (cubic, antialias, tf_crop_and_resize, half_pixel_symmetric, scales that are not
    output / input) constant per-axis interpolation matrices (:func:`interpolation_matrix`)."""
    x = ctx.act(node, node.input[0])
    src = ctx.src_shape(node, node.input[0])
    out_src = ctx.src_shape(node, node.output[0])
    if len(src) != 4 or tuple(out_src[:2]) != tuple(src[:2]):
        raise ctx.err(node, f"only resizing the height and width of a 4-D NCHW tensor is supported ({src} -> {out_src})")
    mode = _text(a.get("mode"), "nearest")
    if node.op_type == "Upsample":
        coord, nearest = "asymmetric", "floor"
    else:
        default_coord = "asymmetric" if ctx.opset < 11 else "half_pixel"
        coord = _text(a.get("coordinate_transformation_mode"), default_coord)
        nearest = _text(a.get("nearest_mode"), "round_prefer_floor")
    scales = None
    scale_input = 1 if node.op_type == "Upsample" or ctx.opset < 11 else 2
    if len(node.input) > scale_input and node.input[scale_input] and ctx.is_const(node.input[scale_input]):
        s = np.asarray(ctx.const(node, node.input[scale_input]), np.float64).reshape(-1)
        scales = s if s.size == 4 else None
    elif "scales" in a:
        scales = np.asarray(a["scales"], np.float64)
    if mode == "nearest":
        _nearest(ctx, node, x, tuple(src), tuple(out_src), scales, coord, nearest,
                 _legacy_nearest_flags(coord, nearest, src, out_src))
        return
    if mode not in ("linear", "bilinear", "cubic"):
        raise ctx.err(node, f"Resize mode '{mode}' is not supported (nearest, linear and cubic are)")
    if node.op_type == "Resize" and ctx.opset >= 11:
        plan, live = _axis_plan(ctx, node, a, tuple(src), tuple(out_src))
        maps = {k: interpolation_matrix(src[k], out_src[k], *plan[k], coord, mode, float(a.get("cubic_coeff_a", -0.75)),
                                        bool(a.get("exclude_outside", 0)), bool(a.get("antialias", 0)))
                for k in (2, 3)}
        flags = _bilinear_flags(coord) if mode != "cubic" else None
        # the same weights up to TFLite's float32 coordinates (~1e-5 at 600 px; a real difference is > 1e-2)
        if flags is None or not all(np.allclose(maps[k][0], tflite_bilinear_matrix(src[k], out_src[k], *flags),
                                                rtol=0, atol=BILINEAR_ATOL) and not maps[k][1].any() for k in (2, 3)):
            if live:
                raise ctx.err(node, f"{mode} resize with a run-time {' and '.join(live)} input is not supported; "
                                    f"the interpolation weights need constant values")
            _matrix_resize(ctx, node, x, maps, float(a.get("extrapolation_value", 0.0)))
            return
    else:
        if mode == "cubic":
            raise ctx.err(node, f"{node.op_type} mode 'cubic' is only supported from opset 11")
        if scales is not None and any(abs(src[k] * scales[k] - out_src[k]) > 1e-6 * out_src[k] for k in (2, 3)):
            # a scale that is not output / input (opset 7-10: asymmetric coordinates x = y / scale)
            maps = {k: interpolation_matrix(src[k], out_src[k], float(np.float32(scales[k])), 0.0, 1.0, "asymmetric",
                                            "linear") for k in (2, 3)}
            _matrix_resize(ctx, node, x, maps, 0.0)
            return
        flags = _bilinear_flags(coord)
        if flags is None:
            raise ctx.err(node, f"linear resize with coordinate_transformation_mode={coord} is not supported")
    ctx.emit("RESIZE_BILINEAR", [x], node.output[0], {"align_corners": flags[0], "half_pixel_centers": flags[1]}, node)


def _bilinear_flags(coord: str) -> tuple[bool, bool] | None:
    """The RESIZE_BILINEAR flags (align_corners, half_pixel_centers) for an ONNX coordinate transformation."""
    return {"half_pixel": (False, True), "pytorch_half_pixel": (False, True), "align_corners": (True, False),
            "asymmetric": (False, False)}.get(coord)


def tflite_bilinear_matrix(n_in: int, n_out: int, align_corners: bool, half_pixel_centers: bool) -> np.ndarray:
    """The ``[n_out, n_in]`` weights TFLite's RESIZE_BILINEAR applies along one axis (float32 maths, as its
    kernel computes them)."""
    f = np.float32
    scale = f(n_in - 1) / f(n_out - 1) if align_corners and n_out > 1 else f(n_in) / f(n_out)
    y = np.arange(n_out, dtype=f)
    x = (y + f(0.5)) * scale - f(0.5) if half_pixel_centers else y * scale
    lo = np.floor(x)
    i0 = np.maximum(lo, 0).astype(np.int64)
    i1 = np.minimum(np.ceil(x), n_in - 1).astype(np.int64)
    frac = (x - lo).astype(np.float64)
    m = np.zeros((n_out, n_in))
    np.add.at(m, (np.arange(n_out), i0), 1 - frac)
    np.add.at(m, (np.arange(n_out), i1), frac)
    return m


def _axis_plan(ctx: ImportContext, node: Any, a: dict, src: tuple,
               out_src: tuple) -> tuple[dict[int, tuple], list[str]]:
    """Per resized axis (2, 3): (scale used for coordinates, roi start, roi end), from the constant scales or
    sizes (with ``axes`` and ``keep_aspect_ratio_policy``) and roi, as the ONNX spec defines them; and the
    names of the inputs that matter but are computed at run time (their values were taken from the static
    output shape)."""
    rank = len(src)
    axes = [int(v) % rank for v in a.get("axes", range(rank))]
    inputs = list(node.input) + [""] * (4 - len(node.input))

    def const_or_none(name: str) -> np.ndarray | None:
        if not name or not ctx.is_const(name):
            return None  # no such input, or computed at run time: the static output shape decides below
        v = np.asarray(ctx.const(node, name), np.float64).reshape(-1)
        return v if v.size else None

    roi_v, scales_v, sizes_v = (const_or_none(inputs[i]) for i in (1, 2, 3))
    live = [what for i, what in ((1, "roi"), (2, "scales"), (3, "sizes")) if inputs[i] and not ctx.is_const(inputs[i])
            and (i != 1 or _text(a.get("coordinate_transformation_mode"), "") == "tf_crop_and_resize")]
    scale = [1.0] * rank
    out = list(src)
    if sizes_v is not None:
        for i, d in enumerate(axes):
            out[d] = int(sizes_v[i])
            scale[d] = out[d] / src[d]
        policy = _text(a.get("keep_aspect_ratio_policy"), "stretch")
        if policy in ("not_larger", "not_smaller"):
            common = (min if policy == "not_larger" else max)(scale[d] for d in axes)
            for d in axes:
                scale[d] = common
                out[d] = int(common * src[d] + 0.5)
    elif scales_v is not None:
        for i, d in enumerate(axes):
            scale[d] = float(np.float32(scales_v[i]))
            out[d] = int(scale[d] * src[d])
    roi = [(0.0, 1.0)] * rank
    if roi_v is not None and roi_v.size == 2 * len(axes):
        for i, d in enumerate(axes):
            roi[d] = (float(roi_v[i]), float(roi_v[len(axes) + i]))
    for d in (2, 3):
        if out[d] != out_src[d]:  # no constant scales/sizes (or they disagree with shape inference): sizes
            out[d], scale[d] = out_src[d], out_src[d] / src[d]
    return {k: (scale[k], roi[k][0], roi[k][1]) for k in (2, 3)}, live


def _source_coords(n_in: int, n_out: int, scale: float, r0: float, r1: float, coord: str) -> np.ndarray:
    """The input coordinate of each output index along one axis (the ONNX spec's coordinate transformation;
    its "output width" is ``scale * n_in``, not the rounded size)."""
    y = np.arange(n_out, dtype=np.float64)
    width = scale * n_in
    if coord == "align_corners":
        return np.zeros(n_out) if width == 1 else y * (n_in - 1) / (width - 1)
    if coord == "asymmetric":
        return y / scale
    if coord == "tf_crop_and_resize":
        x = np.full(n_out, (r1 - r0) * (n_in - 1) / 2) if width == 1 else y * (r1 - r0) * (n_in - 1) / (width - 1)
        return x + r0 * (n_in - 1)
    if coord == "pytorch_half_pixel":
        return np.full(n_out, -0.5) if width == 1 else (y + 0.5) / scale - 0.5
    if coord == "half_pixel":
        return (y + 0.5) / scale - 0.5
    if coord == "half_pixel_symmetric":
        return n_in / 2 * (1 - n_out / width) + (y + 0.5) / scale - 0.5
    raise ValueError(coord)


def _kernel(d: np.ndarray, mode: str, a: float) -> np.ndarray:
    """The linear (triangle) or cubic (Keys, coefficient ``a``) interpolation kernel at offsets ``d``."""
    d = np.abs(d)
    if mode != "cubic":
        return np.clip(1 - d, 0, 1)
    near = ((a + 2) * d - (a + 3)) * d * d + 1
    far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return np.where(d <= 1, near, np.where(d < 2, far, 0.0))


def interpolation_matrix(n_in: int, n_out: int, scale: float, r0: float, r1: float, coord: str, mode: str,
                         cubic_a: float = -0.75, exclude_outside: bool = False,
                         antialias: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The ``[n_out, n_in]`` weights of ONNX linear/cubic Resize along one axis, and which outputs are
    extrapolated (tf_crop_and_resize outside the input: a zero row there, the extrapolation value added).

    Taps are the integers around the source coordinate (the one to its left taken as the pixel "below" an
    exact hit); outside taps read the edge pixel unless ``exclude_outside`` drops them and renormalizes;
    ``antialias`` widens the kernel by ``1 / scale`` when downsampling and normalizes it.
    """
    x = _source_coords(n_in, n_out, scale, r0, r1, coord)
    outside = (x < 0) | (x > n_in - 1) if coord == "tf_crop_and_resize" else np.zeros(n_out, bool)
    s = min(scale, 1.0) if antialias else 1.0
    support = 2 if mode == "cubic" else 1
    start = int(np.floor(-support / s) + 1)
    taps = np.arange(start, 2 - start)
    m = np.zeros((n_out, n_in))
    for o in range(n_out):
        ratio = 1.0 if float(x[o]).is_integer() else x[o] - np.floor(x[o])
        left = x[o] - ratio
        idx = (left + taps).astype(np.int64)
        w = _kernel(s * (taps - ratio), mode, cubic_a)
        if antialias:
            w = w / w.sum()
        if exclude_outside:
            w = np.where((idx < 0) | (idx >= n_in), 0.0, w)
            total = w.sum()
            w = w / (total if total != 0 else 1.0)
        if not outside[o]:
            np.add.at(m[o], np.clip(idx, 0, n_in - 1), w)
    return m, outside


def _matrix_resize(ctx: ImportContext, node: Any, x: str, maps: dict[int, tuple], extrapolation: float) -> None:
    """Resize as a constant map along the width, then the height (FULLY_CONNECTED each, skipped where the
    map is the identity), plus the extrapolation value where tf_crop_and_resize samples outside the input."""
    out = node.output[0]
    n, _, _, c = ctx.ir_shape(x)
    (mh, out_h), (mw, out_w) = maps[2], maps[3]
    y = x
    for ir_axis, m in ((2, mw), (1, mh)):
        if m.shape[0] == m.shape[1] and np.array_equal(m, np.eye(m.shape[0])):
            continue
        y = apply_along_axis(ctx, node, y, ir_axis, m)
    oh, ow = mh.shape[0], mw.shape[0]
    bias = extrapolation * (out_h[:, None] | out_w[None, :]).astype(np.float32)
    if extrapolation != 0 and bias.any():
        ctx.emit("ADD", [y, ctx.add_const(f"{out}/extrapolation", bias[:, :, None])], out, {"act": "NONE"}, node,
                 shape=(n, oh, ow, c))
    else:
        ctx.transpose(y, (0, 1, 2, 3), out, node)


def _legacy_nearest_flags(coord: str, nearest: str, src: Any, out_src: Any) -> tuple[bool, bool] | None:
    """The RESIZE_NEAREST_NEIGHBOR flags this importer chose before exact indices were checked (tried first,
    so a model whose pixels they already matched converts exactly as before)."""
    if coord == "asymmetric" and nearest == "floor":
        return (False, False)
    if coord in ("half_pixel", "pytorch_half_pixel") and nearest in ("round_prefer_ceil", "round_prefer_floor"):
        return (False, True)
    if coord == "tf_half_pixel_for_nn" and nearest == "floor":
        return (False, True)
    if coord == "align_corners" and nearest == "round_prefer_ceil":
        return (True, False)
    if all(out_src[k] % src[k] == 0 for k in (2, 3)) and coord in ("asymmetric", "half_pixel", "pytorch_half_pixel"):
        return (False, False)  # integer upsampling: every rounding rule picks the same pixel
    return None


REGISTRY = {"Resize": resize, "Upsample": resize}
