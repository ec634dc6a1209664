"""The MLPerf Tiny reference models through edge_runtime.load on LiteRT (issue section 7).

Every number checked here is documented in ../shared/models/README.md (reference:
ai-edge-litert 2.3.0 and the upstream MLPerf Tiny score files).
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import edge_runtime
from edge_runtime.reference_data import KWS_INPUT_SCALE, KWS_INPUT_ZERO_POINT, load_ad01_windows, mlperf_data

# file -> (input shape, input dtype, input (scale, zero point) or None, output shape)
DOCUMENTED = {
    "kws_ref_model.tflite": ((1, 49, 10, 1), np.int8, (0.584703, 83), (1, 12)),
    "kws_ref_model_float32.tflite": ((1, 49, 10, 1), np.float32, None, (1, 12)),
    "vww_96_int8.tflite": ((1, 96, 96, 3), np.int8, (0.00392157, -128), (1, 2)),
    "vww_96_float.tflite": ((1, 96, 96, 3), np.float32, None, (1, 2)),
    "pretrainedResnet_quant.tflite": ((1, 32, 32, 3), np.int8, (1.0, -128), (1, 10)),
    "pretrainedResnet.tflite": ((1, 32, 32, 3), np.float32, None, (1, 10)),
    "ad01_int8.tflite": ((1, 640), np.int8, (0.391015, 89), (1, 640)),
    "ad01_fp32.tflite": ((1, 640), np.float32, None, (1, 640)),
    "str_ww_ref_model.tflite": ((1, 30, 1, 40), np.int8, (0.00370104, -128), (1, 3)),
}


def test_every_mlperf_model_loads_and_runs(mlperf_models):
    files = sorted(p.name for p in mlperf_models.glob("*.tflite"))
    assert files == sorted(DOCUMENTED), "the shared model set changed; update DOCUMENTED from its README"
    for name in files:
        shape, dtype, quant, out_shape = DOCUMENTED[name]
        with edge_runtime.load(mlperf_models / name, backend="litert") as m:
            assert m.info["library"] == "ai-edge-litert"
            (spec,) = m.inputs
            assert spec.shape == shape and spec.dtype == dtype, name
            if quant is None:
                assert spec.scale is None
            else:
                assert spec.scale == pytest.approx(quant[0], rel=1e-5) and spec.zero_point == quant[1], name
            out = m.run(np.zeros(shape, dtype))[0]
            assert out.shape == out_shape and np.all(np.isfinite(out.astype(np.float64))), name


def _top1(model, x: np.ndarray) -> np.ndarray:
    return np.array([int(np.argmax(model.run(x[i])[0])) for i in range(x.shape[0])])


def test_kws_int8_top1_is_0902_with_default_kernels(mlperf_models, kws01):
    x, y, _ = kws01
    assert x.shape == (1000, 1, 49, 10, 1)
    with edge_runtime.load(mlperf_models / "kws_ref_model.tflite", backend="litert") as m:
        correct = int(np.sum(_top1(m, x) == y))
    assert correct == 902  # reference: README, LiteRT default (XNNPACK) kernels, 902/1000


def test_kws_int8_top1_is_0901_with_reference_kernels(mlperf_models, kws01):
    x, y, _ = kws01
    with edge_runtime.load(mlperf_models / "kws_ref_model.tflite", op_resolver="reference") as m:
        correct = int(np.sum(_top1(m, x) == y))
    assert correct == 901  # reference: README, LiteRT reference kernels, 0.901


def test_kws_float_top1_is_0900(mlperf_models, kws01):
    x, y, _ = kws01
    xf = ((x.astype(np.float32) - KWS_INPUT_ZERO_POINT) * np.float32(KWS_INPUT_SCALE)).astype(np.float32)
    with edge_runtime.load(mlperf_models / "kws_ref_model_float32.tflite") as m:
        correct = int(np.sum(_top1(m, xf) == y))
    assert correct == 900  # reference: README, 0.900


def _ad01_score(model, windows: np.ndarray) -> float:
    spec_in, spec_out = model.inputs[0], model.outputs[0]
    errs = []
    for w in windows:
        out = model.run(spec_in.quantize(w))[0]
        errs.append(float(np.mean((w.astype(np.float64) - spec_out.dequantize(out)) ** 2)))
    return float(np.mean(errs))


def test_ad01_anomaly_scores(mlperf_models):
    windows = load_ad01_windows()
    assert windows.shape == (196, 1, 640)
    with edge_runtime.load(mlperf_models / "ad01_fp32.tflite") as m:
        assert _ad01_score(m, windows) == pytest.approx(9.707100, abs=5e-6)  # reference: README (LiteRT)
    with edge_runtime.load(mlperf_models / "ad01_int8.tflite") as m:
        assert _ad01_score(m, windows) == pytest.approx(10.265210, abs=5e-6)  # reference: README (LiteRT)


def test_streaming_wake_word(mlperf_models):
    d = np.load(mlperf_data("sww", "sww_calibration_samples.npz"))
    specs, labels = d["specs"], d["labels"].astype(np.int64)
    with edge_runtime.load(mlperf_models / "str_ww_ref_model.tflite") as m:
        s = m.inputs[0]
        assert s.scale == pytest.approx(0.00370104, rel=1e-5) and s.zero_point == -128
        q = s.quantize(specs.reshape(45, 1, 30, 1, 40))
        assert int(np.sum(_top1(m, q) == labels)) == 41  # reference: README, 41/45
        got = [int(np.argmax(m.run(np.load(mlperf_data("sww", f"sww_test_input_class{c}_int8_1x30x1x40.npy")))[0]))
               for c in range(3)]
    assert got == [2, 1, 2]  # reference: README


def test_cli_run_evaluates_1000_kws_inputs_in_one_process(mlperf_models, kws01, tmp_path):
    x, y, _ = kws01
    xin, yout = tmp_path / "kws01.npy", tmp_path / "out.npy"
    np.save(xin, x)
    r = subprocess.run([sys.executable, "-m", "edge_runtime.cli", "run", str(mlperf_models / "kws_ref_model.tflite"),
                        "--input", str(xin), "--output", str(yout)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    out = np.load(yout)
    assert out.shape == (1000, 1, 12) and out.dtype == np.int8
    assert int(np.sum(out.reshape(1000, 12).argmax(axis=1) == y)) == 902  # reference: README


def test_cli_run_quantizes_float_inputs(mlperf_models, kws01, tmp_path):
    x, y, _ = kws01
    x, y = x[:50], y[:50]
    real = ((x.astype(np.float32) - KWS_INPUT_ZERO_POINT) * np.float32(KWS_INPUT_SCALE)).astype(np.float32)
    xin, out_q, out_i = tmp_path / "real.npy", tmp_path / "q.npy", tmp_path / "i.npy"
    np.save(xin, real)
    np.save(tmp_path / "int8.npy", x)
    model = str(mlperf_models / "kws_ref_model.tflite")
    for inp, out, extra in ((xin, out_q, ["--quantize"]), (tmp_path / "int8.npy", out_i, [])):
        r = subprocess.run([sys.executable, "-m", "edge_runtime.cli", "run", model, "--input", str(inp),
                            "--output", str(out), *extra], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
    # reference: the same model on the original int8 inputs (quantize(dequantize(q)) == q)
    assert np.array_equal(np.load(out_q), np.load(out_i))
