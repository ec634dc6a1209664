"""Resize (opset 10+) and Upsample (opset 7-9) -> RESIZE_NEAREST_NEIGHBOR / RESIZE_BILINEAR.

Nearest: the source pixel ONNX picks for every output row and column (:func:`onnx_nearest_indices`, from
the coordinate transformation and the rounding rule of the spec) is compared with the one TFLite's
RESIZE_NEAREST_NEIGHBOR picks (:func:`tflite_nearest_indices`); when no flag setting of that op picks the
same pixels (a tie rounded the other way, ``align_corners`` with ``floor``, a scale that is not
output / input), the resize is two GATHERs with the exact indices (int8 GATHER moves values unchanged).
"""
from __future__ import annotations

from typing import Any

import numpy as np

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
    """Resize/Upsample of the height and width of a 4-D tensor, nearest or (bi)linear."""
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
    if scales is not None:
        for k in (2, 3):
            if abs(src[k] * scales[k] - out_src[k]) > 1e-6 * out_src[k]:
                raise ctx.err(node, f"scale {scales[k]} does not give a whole output size ({src[k]} -> "
                                    f"{out_src[k]}); give sizes instead of scales")
    if mode in ("linear", "bilinear"):
        kind = "RESIZE_BILINEAR"
        if coord in ("half_pixel", "pytorch_half_pixel"):
            flags = (False, True)
        elif coord == "align_corners":
            flags = (True, False)
        elif coord == "asymmetric":
            flags = (False, False)
        else:
            raise ctx.err(node, f"linear resize with coordinate_transformation_mode={coord} is not supported")
    else:
        raise ctx.err(node, f"Resize mode '{mode}' is not supported (nearest and linear are)")
    ctx.emit(kind, [x], node.output[0], {"align_corners": flags[0], "half_pixel_centers": flags[1]}, node)


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
