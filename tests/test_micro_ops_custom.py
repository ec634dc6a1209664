"""Custom ops on micro against tflite-micro: TFLite_Detection_PostProcess (SSD post-processing).

Boxes, classes and scores are float outputs: equal to tflite-micro within 1e-6 relative, and the
selected classes and the detection count exactly. With fast NMS TFLM leaves rows past the count
untouched, so only the first ``num_detections`` rows are compared there.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from edge_runtime.backends.micro import open_model
from edge_runtime.errors import UnsupportedModelError
from tflite_builder import ModelBuilder, T, run_tflm

flexbuffers = pytest.importorskip("flatbuffers.flexbuffers")
SETTINGS = settings(max_examples=200, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _options(max_det, max_cls, per_class, regular, score_thr, iou_thr, num_classes, scales) -> bytes:
    fbb = flexbuffers.Builder()
    with fbb.Map():
        fbb.Int("max_detections", max_det)
        fbb.Int("max_classes_per_detection", max_cls)
        fbb.Int("detections_per_class", per_class)
        fbb.Bool("use_regular_nms", regular)
        fbb.Float("nms_score_threshold", score_thr)
        fbb.Float("nms_iou_threshold", iou_thr)
        fbb.Int("num_classes", num_classes)
        for k, v in zip(("y_scale", "x_scale", "h_scale", "w_scale"), scales):
            fbb.Float(k, v)
    return bytes(fbb.Finish())


def _model(path, n, classes, background, max_det, max_cls, per_class, regular, score_thr, iou_thr, anchors):
    mb = ModelBuilder()
    sg = mb.subgraph()
    cwb = classes + background
    per = max_det * (1 if regular else min(max_cls, classes))
    b = sg.tensor(T((1, n, 4), "float32"))
    s = sg.tensor(T((1, n, cwb), "float32"))
    a = sg.tensor(T((n, 4), "float32", data=anchors))
    outs = [sg.tensor(T((1, per, 4), "float32")), sg.tensor(T((1, per), "float32")),
            sg.tensor(T((1, per), "float32")), sg.tensor(T((1,), "float32"))]
    sg.op("custom:TFLite_Detection_PostProcess", [b, s, a], outs,
          custom_options=_options(max_det, max_cls, per_class, regular, score_thr, iou_thr, classes,
                                  (10.0, 10.0, 5.0, 5.0)))
    sg.io([b, s], outs)
    return mb.write(path)


@pytest.mark.parity("TFLite_Detection_PostProcess", "float32")
@SETTINGS
# (n >= 8, max_det >= 2: below that, TFLM's regular-NMS scratch (max_detections x boxes) is smaller than
# what it writes (max_detections + boxes) and tflite-micro itself crashes.)
@given(n=st.integers(8, 40), classes=st.integers(1, 6), background=st.integers(0, 1), max_det=st.integers(2, 10),
       max_cls=st.just(1), per_class=st.integers(1, 10), regular=st.booleans(),
       score_thr=st.sampled_from([0.0, 0.3, 0.5]), iou_thr=st.sampled_from([0.3, 0.5, 0.6, 1.0]),
       seed=st.integers(0, 2**31 - 1))
def test_detection_postprocess_matches_tflite_micro(tmp_path, n, classes, background, max_det, max_cls, per_class,
                                                    regular, score_thr, iou_thr, seed):
    rng = np.random.default_rng(seed)
    anchors = np.stack([rng.uniform(0, 1, n), rng.uniform(0, 1, n), rng.uniform(0.05, 0.5, n),
                        rng.uniform(0.05, 0.5, n)], 1).astype(np.float32)
    p = _model(tmp_path / "ssd.tflite", n, classes, background, max_det, max_cls, per_class, regular, score_thr,
               iou_thr, anchors)
    inputs = [[rng.normal(0, 1, (1, n, 4)).astype(np.float32),
               # coarse scores so that ties (and their tie-breaking) happen
               (rng.integers(0, 8, (1, n, classes + background)) / 8).astype(np.float32)] for _ in range(2)]
    expect = run_tflm(p, inputs)
    m = open_model(str(p))
    for xs, e in zip(inputs, expect):
        got = m.run(xs)
        k = int(e[3][0])
        assert int(got[3][0]) == k
        rows = slice(None) if regular else slice(0, k)
        np.testing.assert_array_equal(got[1][0, rows], e[1][0, rows])
        for j in (0, 2):
            np.testing.assert_array_equal(got[j][0, rows], e[j][0, rows])


def test_fast_nms_with_several_classes_per_detection_is_refused(tmp_path):
    anchors = np.full((8, 4), 0.5, np.float32)
    p = _model(tmp_path / "m.tflite", 8, 4, 0, 4, 3, 1, False, 0.0, 0.5, anchors)
    with pytest.raises(UnsupportedModelError, match="max_classes_per_detection > 1"):
        open_model(str(p))


def test_int8_inputs_are_refused_in_one_line(tmp_path):
    mb = ModelBuilder()
    sg = mb.subgraph()
    b = sg.tensor(T((1, 4, 4), "int8", scale=0.1))
    s = sg.tensor(T((1, 4, 3), "int8", scale=0.1))
    a = sg.tensor(T((4, 4), "float32", data=np.ones((4, 4), np.float32)))
    outs = [sg.tensor(T((1, 2, 4), "float32")), sg.tensor(T((1, 2), "float32")), sg.tensor(T((1, 2), "float32")),
            sg.tensor(T((1,), "float32"))]
    sg.op("custom:TFLite_Detection_PostProcess", [b, s, a], outs,
          custom_options=_options(2, 1, 2, False, 0.1, 0.5, 2, (10.0, 10.0, 5.0, 5.0)))
    sg.io([b, s], outs)
    p = mb.write(tmp_path / "q.tflite")
    with pytest.raises(UnsupportedModelError, match="box encodings must be float32") as info:
        open_model(str(p))
    assert "\n" not in str(info.value)


def test_garbage_custom_options_are_refused_in_one_line(tmp_path):
    mb = ModelBuilder()
    sg = mb.subgraph()
    b = sg.tensor(T((1, 4, 4), "float32"))
    s = sg.tensor(T((1, 4, 3), "float32"))
    a = sg.tensor(T((4, 4), "float32", data=np.ones((4, 4), np.float32)))
    outs = [sg.tensor(T((1, 2, 4), "float32")), sg.tensor(T((1, 2), "float32")), sg.tensor(T((1, 2), "float32")),
            sg.tensor(T((1,), "float32"))]
    sg.op("custom:TFLite_Detection_PostProcess", [b, s, a], outs, custom_options=b"\x07\xff\x01\x02\x03")
    sg.io([b, s], outs)
    p = mb.write(tmp_path / "g.tflite")
    with pytest.raises(UnsupportedModelError, match="FlexBuffer|custom options"):
        open_model(str(p))
