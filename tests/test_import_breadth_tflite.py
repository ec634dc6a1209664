"""Importer breadth, float-TFLite side: ARG_MAX/ARG_MIN (int32 outputs) and TensorFlow's dilated
convolution (SPACE_TO_BATCH_ND -> conv -> BATCH_TO_SPACE_ND, folded into one dilated convolution).

Each float model is built with ``tests/tflite_builder.py`` and checked with the harness of
``test_import_breadth_onnx.py``: float IR == LiteRT on the float model, the int8 .tflite on LiteRT and
micro (bit-exact against tflite-micro), the QDQ .onnx on onnxruntime.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pytest
from test_import_breadth_onnx import check_graph, uniform

from converters.importers.tflite import import_tflite
from edge_runtime.errors import UnsupportedModelError

tb = pytest.importorskip("tflite_builder")
T, opts = tb.T, tb.opts
RNG = np.random.default_rng(21)


def f32(*shape: int, scale: float = 0.3) -> np.ndarray:
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def _write(tmp_path: Any, build: Callable[[Any], None], name: str = "float.tflite") -> str:
    mb = tb.ModelBuilder()
    build(mb.subgraph("main"))
    return str(mb.write(tmp_path / name))


def litert_reference(path: str) -> Callable[[np.ndarray], list[np.ndarray]]:
    """LiteRT on the float model (NHWC like the IR)."""
    from converters.report import litert_interpreter

    it = litert_interpreter(path)
    inp, outs = it.get_input_details()[0], it.get_output_details()

    def run(x: np.ndarray) -> list[np.ndarray]:
        it.set_tensor(inp["index"], x.reshape(inp["shape"]))
        it.invoke()
        return [it.get_tensor(d["index"]).copy() for d in outs]
    return run


def _argmax_model(sg: Any) -> None:
    """CONV_2D -> ARG_MAX over channels (a segmentation head) and ARG_MIN over width, plus the logits."""
    x = sg.tensor(T([1, 6, 8, 3], "float32", name="x"))
    w = sg.tensor(T([5, 3, 3, 3], "float32", data=f32(5, 3, 3, 3), name="w"))
    b = sg.tensor(T([5], "float32", data=f32(5), name="b"))
    c = sg.tensor(T([1, 6, 8, 5], "float32", name="logits"))
    ax3 = sg.tensor(T([1], "int32", data=np.array([3], np.int32), name="axis3"))
    ax2 = sg.tensor(T([1], "int32", data=np.array([-2], np.int32), name="axis2"))
    am = sg.tensor(T([1, 6, 8], "int32", name="label"))
    an = sg.tensor(T([1, 6, 5], "int32", name="argmin_w"))
    sg.op("CONV_2D", [x, w, b], [c], opts("Conv2DOptions", padding=0, strideW=1, strideH=1), version=1)
    sg.op("ARG_MAX", [c, ax3], [am], opts("ArgMaxOptions", outputType=2))
    sg.op("ARG_MIN", [c, ax2], [an], opts("ArgMinOptions", outputType=2))
    sg.io([x], [c, am, an])


def test_argmax_argmin(tmp_path):
    path = _write(tmp_path, _argmax_model)
    graph = import_tflite(path)
    assert graph.op_counts().get("ARG_MAX") == 1 and graph.op_counts().get("ARG_MIN") == 1
    m = check_graph(graph, uniform((1, 6, 8, 3)), litert_reference(path), tmp_path, min_sqnr=30.0, min_match=0.9)
    assert m.tflite["label"] >= 0.9 and m.tflite["argmin_w"] >= 0.9


def _dilated(kind: str, rate: int) -> Callable[[Any], None]:
    """TensorFlow's SAME dilated 3x3 convolution on a 1x9x11x4 input (rate ``rate``), then a 1x1 conv:
    pad by ``rate`` on each side plus what makes the size a multiple of ``rate``, crop that extra again."""
    h, w_ = 9, 11

    def build(sg: Any) -> None:
        eh, ew = (-h) % rate, (-w_) % rate
        pads = np.array([[rate, rate + eh], [rate, rate + ew]], np.int32)
        hp, wp = h + int(pads[0].sum()), w_ + int(pads[1].sum())
        bh, bw = hp // rate, wp // rate
        x = sg.tensor(T([1, h, w_, 4], "float32", name="x"))
        block = sg.tensor(T([2], "int32", data=np.array([rate, rate], np.int32), name="block"))
        pad_t = sg.tensor(T([2, 2], "int32", data=pads, name="paddings"))
        s2b = sg.tensor(T([rate * rate, bh, bw, 4], "float32", name="s2b"))
        oh, ow = bh - 2, bw - 2
        cout = 6 if kind == "CONV_2D" else 4
        conv_out = sg.tensor(T([rate * rate, oh, ow, cout], "float32", name="conv"))
        crops_v = np.array([[0, eh], [0, ew]], np.int32)
        crops = sg.tensor(T([2, 2], "int32", data=crops_v, name="crops"))
        y = sg.tensor(T([1, h, w_, cout], "float32", name="dilated"))
        b = sg.tensor(T([cout], "float32", data=f32(cout), name="b"))
        sg.op("SPACE_TO_BATCH_ND", [x, block, pad_t], [s2b])
        if kind == "CONV_2D":
            wt = sg.tensor(T([6, 3, 3, 4], "float32", data=f32(6, 3, 3, 4), name="w"))
            sg.op("CONV_2D", [s2b, wt, b], [conv_out], opts("Conv2DOptions", padding=1, strideW=1, strideH=1,
                                                          fusedActivationFunction=1))
        else:
            wt = sg.tensor(T([1, 3, 3, 4], "float32", data=f32(1, 3, 3, 4), name="w"))
            sg.op("DEPTHWISE_CONV_2D", [s2b, wt, b], [conv_out],
                  opts("DepthwiseConv2DOptions", padding=1, strideW=1, strideH=1, depthMultiplier=1))
        sg.op("BATCH_TO_SPACE_ND", [conv_out, block, crops], [y])
        w2 = sg.tensor(T([3, 1, 1, cout], "float32", data=f32(3, 1, 1, cout), name="w2"))
        b2 = sg.tensor(T([3], "float32", data=f32(3), name="b2"))
        z = sg.tensor(T([1, h, w_, 3], "float32", name="z"))
        sg.op("CONV_2D", [y, w2, b2], [z], opts("Conv2DOptions", padding=1, strideW=1, strideH=1))
        sg.io([x], [z])
    return build


@pytest.mark.parametrize("kind,rate", [("CONV_2D", 2), ("DEPTHWISE_CONV_2D", 2), ("CONV_2D", 3)])
def test_dilated_convolution_is_folded(kind, rate, tmp_path):
    path = _write(tmp_path, _dilated(kind, rate))
    graph = import_tflite(path)
    counts = graph.op_counts()
    assert "SPACE_TO_BATCH_ND" not in counts and "BATCH_TO_SPACE_ND" not in counts
    dil = [op for op in graph.ops if op.attrs.get("dilation", (1, 1)) != (1, 1)]
    assert len(dil) == 1 and dil[0].kind == kind and dil[0].attrs["dilation"] == (rate, rate)
    m = check_graph(graph, uniform((1, 9, 11, 4), seed=2), litert_reference(path), tmp_path, min_sqnr=30.0)
    assert m.tflite["z"] >= 30.0


def test_space_to_batch_outside_the_pattern_is_refused(tmp_path):
    def build(sg: Any) -> None:
        x = sg.tensor(T([1, 4, 4, 2], "float32", name="x"))
        block = sg.tensor(T([2], "int32", data=np.array([2, 2], np.int32), name="block"))
        pads = sg.tensor(T([2, 2], "int32", data=np.zeros((2, 2), np.int32), name="paddings"))
        y = sg.tensor(T([4, 2, 2, 2], "float32", name="y"))
        z = sg.tensor(T([4, 2, 2, 2], "float32", name="z"))
        sg.op("SPACE_TO_BATCH_ND", [x, block, pads], [y])
        sg.op("RELU", [y], [z])
        sg.io([x], [z])
    with pytest.raises(UnsupportedModelError) as e:
        import_tflite(_write(tmp_path, build))
    msg = str(e.value)
    assert "SPACE_TO_BATCH_ND" in msg and "operator 0" in msg and "dilation_rate" in msg and "\n" not in msg


def _ssd_options(max_det: int = 6, score: float = 0.3, iou: float = 0.5, num_classes: int = 2,
                 regular: bool = False) -> bytes:
    flexbuffers = pytest.importorskip("flatbuffers.flexbuffers")
    fbb = flexbuffers.Builder()
    with fbb.Map():
        fbb.Int("max_detections", max_det)
        fbb.Int("max_classes_per_detection", 1)
        fbb.Int("detections_per_class", 100)
        fbb.Bool("use_regular_nms", regular)
        fbb.Float("nms_score_threshold", score)
        fbb.Float("nms_iou_threshold", iou)
        fbb.Int("num_classes", num_classes)
        for k, v in zip(("y_scale", "x_scale", "h_scale", "w_scale"), (10.0, 10.0, 5.0, 5.0)):
            fbb.Float(k, v)
    return bytes(fbb.Finish())


def _ssd(regular: bool = False) -> Callable[[Any], None]:
    """A float SSD-style head: conv trunk, box and class 1x1 convs reshaped to [1, 64, 4] and [1, 64, 3]
    (background + 2 classes, LOGISTIC scores), then TFLite_Detection_PostProcess (fast NMS)."""
    def build(sg: Any) -> None:
        n, m = 64, 6
        gy, gx = np.meshgrid((np.arange(8) + 0.5) / 8, (np.arange(8) + 0.5) / 8, indexing="ij")
        anchors = np.stack([gy.ravel(), gx.ravel(), np.full(n, 0.3), np.full(n, 0.3)], 1).astype(np.float32)
        x = sg.tensor(T([1, 8, 8, 3], "float32", name="x"))
        trunk = sg.tensor(T([1, 8, 8, 12], "float32", name="trunk"))
        box4 = sg.tensor(T([1, 8, 8, 4], "float32", name="box_map"))
        cls3 = sg.tensor(T([1, 8, 8, 3], "float32", name="cls_map"))
        boxes = sg.tensor(T([1, n, 4], "float32", name="box_encodings"))
        logits = sg.tensor(T([1, n, 3], "float32", name="class_logits"))
        scores = sg.tensor(T([1, n, 3], "float32", name="class_scores"))
        anc = sg.tensor(T([n, 4], "float32", data=anchors, name="anchors"))
        outs = [sg.tensor(T([1, m, 4], "float32", name="detection_boxes")),
                sg.tensor(T([1, m], "float32", name="detection_classes")),
                sg.tensor(T([1, m], "float32", name="detection_scores")),
                sg.tensor(T([1], "float32", name="num_detections"))]
        conv = opts("Conv2DOptions", padding=0, strideW=1, strideH=1, fusedActivationFunction=1)
        sg.op("CONV_2D", [x, sg.tensor(T([12, 3, 3, 3], "float32", data=f32(12, 3, 3, 3, scale=0.5))),
                          sg.tensor(T([12], "float32", data=f32(12)))], [trunk], conv)
        sg.op("CONV_2D", [trunk, sg.tensor(T([4, 1, 1, 12], "float32", data=f32(4, 1, 1, 12))),
                          sg.tensor(T([4], "float32", data=f32(4)))], [box4], opts("Conv2DOptions", padding=0, strideW=1, strideH=1))
        sg.op("CONV_2D", [trunk, sg.tensor(T([3, 1, 1, 12], "float32", data=f32(3, 1, 1, 12, scale=0.2))),
                          sg.tensor(T([3], "float32", data=np.array([0.0, -0.3, -0.3], np.float32)))], [cls3],
              opts("Conv2DOptions", padding=0, strideW=1, strideH=1))
        for src, dst, last in ((box4, boxes, 4), (cls3, logits, 3)):
            sg.op("RESHAPE", [src, sg.tensor(T([3], "int32", data=np.array([1, n, last], np.int32)))], [dst])
        sg.op("LOGISTIC", [logits], [scores])
        sg.op("custom:TFLite_Detection_PostProcess", [boxes, scores, anc], outs,
              custom_options=_ssd_options(m, regular=regular))
        sg.io([x], outs)
    return build


def _rows(d: list[np.ndarray]) -> np.ndarray:
    """The reported detections as rows (score, class, box), in a canonical order: runtimes order equal
    (int8) scores differently."""
    k = int(d[3][0])
    rows = np.concatenate([d[2][0, :k, None], d[1][0, :k, None], d[0][0, :k]], axis=1).astype(np.float64)
    return rows[np.lexsort(np.round(rows.T[::-1], 3))]


def _same_detections(want: list[np.ndarray], got: list[np.ndarray], atol: float) -> bool:
    """Same count, classes and (within ``atol``) boxes and scores over the reported rows."""
    if int(got[3][0]) != int(want[3][0]):
        return False
    a, b = _rows(want), _rows(got)
    return bool(np.array_equal(a[:, 1], b[:, 1]) and np.allclose(a, b, atol=atol))


def test_ssd_detection_postprocess_is_kept(tmp_path):
    import os

    from converters.calibrate import calibrate, float_session, run_float
    from converters.calibration_data import open_calibration
    from converters.quantize import plan_quantization
    from converters.report import OnnxRunner, TFLiteRunner
    from converters.writers.onnx import write_onnx
    from converters.writers.tflite import write_tflite
    from edge_runtime.formats.tflite import TFLiteModel

    path = _write(tmp_path, _ssd())
    graph = import_tflite(path)
    assert graph.op_counts().get("DETECTION_POSTPROCESS") == 1
    data = uniform((1, 8, 8, 3), seed=5)
    ref = litert_reference(path)
    sess = float_session(graph)
    for x in data[:8]:  # the float IR (the ONNX form of the op in onnxruntime) equals LiteRT's kernel
        got = run_float(sess, graph, x)
        assert _same_detections(ref(x), [got[o] for o in graph.outputs], 1e-5)
    name = graph.inputs[0]
    plan = plan_quantization(graph, calibrate(graph, open_calibration(data[:32], graph.source_shape(name), name),
                                              "minmax", session=sess))
    assert any("TFLite_Detection_PostProcess" in s for s in plan.float_islands)
    tfl, qdq = os.path.join(str(tmp_path), "ssd_int8.tflite"), os.path.join(str(tmp_path), "ssd_int8.onnx")
    write_tflite(graph, plan, tfl)
    write_onnx(graph, plan, qdq)
    sg = TFLiteModel.open(tfl).main
    types = [sg.tensors[i].type_name for i in sg.operators[-1].inputs]
    assert sg.operators[-1].name == "TFLite_Detection_PostProcess" and types == ["FLOAT32"] * 3
    assert [sg.tensors[i].type_name for i in sg.outputs] == ["FLOAT32"] * 4
    lite, ort_q = TFLiteRunner(tfl), OnnxRunner(qdq, plan, graph)
    qs = [[TFLiteRunner._q(x, lite.inp)] for x in data[32:]]
    tflm = tb.run_tflm(tfl, qs)
    micro = tb.run_micro(tfl, qs)
    agree_float, agree_lite, agree_onnx, detections = 0, 0, 0, 0
    for x, q, t, mi in zip(data[32:], qs, tflm, micro):
        lr = lite.run(x)
        # micro == tflite-micro bit-exactly on every reported row (rows past the count are unspecified)
        k = int(t[3][0])
        detections += k
        assert np.array_equal(mi[3], t[3]) and all(np.array_equal(mi[j][0, :k], t[j][0, :k]) for j in range(3))
        # LiteRT's and onnxruntime's int8 kernels may differ from TFLM's by an LSB of the box encodings, which
        # can change a tie in NMS: counted, not required on every sample
        agree_lite += _same_detections(t, lr, 1e-2)
        agree_onnx += _same_detections(lr, ort_q.run(x), 1e-2)
        fl = ref(x)  # the best detection (class and box) of int8 against float
        agree_float += bool(fl[3][0] > 0 and lr[1][0, 0] == fl[1][0, 0] and np.abs(lr[0][0, 0] - fl[0][0, 0]).max() < 0.05)
    assert detections > 0
    print(f"ssd: {detections} detections on {len(qs)} held-out samples; same detections LiteRT/TFLM "
          f"{agree_lite}/{len(qs)}, QDQ ONNX/LiteRT {agree_onnx}/{len(qs)}; int8's best detection matches "
          f"float's on {agree_float}/{len(qs)}")
    assert agree_lite >= len(qs) * 3 // 4 and agree_onnx >= len(qs) * 3 // 4
    assert agree_float >= len(qs) // 2


def test_ssd_regular_nms_is_refused(tmp_path):
    with pytest.raises(UnsupportedModelError) as e:
        import_tflite(_write(tmp_path, _ssd(regular=True)))
    msg = str(e.value)
    assert "TFLite_Detection_PostProcess" in msg and "use_regular_nms" in msg and "\n" not in msg


def test_rounding_and_trigonometry_float_islands(tmp_path):
    kinds = ("FLOOR", "CEIL", "ROUND", "SIN", "COS")

    def build(sg: Any) -> None:
        x = sg.tensor(T([1, 5, 5, 4], "float32", name="x"))
        x3 = sg.tensor(T([1, 5, 5, 4], "float32", name="x3"))
        sg.op("MUL", [x, sg.tensor(T([1], "float32", data=np.array([3.0], np.float32)))], [x3], opts("MulOptions"))
        outs = [sg.tensor(T([1, 5, 5, 4], "float32", name=k.lower())) for k in kinds]
        for k, o in zip(kinds, outs):
            sg.op(k, [x3], [o])
        sg.io([x], outs)
    path = _write(tmp_path, build)
    graph = import_tflite(path)
    assert all(graph.op_counts().get(k) == 1 for k in kinds)
    m = check_graph(graph, uniform((1, 5, 5, 4), seed=3), litert_reference(path), tmp_path, min_sqnr=15.0)
    assert m.tflite["sin"] >= 25.0 and m.tflite["cos"] >= 25.0


def test_comparisons_logical_and_select(tmp_path):
    def build(sg: Any) -> None:
        shape = [1, 5, 5, 4]
        x = sg.tensor(T(shape, "float32", name="x"))
        c = sg.tensor(T(shape, "float32", name="c"))
        sg.op("CONV_2D", [x, sg.tensor(T([4, 1, 1, 4], "float32", data=f32(4, 1, 1, 4, scale=0.6))),
                          sg.tensor(T([4], "float32", data=f32(4)))], [c],
              opts("Conv2DOptions", padding=1, strideW=1, strideH=1))
        thr = sg.tensor(T([4], "float32", data=np.array([-0.2, 0.0, 0.1, 0.3], np.float32), name="thr"))
        zero = sg.tensor(T([1], "float32", data=np.zeros(1, np.float32), name="zero"))
        m = {k: sg.tensor(T(shape, "bool", name=k)) for k in ("gt", "le", "eq", "ne", "not_gt", "and", "or")}
        sg.op("GREATER", [c, thr], [m["gt"]])
        sg.op("LESS_EQUAL", [x, c], [m["le"]])
        sg.op("EQUAL", [c, zero], [m["eq"]])
        sg.op("NOT_EQUAL", [x, zero], [m["ne"]])
        sg.op("LOGICAL_NOT", [m["gt"]], [m["not_gt"]])
        sg.op("LOGICAL_AND", [m["not_gt"], m["ne"]], [m["and"]])
        sg.op("LOGICAL_OR", [m["and"], m["eq"]], [m["or"]])
        s1 = sg.tensor(T(shape, "float32", name="s1"))
        y = sg.tensor(T(shape, "float32", name="y"))
        sg.op("SELECT_V2", [m["or"], c, zero], [s1])
        sg.op("SELECT_V2", [m["le"], s1, x], [y])
        sg.io([x], [y, m["gt"]])
    path = _write(tmp_path, build)
    graph = import_tflite(path)
    assert graph.op_counts().get("SELECT_V2") == 2 and graph.op_counts().get("LOGICAL_OR") == 1
    m = check_graph(graph, uniform((1, 5, 5, 4), seed=4), litert_reference(path), tmp_path, min_sqnr=20.0,
                    min_match=0.97)
    assert m.tflite["gt"] >= 0.97


def test_folded_constants_and_floor_div_mod(tmp_path):
    """SHAPE/FILL/ZEROS_LIKE/BROADCAST_ARGS fold to constants; FLOOR_DIV/FLOOR_MOD become DIV + FLOOR (island)."""
    def build(sg: Any) -> None:
        shape = [1, 4, 4, 3]
        x = sg.tensor(T(shape, "float32", name="x"))
        shp = sg.tensor(T([4], "int32", name="shape"))
        args = sg.tensor(T([4], "int32", name="bargs"))
        half = sg.tensor(T([], "float32", data=np.array(0.25, np.float32), name="quarter"))
        filled = sg.tensor(T(shape, "float32", name="filled"))
        zeros = sg.tensor(T(shape, "float32", name="zeros"))
        plus = sg.tensor(T(shape, "float32", name="plus"))
        plus2 = sg.tensor(T(shape, "float32", name="plus2"))
        div = sg.tensor(T(shape, "float32", name="floordiv"))
        mod = sg.tensor(T(shape, "float32", name="floormod"))
        k = sg.tensor(T([1], "float32", data=np.array([0.3], np.float32), name="k"))
        sg.op("SHAPE", [x], [shp], opts("ShapeOptions", outType=2))
        sg.op("BROADCAST_ARGS", [shp, sg.tensor(T([4], "int32", data=np.array([1, 1, 1, 3], np.int32)))], [args])
        sg.op("FILL", [args, half], [filled])
        sg.op("ZEROS_LIKE", [x], [zeros])
        sg.op("ADD", [x, filled], [plus], opts("AddOptions"))
        sg.op("ADD", [plus, zeros], [plus2], opts("AddOptions"))
        sg.op("FLOOR_DIV", [plus2, k], [div])
        sg.op("FLOOR_MOD", [plus2, k], [mod])
        sg.io([x], [div, mod])
    path = _write(tmp_path, build)
    graph = import_tflite(path)
    counts = graph.op_counts()
    assert not {"SHAPE", "FILL", "ZEROS_LIKE", "BROADCAST_ARGS"} & set(counts) and counts.get("FLOOR") == 2
    check_graph(graph, uniform((1, 4, 4, 3), seed=8), litert_reference(path), tmp_path, min_sqnr=12.0)


def test_broadcast_to(tmp_path):
    def build(sg: Any) -> None:
        x = sg.tensor(T([1, 1, 6, 3], "float32", name="x"))
        y = sg.tensor(T([2, 4, 6, 3], "float32", name="y"))
        z = sg.tensor(T([2, 4, 6, 3], "float32", name="z"))
        sg.op("BROADCAST_TO", [x, sg.tensor(T([4], "int32", data=np.array([2, 4, 6, 3], np.int32)))], [y],
              version=2)
        sg.op("ADD", [y, sg.tensor(T([4, 6, 3], "float32", data=f32(4, 6, 3)))], [z], opts("AddOptions"))
        sg.io([x], [z])
    path = _write(tmp_path, build)
    graph = import_tflite(path)
    assert "CONCATENATION" in graph.op_counts()
    check_graph(graph, uniform((1, 1, 6, 3), seed=9), litert_reference(path), tmp_path, min_sqnr=30.0)
