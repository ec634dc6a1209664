"""The converter on the project's own digits CNN (float ONNX from torch.onnx.export).

References: the float ONNX model in onnxruntime (accuracy on the held-out split), LiteRT and
onnxruntime running the int8 outputs, tflite-micro for the .tflite, and the TFLite int8
quantization spec for the file's parameters.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from converters.pipeline import convert_model
from converters.report import TFLiteRunner
from edge_runtime.formats.tflite import TFLiteModel
from helpers import micro_available

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "converters" / "data"
HELD = ROOT / "tests" / "fixtures" / "digits" / "digits_heldout.npz"


@pytest.fixture(scope="module")
def digits():
    z = np.load(HELD)
    return z["x"], z["y"]


@pytest.fixture(scope="module")
def converted(tmp_path_factory, digits):
    out = tmp_path_factory.mktemp("digits")
    return convert_model(DATA / "digits_cnn.onnx", "rpi4-4gb", DATA / "digits_calib.npz", out, held_out=digits,
                         plot=False)  # report.png only when asked (tests/test_quality_report.py draws one)


def _float_accuracy(x: np.ndarray, y: np.ndarray) -> float:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(DATA / "digits_cnn.onnx"), providers=["CPUExecutionProvider"])
    logits = sess.run(None, {"image": x.astype(np.float32)})[0]
    return float(np.mean(logits.argmax(1) == y))


def test_both_int8_models_within_one_point_of_float(converted, digits):
    x, y = digits
    float_acc = _float_accuracy(x, y)
    # int8 TFLite in LiteRT (default configuration), computed here, not taken from the report
    runner = TFLiteRunner(converted.tflite_path)
    preds = np.array([runner.run(xi.transpose(1, 2, 0)[None])[0].argmax() for xi in x])
    tfl_acc = float(np.mean(preds == y))
    # int8 ONNX in onnxruntime, NCHW int8 input quantized with the model's input parameters
    import onnxruntime as ort

    sess = ort.InferenceSession(converted.onnx_path, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    assert inp.type == "tensor(int8)" and inp.shape == [1, 1, 8, 8]
    qin = converted.plan.activations[converted.graph.inputs[0]]
    onnx_preds = np.array([sess.run(None, {inp.name: qin.quantize(xi[None])})[0].argmax() for xi in x])
    onnx_acc = float(np.mean(onnx_preds == y))
    assert float_acc > 0.9
    assert abs(tfl_acc - float_acc) <= 0.01, (tfl_acc, float_acc)
    assert abs(onnx_acc - float_acc) <= 0.01, (onnx_acc, float_acc)
    assert converted.report["held_out"]["tflite"]["accuracy"] == pytest.approx(tfl_acc)
    # one set of decisions: the two int8 models agree on (nearly) every prediction
    assert np.mean(preds == onnx_preds) >= 0.99


def test_tflite_follows_the_int8_spec(converted):
    m = TFLiteModel.open(converted.tflite_path)
    sg = m.main
    t = sg.tensors
    assert t[sg.inputs[0]].type_name == "INT8" and t[sg.outputs[0]].type_name == "INT8"
    assert t[sg.inputs[0]].shape == (1, 8, 8, 1)  # NCHW source converted to NHWC
    seen = set()
    for op in sg.operators:
        seen.add(op.name)
        if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            x, w, b = (t[i] for i in op.inputs[:3])
            assert w.type_name == "INT8" and b.type_name == "INT32"
            assert np.all(w.quantization.zero_point == 0)
            assert np.all(np.abs(w.array()) <= 127)
            channels = w.shape[3] if op.name == "DEPTHWISE_CONV_2D" else w.shape[0]  # FC: per channel too
            assert w.quantization.scale.size == channels
            assert w.quantization.quantized_dimension == (3 if op.name == "DEPTHWISE_CONV_2D" else 0)
            expect = np.float32(x.quantization.scale[0]) * w.quantization.scale.astype(np.float32)
            np.testing.assert_allclose(b.quantization.scale, expect, rtol=1e-6)
        if op.name in ("MAX_POOL_2D", "AVERAGE_POOL_2D", "RESHAPE", "TRANSPOSE"):
            qi, qo = t[op.inputs[0]].quantization, t[op.outputs[0]].quantization
            assert qi.scale[0] == qo.scale[0] and qi.zero_point[0] == qo.zero_point[0]
        for i in list(op.inputs) + list(op.outputs):
            if i >= 0 and t[i].data is None:
                assert t[i].type_name == "INT8"
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MAX_POOL_2D", "FULLY_CONNECTED"} <= seen


def test_constant_buffers_are_16_byte_aligned(converted):
    import tflite

    data = Path(converted.tflite_path).read_bytes()
    model = tflite.Model.GetRootAs(data, 0)
    checked = 0
    for i in range(model.BuffersLength()):
        buf = model.Buffers(i)
        if buf.DataLength():
            start = buf._tab.Vector(buf._tab.Offset(4))
            assert start % 16 == 0, (i, start)
            checked += 1
    assert checked >= 10


def test_tflite_runs_in_tflite_micro_and_matches_micro_backend(converted, digits):
    runtime = pytest.importorskip("tflite_micro.python.tflite_micro.runtime",
                                  reason="tflite-micro is a dev dependency on x86_64")
    import edge_runtime

    x, _ = digits
    tflm = runtime.Interpreter.from_file(converted.tflite_path)
    ref = TFLiteRunner(converted.tflite_path, preserve=True)  # LiteRT builtin kernels
    spec_in = ref.inp
    micro = edge_runtime.load(converted.tflite_path, backend="micro") if micro_available() else None
    agree = 0
    for xi in x[:60]:
        q = TFLiteRunner._q(xi.transpose(1, 2, 0)[None], spec_in)
        tflm.set_input(q, 0)
        tflm.invoke()
        out_tflm = tflm.get_output(0)
        out_ref = ref.run_raw(q)
        agree += int(out_tflm.argmax() == out_ref.argmax())
        assert np.abs(out_tflm.astype(int) - out_ref.astype(int)).max() <= 2
        if micro is not None:
            assert np.array_equal(micro.run(q)[0], out_tflm), "micro backend differs from tflite-micro"
    assert agree >= 59
    if micro is None:
        pytest.skip("the micro backend (edge_runtime.backends.micro.open_model) is not installed")


@pytest.mark.parametrize("io", ["uint8", "float32"])
def test_io_dtype_variants_give_the_same_predictions(tmp_path, digits, converted, io):
    x, _ = digits
    res = convert_model(DATA / "digits_cnn.onnx", "rpi4-4gb", DATA / "digits_calib.npz", tmp_path,
                        io_dtype=io, held_out=(x[:50], None), task="classify")  # logits without labels
    m = TFLiteModel.open(res.tflite_path)
    want = {"uint8": "UINT8", "float32": "FLOAT32"}[io]
    assert m.main.tensors[m.main.inputs[0]].type_name == want
    assert m.main.tensors[m.main.outputs[0]].type_name == want
    a, b = TFLiteRunner(res.tflite_path), TFLiteRunner(converted.tflite_path)
    for xi in x[:50]:
        xin = xi.transpose(1, 2, 0)[None]
        np.testing.assert_allclose(a.run(xin)[0], b.run(xin)[0], atol=1e-6)
    assert res.report["held_out"]["onnx"]["top1_agreement_with_float"] >= 0.98


def test_report_files_and_flags(converted):
    out = Path(converted.report_path).parent
    md = (out / "report.md").read_text()
    assert "Per-layer SQNR" in md and "top-1 agreement" in md
    assert converted.report["plot"] is None and not (out / "report.png").exists() and "report.png" not in md
    layers = converted.report["layers"]
    assert len(layers) == len(converted.graph.ops) + 1
    assert all(r["sqnr_db"] > 20 for r in layers)
    flagged = [r for r in layers if r["flagged"]]
    assert 1 <= len(flagged) <= 3
    worst = max((r for r in layers if r["index"] >= 0), key=lambda r: r["loss_db"])
    assert worst["flagged"]
    assert converted.fits and converted.report["fit"]["flash_bytes"] == Path(converted.tflite_path).stat().st_size
