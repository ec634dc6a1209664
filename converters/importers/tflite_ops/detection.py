"""TFLite_Detection_PostProcess (SSD box decoding and NMS, a custom op) kept as it is.

TFLite Micro and LiteRT both run it, on float inputs only: the int8 model dequantizes the box encodings
and class scores before it and keeps its four outputs float (:data:`converters.ir.FLOAT_OUTPUT_KINDS`).
Only fast NMS with one class per detection is taken (the form TFLM runs correctly and the QDQ ONNX
writer can express); regular NMS is refused with one line.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from converters.importers.tflite_ops.context import TFLiteContext
from converters.ir import Op
from edge_runtime.errors import ModelFormatError
from edge_runtime.formats.flexbuffers import decode

CUSTOM_CODE = "TFLite_Detection_PostProcess"


def _options(ctx: TFLiteContext, op: Any) -> dict[str, Any]:
    raw = op.custom_options
    if raw is None or len(raw) == 0:
        raise ctx.err(op, "the custom options (a FlexBuffers map) are missing")
    try:
        m = decode(bytes(np.asarray(raw, np.uint8)))
    except ModelFormatError as exc:
        raise ctx.err(op, f"unreadable custom options ({exc})") from None
    if not isinstance(m, dict):
        raise ctx.err(op, "the custom options are not a FlexBuffers map")
    try:
        o = {"max_detections": int(m["max_detections"]),
             "max_classes_per_detection": int(m["max_classes_per_detection"]),
             "use_regular_nms": bool(m.get("use_regular_nms") or False),
             "score_threshold": float(np.float32(m["nms_score_threshold"])),
             "iou_threshold": float(np.float32(m["nms_iou_threshold"])), "num_classes": int(m["num_classes"]),
             "scale": [float(np.float32(m[k])) for k in ("y_scale", "x_scale", "h_scale", "w_scale")]}
    except (KeyError, TypeError, ValueError) as exc:
        raise ctx.err(op, f"custom option {exc} is missing or not a number") from None
    if o["use_regular_nms"]:
        raise ctx.err(op, "use_regular_nms=true is not supported (only fast NMS); export the SSD model with "
                          "use_regular_nms=false")
    if o["max_classes_per_detection"] != 1:
        raise ctx.err(op, f"max_classes_per_detection={o['max_classes_per_detection']} is not supported; export "
                          "with 1 (TFLite Micro's fast NMS writes past its outputs otherwise)")
    return o


def detection_postprocess(ctx: TFLiteContext, op: Any) -> None:
    """Keep the op (inputs: box encodings ``[1, N, 4]``, class scores ``[1, N, C]``, constant anchors)."""
    if len(op.inputs) != 3 or len(op.outputs) != 4:
        raise ctx.err(op, "takes 3 inputs (box encodings, class scores, anchors) and 4 outputs")
    o = _options(ctx, op)
    boxes, scores = ctx.act_in(op, 0), ctx.act_in(op, 1)
    ctx.value(op, 2)
    for name in (boxes, scores):
        if ctx.tensors[name].is_constant:
            raise ctx.err(op, f"input '{name}' must be computed by the model, not a constant")
    n, c = ctx.shape(scores)[1], ctx.shape(scores)[2]
    if ctx.shape(boxes)[:2] != (1, n) or ctx.shape(boxes)[2] < 4 or c - o["num_classes"] not in (0, 1):
        raise ctx.err(op, f"box encodings {ctx.shape(boxes)} and class scores {ctx.shape(scores)} do not match "
                          f"num_classes={o['num_classes']}")
    outs = [ctx.name(i) for i in op.outputs]
    raw = bytes(np.asarray(op.custom_options, np.uint8))
    ctx.ops.append(Op("DETECTION_POSTPROCESS", [boxes, scores, ctx.act_in(op, 2)], outs,
                      {"options": o, "custom_options": raw}, name=f"op{op.index}:{op.name}"))


REGISTRY = {CUSTOM_CODE: detection_postprocess}
