"""TFLite_Detection_PostProcess (fast NMS, one class per detection) in standard ONNX ops.

Decodes the box encodings against the anchors as TFLite's kernel does (centre ``y/x / scale * anchor
size + anchor centre``, size ``exp(h/w / scale) * anchor size``, corners ``centre -/+ size / 2``), takes
each anchor's best class (background excluded), keeps ``max_detections`` boxes by class-agnostic
NonMaxSuppression, and pads the outputs to ``max_detections`` rows with zeros (TFLite leaves those rows
unspecified). Outputs: boxes ``[1, M, 4]`` (ymin, xmin, ymax, xmax), classes ``[1, M]``, scores
``[1, M]`` and the count ``[1]``, all float.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from converters.ir import Op


def detection_postprocess(b: Any, op: Op, ins: list[str]) -> None:
    """Append the nodes for ``op`` to ONNX builder ``b`` (inputs already float)."""
    o = op.attrs["options"]
    boxes, scores, anchors = ins
    m = int(o["max_detections"])
    ncls = b.g.tensors[op.inputs[1]].shape[2]
    first = ncls - int(o["num_classes"])  # 1 when the scores hold a background class
    base = op.outputs[0]

    def t(name: str) -> str:
        return b.uid(f"{base}/{name}")

    def const(name: str, v: Any, dtype: Any = np.float32) -> str:
        return b.init(t(name), np.array(v, dtype))

    def sl(x: str, start: int, end: int, axis: int) -> str:
        y = t("slice")
        b.node("Slice", [x, b.ints("s", [start]), b.ints("e", [end]), b.ints("a", [axis])], [y])
        return y

    ys, xs, hs, ws = (float(v) for v in o["scale"])
    enc = sl(boxes, 0, 4, 2)
    a_yx, a_hw = sl(anchors, 0, 2, 1), sl(anchors, 2, 4, 1)
    yx, hw = sl(enc, 0, 2, 2), sl(enc, 2, 4, 2)
    c0, c1, c2, s0, s1, half, lo, hi, dec = (t(k) for k in ("c0", "c1", "c", "s0", "s1", "half", "lo", "hi", "dec"))
    b.node("Div", [yx, const("yx_scale", [ys, xs])], [c0])
    b.node("Mul", [c0, a_hw], [c1])
    b.node("Add", [c1, a_yx], [c2])
    b.node("Div", [hw, const("hw_scale", [hs, ws])], [s0])
    b.node("Exp", [s0], [s1])
    b.node("Mul", [s1, a_hw], [half + "_full"])
    b.node("Mul", [half + "_full", const("one_half", 0.5)], [half])
    b.node("Sub", [c2, half], [lo])
    b.node("Add", [c2, half], [hi])
    b.node("Concat", [lo, hi], [dec], axis=2)  # [1, N, 4]: ymin, xmin, ymax, xmax
    cls = sl(scores, first, ncls, 2)
    best, label = t("best"), t("label")
    b.node("ReduceMax", [cls], [best], axes=[2], keepdims=0)  # [1, N]
    b.node("ArgMax", [cls], [label], axis=2, keepdims=0)
    best3, sel, idx = t("best3"), t("selected"), t("index")
    b.node("Unsqueeze", [best, b.ints("ax", [1])], [best3])  # [1, 1, N]
    b.node("NonMaxSuppression", [dec, best3, const("max_out", [m], np.int64), const("iou", [o["iou_threshold"]]),
                                 const("score", [o["score_threshold"]])], [sel])
    b.node("Gather", [sel, const("col", 2, np.int64)], [idx], axis=1)  # [K] anchor indices, best first
    dec2, best1, label1 = t("dec2"), t("best1"), t("label1")
    b.node("Squeeze", [dec, b.ints("ax", [0])], [dec2])
    b.node("Squeeze", [best, b.ints("ax", [0])], [best1])
    b.node("Squeeze", [label, b.ints("ax", [0])], [label1])
    g_box, g_score, g_label, g_labelf = t("g_box"), t("g_score"), t("g_label"), t("g_labelf")
    b.node("Gather", [dec2, idx], [g_box], axis=0)
    b.node("Gather", [best1, idx], [g_score], axis=0)
    b.node("Gather", [label1, idx], [g_label], axis=0)
    b.node("Cast", [g_label], [g_labelf], to=b.TP.FLOAT)
    k, rest = t("count"), t("rest")
    b.node("Shape", [idx], [k])  # [1] int64
    b.node("Sub", [const("m", [m], np.int64), k], [rest])
    zero = const("zero", [0], np.int64)
    pads2, pads1 = t("pads2"), t("pads1")
    b.node("Concat", [zero, zero, rest, zero], [pads2], axis=0)
    b.node("Concat", [zero, rest], [pads1], axis=0)
    outs = [b.produced(x) for x in op.outputs]
    for src, pads, dst in ((g_box, pads2, outs[0]), (g_labelf, pads1, outs[1]), (g_score, pads1, outs[2])):
        padded = t("padded")
        b.node("Pad", [src, pads], [padded])
        b.node("Unsqueeze", [padded, b.ints("ax", [0])], [dst])
    b.node("Cast", [k], [outs[3]], to=b.TP.FLOAT)
