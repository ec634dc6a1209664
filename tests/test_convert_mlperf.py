"""Converter acceptance on the MLPerf Tiny reference models in ../shared (skips when absent, fails under CI).

References: TensorFlow's own int8 models (kws_ref_model, vww_96_int8, pretrainedResnet_quant) and
the float models, all run in LiteRT's default configuration; tflite-micro for the .tflite; the
documented fp32 anomaly score 9.7071 for ad01.
"""
from __future__ import annotations

import numpy as np
import pytest

from converters.calibration_data import synthetic_images
from converters.cli import main as edge_convert
from converters.pipeline import convert_model
from converters.report import TFLiteRunner
from edge_runtime.reference_data import KWS_INPUT_SCALE, KWS_INPUT_ZERO_POINT, load_ad01_windows
from helpers import micro_available


def _run_quantized(path: str, xs: np.ndarray) -> np.ndarray:
    """Feed already-quantized inputs to a .tflite in LiteRT (default configuration); raw outputs."""
    return TFLiteRunner(path).run_batch(xs, quantized=True)


def _run_float(path: str, xs: np.ndarray) -> np.ndarray:
    return TFLiteRunner(path).run_batch(xs)


@pytest.fixture(scope="module")
def kws(tmp_path_factory, mlperf_models, kws01):
    x, y, _ = kws01
    xf = ((x.astype(np.float32) - KWS_INPUT_ZERO_POINT) * np.float32(KWS_INPUT_SCALE)).astype(np.float32)
    out = tmp_path_factory.mktemp("kws")
    res = convert_model(mlperf_models / "kws_ref_model_float32.tflite", "rpi4-4gb", xf[:100], out,
                        held_out=(xf[100:], y[100:]))
    return res, x, xf, y


def test_kws_top1_within_half_a_point_of_tensorflow_int8(kws, mlperf_models):
    res, x, xf, y = kws
    ours = _run_float(res.tflite_path, xf[100:]).argmax(1)  # TFLiteRunner quantizes with the model's params
    tf = _run_quantized(str(mlperf_models / "kws_ref_model.tflite"), x[100:]).argmax(1)
    acc_ours, acc_tf = float(np.mean(ours == y[100:])), float(np.mean(tf == y[100:]))
    assert len(y[100:]) == 900
    assert abs(acc_ours - acc_tf) <= 0.005, (acc_ours, acc_tf)
    assert res.report["held_out"]["tflite"]["accuracy"] == pytest.approx(acc_ours)
    assert abs(res.report["held_out"]["onnx"]["accuracy"] - acc_tf) <= 0.01
    # the hybrid source's int8 weights were read; the output keeps softmax's fixed parameters
    assert res.report["output"][0]["scale"] == pytest.approx(1 / 256) and res.report["output"][0]["zero_point"] == -128


def test_kws_runs_in_tflite_micro_and_micro_backend_bit_exact(kws):
    runtime = pytest.importorskip("tflite_micro.python.tflite_micro.runtime",
                                  reason="tflite-micro is a dev dependency on x86_64")
    import edge_runtime

    res, _, xf, _ = kws
    tflm = runtime.Interpreter.from_file(res.tflite_path)
    lite = TFLiteRunner(res.tflite_path)
    micro = edge_runtime.load(res.tflite_path, backend="micro") if micro_available() else None
    same_top1 = 0
    for xi in xf[100:160]:
        q = TFLiteRunner._q(xi.reshape(1, 49, 10, 1), lite.inp)
        tflm.set_input(q, 0)
        tflm.invoke()
        ref = tflm.get_output(0)
        same_top1 += int(ref.argmax() == lite.run_raw(q).argmax())
        if micro is not None:
            assert np.array_equal(micro.run(q)[0], ref), "micro backend output differs from tflite-micro"
    assert same_top1 >= 57
    if micro is None:
        pytest.skip("the micro backend (edge_runtime.backends.micro.open_model) is not installed")


def test_kws_from_a_directory_of_int8_bin_files(tmp_path, shared):
    d = shared / "models" / "mlperf_tiny" / "data" / "kws01"
    rc = edge_convert(["convert", str(shared / "models" / "mlperf_tiny" / "models" / "kws_ref_model_float32.tflite"),
                       "--profile", "stm32h743", "--calib", str(d), "--bin-scale", str(KWS_INPUT_SCALE),
                       "--bin-zero-point", str(KWS_INPUT_ZERO_POINT), "--limit", "20", "-o", str(tmp_path),
                       "--format", "tflite"])
    assert rc == 0
    import json

    rep = json.loads((tmp_path / "report.json").read_text())
    assert rep["calibration"]["samples"] == 20 and rep["fits"]
    assert rep["fit"]["arena_bytes"] < 64 * 1024


def test_ad01_anomaly_score_within_6_percent_of_fp32(tmp_path, mlperf_models):
    w = load_ad01_windows()
    res = convert_model(mlperf_models / "ad01_fp32.tflite", "rpi4-4gb", w[::2], tmp_path)  # calibrate on half
    r = TFLiteRunner(res.tflite_path)
    scores = [float(np.mean((xi - r.run(xi)[0]) ** 2)) for xi in w]  # input quantized, output dequantized
    fp32 = _run_float(str(mlperf_models / "ad01_fp32.tflite"), w)
    fp32_score = float(np.mean(np.mean((w.reshape(len(w), -1) - fp32) ** 2, axis=1)))
    assert fp32_score == pytest.approx(9.7071, abs=1e-3)
    assert abs(np.mean(scores) / 9.7071 - 1) < 0.06, np.mean(scores)


@pytest.mark.parametrize("name,tf_name,scale", [("vww_96_float.tflite", "vww_96_int8.tflite", 1.0),
                                                ("pretrainedResnet.tflite", "pretrainedResnet_quant.tflite", 255.0)])
def test_image_models_agree_with_float_as_well_as_tensorflow_int8(tmp_path, mlperf_models, name, tf_name, scale):
    hw = 96 if "vww" in name else 32
    calib = synthetic_images(100, hw, hw, seed=0) * scale
    test = synthetic_images(100, hw, hw, seed=1) * scale
    res = convert_model(mlperf_models / name, "rpi4-4gb", calib, tmp_path, formats=("tflite",))
    f = _run_float(str(mlperf_models / name), test)
    ours = _run_float(res.tflite_path, test)
    tf_r = TFLiteRunner(str(mlperf_models / tf_name))
    tf = np.stack([tf_r.run(xi[None])[0].reshape(-1) for xi in test])
    agree_ours = float(np.mean(ours.argmax(1) == f.argmax(1)))
    agree_tf = float(np.mean(tf.argmax(1) == f.argmax(1)))
    assert agree_ours >= agree_tf - 0.05, (agree_ours, agree_tf)
    assert agree_ours >= 0.85
    assert np.abs(ours - f).mean() <= 1.5 * np.abs(tf - f).mean()
