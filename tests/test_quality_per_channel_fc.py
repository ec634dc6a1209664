"""Per-channel FULLY_CONNECTED weights: written per channel, run bit-exact in TFLite Micro, and they
bring the MLPerf anomaly-detection score within 1 % of fp32 (per-tensor weights: +5.5 %)."""
from __future__ import annotations

import numpy as np
import pytest

from converters.pipeline import convert_model, per_channel_fc
from converters.report import TFLiteRunner, litert_interpreter
from edge_runtime.backends.micro import open_model
from edge_runtime.formats.tflite import TFLiteModel
from edge_runtime.reference_data import load_ad01_windows

AD_FP32_SCORE = 9.7071  # mean anomaly score of ad01_fp32 over the 196 windows (MLPerf Tiny README)


@pytest.fixture(scope="module")
def ad01_int8(mlperf_models, tmp_path_factory):  # type: ignore[no-untyped-def]
    """ad01_fp32 converted for a microcontroller, calibrated on every other window (as the benchmark)."""
    w = load_ad01_windows()
    res = convert_model(mlperf_models / "ad01_fp32.tflite", "stm32h743", w[::2], tmp_path_factory.mktemp("ad01"),
                        formats=["tflite"])
    return res.tflite_path, w


def _fc_weight_scales(path: str) -> list[int]:
    sg = TFLiteModel.open(path).main
    return [sg.tensors[op.inputs[1]].quantization.scale.size for op in sg.operators if op.name == "FULLY_CONNECTED"]


def test_fc_weights_are_per_channel(ad01_int8):  # type: ignore[no-untyped-def]
    sizes = _fc_weight_scales(ad01_int8[0])
    assert len(sizes) == 10 and all(s > 1 for s in sizes)


def test_ad_score_within_one_percent_of_fp32(ad01_int8):  # type: ignore[no-untyped-def]
    path, w = ad01_int8
    out = TFLiteRunner(path).run_batch(w)
    score = float(np.mean(np.mean((w.reshape(len(w), -1) - out) ** 2, axis=1)))
    assert abs(score / AD_FP32_SCORE - 1) < 0.01, score


def test_micro_bit_exact_with_tflite_micro_and_litert_within_one_step(ad01_int8):  # type: ignore[no-untyped-def]
    tflm = pytest.importorskip("tflite_micro.python.tflite_micro.runtime")
    path, w = ad01_int8
    micro = open_model(path)
    xq = np.stack([micro.inputs[0].quantize(x) for x in w[:64]])
    it = tflm.Interpreter.from_file(path)
    ref = []
    for x in xq:
        it.set_input(x, 0)
        it.invoke()
        ref.append(np.array(it.get_output(0), copy=True))
    ref_a = np.stack(ref)
    assert np.array_equal(np.stack([micro.run(x)[0] for x in xq]), ref_a)
    li = litert_interpreter(path, reference_kernels=True)
    d_in, d_out = li.get_input_details()[0], li.get_output_details()[0]
    got = []
    for x in xq:
        li.set_tensor(d_in["index"], x.reshape(d_in["shape"]))
        li.invoke()
        got.append(li.get_tensor(d_out["index"]).copy())
    diff = np.abs(np.stack(got).reshape(ref_a.shape).astype(np.int32) - ref_a.astype(np.int32))
    assert diff.max() <= 1 and np.mean(diff > 0) < 0.01  # LiteRT's reference FC rounds differently in rare ties


def test_npu_delegate_profiles_keep_per_tensor_fc():
    from device_profiles import load_profile

    assert per_channel_fc(load_profile("stm32h743")) and per_channel_fc(load_profile("rpi4-4gb"))
    assert not per_channel_fc(load_profile("coral-usb-rpi4")) and not per_channel_fc(load_profile("imx8mp"))
