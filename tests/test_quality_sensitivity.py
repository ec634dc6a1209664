"""The fake-quant simulation behind ``--analyze``: exact float when off, close to the real int8 model when on."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from converters.calibrate import calibrate, float_session, run_float
from converters.calibration_data import open_calibration
from converters.pipeline import import_model
from converters.quality.metrics import sqnr_db
from converters.quality.sensitivity import FakeQuantRunner, analyze
from converters.quantize import plan_quantization
from converters.report import TFLiteRunner
from converters.writers.tflite import write_tflite

DATA = Path(__file__).resolve().parents[1] / "converters" / "data"


@pytest.fixture(scope="module")
def digits(tmp_path_factory):  # type: ignore[no-untyped-def]
    g = import_model(DATA / "digits_cnn.onnx")
    data = open_calibration(DATA / "digits_calib.npz", g.source_shape(g.inputs[0]), g.inputs[0])
    sess = float_session(g)
    plan = plan_quantization(g, calibrate(g, data, "mse", session=sess))
    path = str(tmp_path_factory.mktemp("digits") / "d.tflite")
    write_tflite(g, plan, path)
    xs = [g.to_ir_layout(g.inputs[0], x) for i, x in enumerate(data) if i < 16]
    return g, plan, sess, path, xs


def test_mask_off_is_float_and_mask_on_tracks_the_int8_model(digits):  # type: ignore[no-untyped-def]
    g, plan, sess, path, xs = digits
    fq = FakeQuantRunner(g, plan)
    out = g.outputs[0]
    ref = np.stack([run_float(sess, g, x)[out] for x in xs])
    off = np.stack([o[0] for o in fq.outputs(xs, fq.mask([]))])
    np.testing.assert_allclose(off, ref, rtol=1e-5, atol=1e-4)  # ORT fuses the two graphs differently
    on = np.stack([o[0] for o in fq.outputs(xs, fq.mask(None))])
    lite = TFLiteRunner(path)
    q = np.stack([lite.run(x)[0] for x in xs]).reshape(ref.shape)
    sim_db = sqnr_db(float(np.sum(ref ** 2)), float(np.sum((ref - on) ** 2)))
    real_db = sqnr_db(float(np.sum(ref ** 2)), float(np.sum((ref - q) ** 2)))
    assert 25 < sim_db < 60 and abs(sim_db - real_db) < 3, (sim_db, real_db)
    assert fq.mask([0]).sum() == 2 and fq.mask([0], invert=True).sum() == len(fq.points) - 2  # weights + output


def test_analyze_covers_every_layer_sorted(digits):  # type: ignore[no-untyped-def]
    g, plan, _, _, xs = digits
    res = analyze(g, plan, _source(g, xs))
    assert {r["index"] for r in res["layers"]} == set(range(-1, len(g.ops)))
    vals = [r["only_quantized_db"] for r in res["layers"]]
    assert vals == sorted(vals)
    assert all(r["only_quantized_db"] >= res["all_quantized_db"] - 0.5 for r in res["layers"])
    assert res["top"] == [r["index"] for r in res["layers"][:3]]


def _source(g, xs):  # type: ignore[no-untyped-def]
    """Back from NHWC to the source (NCHW) layout the pipeline's samples come in."""
    return [x.transpose(0, 3, 1, 2) for x in xs] if g.input_layouts.get(g.inputs[0]) == "NCHW" else xs
