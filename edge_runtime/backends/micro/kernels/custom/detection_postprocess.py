"""TFLite_Detection_PostProcess (SSD box decoding and non-maximum suppression), as TFLM runs it.

Inputs: box encodings ``[1, N, >=4]`` (y, x, h, w relative to the anchors), class scores
``[1, N, C (+1 background)]`` and anchors ``[N, 4]`` (y, x, h, w), all float32 (TFLM's kernel
takes float only; quantized SSD models dequantize before it). Outputs (float32): boxes
``[1, M, 4]`` as (ymin, xmin, ymax, xmax), classes ``[1, M]``, scores ``[1, M]`` and the
number of detections ``[1]``. Options (a FlexBuffers map): max_detections,
max_classes_per_detection, detections_per_class (default 100), use_regular_nms (default
false), nms_score_threshold, nms_iou_threshold, num_classes, y/x/h/w_scale.

Arithmetic follows TFLM: the centre and half sizes are computed in double and rounded to
float, corners and IoU in float. Ordering: scores descending, ties by the lower index (TFLM's
stable merge sort and its partial sort with an index tie-break agree on that). With fast NMS
TFLM leaves the output rows past the detection count untouched; so does this kernel.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from edge_runtime.arena.traits import OpMemory
from edge_runtime.backends.micro.kernels.base import Inputs, Kernel, OpContext, Outputs, Scratch, Workspace
from edge_runtime.errors import EdgeRuntimeError, ModelFormatError
from edge_runtime.formats.flexbuffers import decode

F32 = np.float32


def _options(ctx: OpContext) -> dict[str, Any]:
    raw = ctx.op.custom_options
    if raw is None or raw.size == 0:
        raise ctx.fail("the custom options (a FlexBuffers map) are missing")
    try:
        m = decode(raw.tobytes())
    except ModelFormatError as exc:
        raise ctx.fail(str(exc)) from None
    if not isinstance(m, dict):
        raise ctx.fail("the custom options are not a FlexBuffers map")

    def num(key: str, default: Any = None, kind: type = int) -> Any:
        v = m.get(key, default)
        if v is None or isinstance(v, (bytes, str, list, dict)):
            raise ctx.fail(f"option '{key}' is missing or not a number")
        return kind(v)

    o = {"max_detections": num("max_detections"), "max_classes_per_detection": num("max_classes_per_detection"),
         "detections_per_class": num("detections_per_class", 100),
         "use_regular_nms": bool(m.get("use_regular_nms") or False),
         "score_threshold": F32(num("nms_score_threshold", kind=float)),
         "iou_threshold": F32(num("nms_iou_threshold", kind=float)), "num_classes": num("num_classes"),
         "scale": [float(F32(num(k, kind=float))) for k in ("y_scale", "x_scale", "h_scale", "w_scale")]}
    if not 0.0 < o["iou_threshold"] <= 1.0:
        raise ctx.fail(f"nms_iou_threshold {o['iou_threshold']} is not in (0, 1]")
    if o["max_detections"] < 0 or o["num_classes"] < 1:
        raise ctx.fail("max_detections must be >= 0 and num_classes >= 1")
    if o["use_regular_nms"] and o["detections_per_class"] <= 0:
        raise ctx.fail("detections_per_class must be positive with regular NMS")
    if not o["use_regular_nms"] and o["max_classes_per_detection"] <= 0:
        raise ctx.fail("max_classes_per_detection must be positive with fast NMS")
    if not o["use_regular_nms"] and min(o["max_classes_per_detection"], o["num_classes"]) > 1:
        raise ctx.fail("fast NMS with max_classes_per_detection > 1 is refused: TFLM's kernel writes such "
                       "detections past the end of its outputs (use 1, or use_regular_nms)")
    return o


def _descending(values: np.ndarray) -> np.ndarray:
    """Indices sorting ``values`` descending, ties by the lower index."""
    return np.argsort(-values, kind="stable")


class DetectionPostProcess(Kernel):
    """Decode SSD boxes and select detections (regular or fast NMS)."""

    max_version = 1

    @staticmethod
    def op_memory(model: Any, subgraph: Any, op: Any, workspace_limit: int) -> OpMemory:
        """The scratch buffers TFLM requests in the arena (each 16-byte aligned), from the op's shapes."""
        try:
            k = DetectionPostProcess(OpContext(model, subgraph, op, workspace_limit))
        except EdgeRuntimeError:
            return OpMemory()  # the interpreter refuses the op at load time
        n, md, nc = k.n, k.o["max_detections"], k.o["num_classes"]
        sizes = [n, n * 16, n * k.cwb * 4, n * 4, n * 4, md * n * 4, md * n * 4, n * 4, md * n * 4,
                 max(nc, md) * n * 4, min(n, md) * n * 4]
        return OpMemory(scratch_bytes=sum(-(-s // 16) * 16 for s in sizes))

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        if len(ctx.op.inputs) != 3 or len(ctx.op.outputs) != 4:
            raise ctx.fail("expects 3 inputs (boxes, scores, anchors) and 4 outputs")
        boxes, scores, anchors = ctx.input(0), ctx.input(1), ctx.input(2)
        for t, what in ((boxes, "box encodings"), (scores, "class predictions"), (anchors, "anchors")):
            if t is None or t.type_name != "FLOAT32":
                raise ctx.fail(f"the {what} must be float32 (TFLM's kernel takes float only)")
        for k in range(4):
            if ctx.output(k).type_name != "FLOAT32":
                raise ctx.fail(f"output {k} must be float32")
        if len(boxes.shape) != 3 or len(scores.shape) != 3 or len(anchors.shape) != 2:
            raise ctx.fail("box encodings and class predictions must be 3-D, anchors 2-D")
        if boxes.shape[0] != 1 or scores.shape[0] != 1:
            raise ctx.fail("the batch must be 1")
        self.o = o = _options(ctx)
        self.n = n = boxes.shape[1]
        self.enc = boxes.shape[2]
        if self.enc < 4 or scores.shape[1] != n or anchors.shape[0] != n or anchors.shape[1] < 4:
            raise ctx.fail(f"shapes do not agree: boxes {boxes.shape}, scores {scores.shape}, anchors {anchors.shape}")
        self.cwb = scores.shape[2]
        self.label_offset = self.cwb - o["num_classes"]
        if self.label_offset not in (0, 1):
            raise ctx.fail(f"{self.cwb} score columns for {o['num_classes']} classes (at most one background)")
        per = o["max_detections"] * (1 if o["use_regular_nms"] else min(o["max_classes_per_detection"],
                                                                         o["num_classes"]))
        self.rows_out = per
        if (ctx.output(0).num_elements < 4 * per or ctx.output(1).num_elements < per
                or ctx.output(2).num_elements < per or ctx.output(3).num_elements < 1):
            raise ctx.fail(f"the outputs are too small for {per} detections")
        self.scale = np.array(o["scale"], np.float64)
        self.decoded = np.zeros((n, 4), F32)

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Remember the views."""
        self.boxes = inputs[0].reshape(self.n, self.enc)
        self.scores = inputs[1].reshape(self.n, self.cwb)
        self.anchors = inputs[2].reshape(self.n, -1)
        self.out_boxes = outputs[0].reshape(-1, 4)
        self.out_classes = outputs[1].reshape(-1)
        self.out_scores = outputs[2].reshape(-1)
        self.out_num = outputs[3].reshape(-1)

    def _decode(self) -> None:
        b = self.boxes[:, :4].astype(np.float64)
        a = self.anchors[:, :4].astype(np.float64)
        sy, sx, sh, sw = self.scale
        yc = (b[:, 0] / sy * a[:, 2] + a[:, 0]).astype(F32)
        xc = (b[:, 1] / sx * a[:, 3] + a[:, 1]).astype(F32)
        hh = (0.5 * np.exp(b[:, 2] / sh) * a[:, 2]).astype(F32)
        hw = (0.5 * np.exp(b[:, 3] / sw) * a[:, 3]).astype(F32)
        d = self.decoded
        np.subtract(yc, hh, out=d[:, 0])
        np.subtract(xc, hw, out=d[:, 1])
        np.add(yc, hh, out=d[:, 2])
        np.add(xc, hw, out=d[:, 3])

    def _iou(self, i: int, others: np.ndarray) -> np.ndarray:
        d = self.decoded
        bi, bj = d[i], d[others]
        area_i = (bi[2] - bi[0]) * (bi[3] - bi[1])
        area_j = (bj[:, 2] - bj[:, 0]) * (bj[:, 3] - bj[:, 1])
        ih = np.maximum(np.minimum(bi[2], bj[:, 2]) - np.maximum(bi[0], bj[:, 0]), F32(0))
        iw = np.maximum(np.minimum(bi[3], bj[:, 3]) - np.maximum(bi[1], bj[:, 1]), F32(0))
        inter = ih * iw
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = inter / (area_i + area_j - inter)
        return np.where((area_i <= 0) | (area_j <= 0), F32(0), iou)

    def _nms(self, scores: np.ndarray, max_detections: int) -> list[int]:
        """TFLM's single-class NMS: indices of the selected boxes, best first."""
        keep = np.flatnonzero(scores >= self.o["score_threshold"])
        order = keep[_descending(scores[keep])]
        out_size = min(order.size, max_detections)
        active = np.ones(order.size, bool)
        remaining = order.size
        selected: list[int] = []
        for i in range(order.size):
            if remaining == 0 or len(selected) >= out_size:
                break
            if not active[i]:
                continue
            selected.append(int(order[i]))
            active[i] = False
            remaining -= 1
            rest = np.flatnonzero(active[i + 1:]) + i + 1
            if rest.size:
                drop = rest[self._iou(int(order[i]), order[rest]) > self.o["iou_threshold"]]
                active[drop] = False
                remaining -= drop.size
        return selected

    def run(self) -> None:
        """Decode, validate, select, write the outputs."""
        self._decode()
        d = self.decoded
        if np.any(d[:, 0] >= d[:, 2]) or np.any(d[:, 1] >= d[:, 3]):
            raise EdgeRuntimeError(f"{self.ctx.model.path}: TFLite_Detection_PostProcess got a decoded box with "
                                   "ymin >= ymax or xmin >= xmax (TFLM fails this invoke too)")
        o, off = self.o, self.label_offset
        nc = o["num_classes"]
        if o["use_regular_nms"]:
            cand_idx = np.zeros(0, np.int64)
            cand_score = np.zeros(0, F32)
            for col in range(nc):
                cs = self.scores[:, col + off]
                sel = np.array(self._nms(cs, o["detections_per_class"]), np.int64)
                idx = np.concatenate([cand_idx, sel * self.cwb + col + off])
                sc = np.concatenate([cand_score, cs[sel].astype(F32)])
                top = _descending(sc)[:min(idx.size, o["max_detections"])]
                cand_idx, cand_score = idx[top], sc[top]
            k = cand_idx.size
            self.out_boxes[:o["max_detections"]] = 0
            self.out_classes[:o["max_detections"]] = 0
            self.out_scores[:o["max_detections"]] = 0
            anchor = cand_idx // self.cwb
            self.out_boxes[:k] = d[anchor]
            self.out_classes[:k] = cand_idx - anchor * self.cwb - off
            self.out_scores[:k] = cand_score
            self.out_num[0] = k
            return
        ncat = min(o["max_classes_per_detection"], nc)
        cls_scores = self.scores[:, off:off + nc]
        order = np.argsort(-cls_scores, axis=1, kind="stable")[:, :ncat]
        max_scores = cls_scores[np.arange(self.n), order[:, 0]]
        row = 0
        for sel in self._nms(max_scores, o["max_detections"]):
            for col in range(ncat):
                c = int(order[sel, col])
                self.out_boxes[row] = d[sel]
                self.out_classes[row] = c
                self.out_scores[row] = cls_scores[sel, c]
                row += 1
        self.out_num[0] = row
