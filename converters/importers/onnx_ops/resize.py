"""Resize (opset 10+) and Upsample (opset 7-9) -> RESIZE_NEAREST_NEIGHBOR / RESIZE_BILINEAR."""
from __future__ import annotations

from typing import Any

import numpy as np

from converters.importers.onnx_ops.context import ImportContext


def _text(v: Any, default: str) -> str:
    if v is None:
        return default
    return v.decode() if isinstance(v, bytes) else str(v)


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
    if scales is not None:
        for k in (2, 3):
            if abs(src[k] * scales[k] - out_src[k]) > 1e-6 * out_src[k]:
                raise ctx.err(node, f"scale {scales[k]} does not give a whole output size ({src[k]} -> "
                                    f"{out_src[k]}); give sizes instead of scales")
    if mode == "nearest":
        kind = "RESIZE_NEAREST_NEIGHBOR"
        if coord == "asymmetric" and nearest == "floor":
            flags = (False, False)
        elif coord in ("half_pixel", "pytorch_half_pixel") and nearest in ("round_prefer_ceil", "round_prefer_floor"):
            flags = (False, True)
        elif coord == "tf_half_pixel_for_nn" and nearest == "floor":
            flags = (False, True)
        elif coord == "align_corners" and nearest == "round_prefer_ceil":
            flags = (True, False)
        elif all(out_src[k] % src[k] == 0 for k in (2, 3)) and coord in ("asymmetric", "half_pixel",
                                                                          "pytorch_half_pixel"):
            flags = (False, False)  # integer upsampling: every rounding rule picks the same pixel
        else:
            raise ctx.err(node, f"nearest resize with coordinate_transformation_mode={coord} and "
                                f"nearest_mode={nearest} is not supported")
    elif mode in ("linear", "bilinear"):
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


REGISTRY = {"Resize": resize, "Upsample": resize}
