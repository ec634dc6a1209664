"""Bias correction: the mean error int8 weights add to a layer's output is folded into its bias."""
from __future__ import annotations

import numpy as np

from converters.ir import Graph, Op, Tensor
from converters.quality.bias_correction import correct_biases, weight_error_mean
from converters.quality.sensitivity import dequantized_weight
from converters.quantize import plan_quantization
from converters.report import TFLiteRunner
from converters.writers.tflite import write_tflite


def test_weight_error_mean_matches_the_layers_on_data():
    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 3.0, (4000, 5, 5, 3))
    dw = rng.standard_normal((4, 3, 3, 3)) * 0.01
    out = np.stack([np.einsum("kli,okli->o", xi[:3, :3], dw) for xi in x])  # one VALID conv window
    np.testing.assert_allclose(weight_error_mean("CONV_2D", dw, x.mean(axis=(0, 1, 2)), {}),
                               out.mean(axis=0), rtol=0.05, atol=2e-3)
    dwd = rng.standard_normal((1, 3, 3, 6)) * 0.01  # depthwise, multiplier 2
    outd = np.stack([(xi[:3, :3, np.repeat(np.arange(3), 2)] * dwd[0]).sum(axis=(0, 1)) for xi in x])
    np.testing.assert_allclose(weight_error_mean("DEPTHWISE_CONV_2D", dwd, x.mean(axis=(0, 1, 2)),
                                                 {"multiplier": 2}), outd.mean(axis=0), rtol=0.05, atol=2e-3)
    dwf = rng.standard_normal((2, 3))
    np.testing.assert_allclose(weight_error_mean("FULLY_CONNECTED", dwf, x[:, 0, 0].mean(0), {}),
                               (x[:, 0, 0] @ dwf.T).mean(0), rtol=1e-9)


def _fc_graph(w: np.ndarray) -> Graph:
    out, n = w.shape
    return Graph("fc", {"x": Tensor("x", (1, n)), "w": Tensor("w", w.shape, w),
                        "b": Tensor("b", (out,), np.zeros(out, np.float32)), "y": Tensor("y", (1, out))},
                 [Op("FULLY_CONNECTED", ["x", "w", "b"], ["y"])], ["x"], ["y"])


def test_correction_removes_the_mean_output_error(tmp_path):  # type: ignore[no-untyped-def]
    """Inputs with a large mean: the per-tensor int8 weights' rounding error shifts every output; the
    corrected bias brings the mean error (measured in LiteRT) close to zero."""
    rng = np.random.default_rng(3)
    w = (rng.standard_normal((8, 64)) * np.r_[np.full(63, 0.02), 4.0]).astype(np.float32)  # one big weight
    g = _fc_graph(w)
    x = rng.uniform(2.0, 4.0, (400, 1, 64)).astype(np.float32)
    y = x[:, 0] @ w.T
    ranges = {"x": (0.0, 4.0), "y": (float(y.min()), float(y.max()))}
    errs = {}
    for corrected in (False, True):
        plan = plan_quantization(g, ranges, per_channel_fc=False)
        if corrected:
            info = correct_biases(g, plan, {"x": x[:200, 0].mean(axis=0).astype(np.float64)})
            assert info["layers"] == 1 and info["max_shift"] > 0
        path = str(tmp_path / f"fc_{corrected}.tflite")
        write_tflite(g, plan, path)
        got = TFLiteRunner(path).run_batch(x[200:])
        errs[corrected] = np.abs((got - y[200:]).mean(axis=0))
    expected = np.abs((dequantized_weight(plan, "w") - w) @ x[200:, 0].mean(axis=0))
    assert errs[False].max() > 0.5 * expected.max()  # the uncorrected error is the predicted one
    assert errs[True].max() < 0.3 * errs[False].max(), errs


def test_convert_reports_bias_correction(tmp_path):  # type: ignore[no-untyped-def]
    from pathlib import Path

    from converters.pipeline import convert_model

    data = Path(__file__).resolve().parents[1] / "converters" / "data"
    on = convert_model(data / "digits_cnn.onnx", "rpi4-4gb", data / "digits_calib.npz", tmp_path / "on",
                       formats=["tflite"])
    off = convert_model(data / "digits_cnn.onnx", "rpi4-4gb", data / "digits_calib.npz", tmp_path / "off",
                        formats=["tflite"], bias_correction=False)
    assert on.report["quantization"]["bias_correction"]["layers"] == 5
    assert off.report["quantization"]["bias_correction"] is None
    assert on.report["quantization"]["fc_per_channel"] is True
    b_on = [on.plan.biases[k].values for k in sorted(on.plan.biases)]
    b_off = [off.plan.biases[k].values for k in sorted(off.plan.biases)]
    assert any(not np.array_equal(a, b) for a, b in zip(b_on, b_off))
    assert on.report["calibration_outputs"]["output_sqnr_db"] > off.report["calibration_outputs"]["output_sqnr_db"]


def test_input_means_equal_plain_float64_channel_sums():
    """InputMeans' column sums (a BLAS matrix-vector product) equal numpy's float64 axis-0 sums, sample by
    sample, on activation-like data: exactly while the values' magnitudes span little (float32 values summed
    in float64 are then exact in any order), and within 1e-12 relative on a span of 1e-30 to 1e6."""
    from converters.quality.bias_correction import InputMeans

    rng = np.random.default_rng(11)
    w = np.ones((4, 1, 1, 16), np.float32)
    g = Graph("c", {"x": Tensor("x", (1, 24, 24, 16)), "w": Tensor("w", w.shape, w),
                    "y": Tensor("y", (1, 24, 24, 4))},
                  [Op("CONV_2D", ["x", "w"], ["y"], {"stride": (1, 1), "padding": "VALID"})], ["x"], ["y"])
    for wide in (False, True):
        means, plain, n = InputMeans(g), 0.0, 0
        for i in range(20):
            x = np.maximum(rng.standard_normal((1, 24, 24, 16)), 0).astype(np.float32)
            if wide:
                x *= (10.0 ** rng.uniform(-30, 6, x.shape)).astype(np.float32)
            means(i, {"x": x})
            plain = plain + x.astype(np.float64).reshape(-1, 16).sum(axis=0)
            n += 24 * 24
        got = means.means()["x"]
        if wide:
            np.testing.assert_allclose(got, plain / n, rtol=1e-12)
        else:
            assert np.array_equal(got, plain / n)
