"""The per-channel affine fold (:func:`converters.ir._fold_channel_affine`) costs no int8 accuracy.

The two patterns it folds in the real models whose benchmark rows moved when it came in
(``benchmarks/real_models_onnx.py``: PP-OCR v2 cls, PP-OCRv6 rec small, en PP-OCRv4 rec, open-nsfw), in one small
model written with ``onnx.helper``:

- a batch norm as tf2onnx writes it: NHWC Transpose -> Mul (per-channel, with a tiny and a negative factor) ->
  Add (per channel) -> NCHW Transpose after a Conv, then Relu (open-nsfw: 212 folds);
- a squeeze-excitation block whose gate is ``HardSigmoid`` (PaddleOCR's MobileNetV3 / PP-LCNet): the import
  lowers it to ``relu6(1.2 x + 3) / 6``, whose MUL and ADD (with the RELU6) fold into the 1x1 Conv before it.

Converted with the fold and with it disabled, each int8 .tflite (LiteRT) is compared with onnxruntime running the
float source model (the reference) on 32 held-out inputs: the fold's SQNR is at least 1 dB above the unfolded
one's (measured 31.5 against 27.8 dB: the conv output is rounded once instead of after each of conv, MUL and ADD),
and the folded graph has those MUL/ADD ops no more.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from test_import_ops_common import make_model

import converters.ir as ir

n = helper.make_node
C, H, W = 8, 12, 12


def _model() -> onnx.ModelProto:
    rng = np.random.default_rng(11)
    f = np.float32
    gamma = rng.uniform(0.5, 2.0, C).astype(f)
    gamma[1], gamma[2] = 1e-3, -0.8  # a tiny and a negative factor
    inits = [numpy_helper.from_array((rng.standard_normal((C, 3, 3, 3)) * 0.3).astype(f), "w1"),
             numpy_helper.from_array((rng.standard_normal(C) * 0.1).astype(f), "b1"),
             numpy_helper.from_array(gamma, "gamma"),
             numpy_helper.from_array((rng.standard_normal(C) * 0.3).astype(f), "beta"),
             numpy_helper.from_array((rng.standard_normal((4, C, 1, 1)) * 0.4).astype(f), "w_se1"),
             numpy_helper.from_array((rng.standard_normal(4) * 0.1).astype(f), "b_se1"),
             numpy_helper.from_array((rng.standard_normal((C, 4, 1, 1)) * 0.6).astype(f), "w_se2"),
             numpy_helper.from_array((rng.standard_normal(C) * 0.3).astype(f), "b_se2")]
    nodes = [n("Conv", ["x", "w1", "b1"], ["c1"], pads=[1] * 4, name="conv1"),
             n("Transpose", ["c1"], ["t1"], perm=[0, 2, 3, 1], name="to_nhwc"),
             n("Mul", ["t1", "gamma"], ["bn_m"], name="bn_mul"),
             n("Add", ["bn_m", "beta"], ["bn_a"], name="bn_add"),
             n("Transpose", ["bn_a"], ["bn"], perm=[0, 3, 1, 2], name="to_nchw"),
             n("Relu", ["bn"], ["r1"], name="relu1"),
             n("GlobalAveragePool", ["r1"], ["gap"], name="gap"),
             n("Conv", ["gap", "w_se1", "b_se1"], ["se1"], name="se_conv1"),
             n("Relu", ["se1"], ["se1r"], name="se_relu"),
             n("Conv", ["se1r", "w_se2", "b_se2"], ["se2"], name="se_conv2"),
             n("HardSigmoid", ["se2"], ["gate"], alpha=0.2, beta=0.5, name="gate"),
             n("Mul", ["r1", "gate"], ["y"], name="excite")]
    return make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, H, W])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, C, H, W])], inits, opset=13)


def _inputs(seed: int, count: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((count, 1, 3, H, W)) * rng.uniform(0.3, 1.5, (count, 1, 1, 1, 1))).astype(np.float32)


def _sqnr(ref: np.ndarray, got: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(ref.astype(np.float64) ** 2) / np.sum((got.astype(np.float64) - ref) ** 2)))


def _convert(path: Path, out: Path) -> Any:
    from converters.pipeline import convert_model

    return convert_model(str(path), "rpi4-4gb", _inputs(1, 32), str(out), report_samples=2)


def _int8_outputs(res: Any, xs: np.ndarray) -> np.ndarray:
    from converters.report import TFLiteRunner

    runner = TFLiteRunner(res.tflite_path)
    got = np.stack([runner.run(res.graph.to_ir_layout(res.graph.inputs[0], x))[0] for x in xs])
    return got.reshape(xs.shape[0], 1, H, W, C).transpose(0, 1, 4, 2, 3)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    import onnxruntime as ort

    tmp = tmp_path_factory.mktemp("affine_fold_int8")
    path = tmp / "bn_se.onnx"
    onnx.save(_model(), str(path))
    held = _inputs(2, 32)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ref = np.stack([sess.run(None, {"x": x})[0] for x in held])  # the reference: onnxruntime, float model
    folded = _convert(path, tmp / "fold")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ir, "_fold_channel_affine", lambda *a, **k: False)
        unfolded = _convert(path, tmp / "nofold")
    return {"ref": ref, "held": held, "fold": folded, "nofold": unfolded}


def test_the_fold_removes_the_affine_ops(results: dict[str, Any]) -> None:
    fold, nofold = results["fold"].graph.op_counts(), results["nofold"].graph.op_counts()
    assert nofold.get("MUL", 0) - fold.get("MUL", 0) == 2, (fold, nofold)  # the batch norm's and the gate's scale
    assert nofold.get("ADD", 0) - fold.get("ADD", 0) == 2, (fold, nofold)  # its shift and the gate's +3
    acts = sorted(op.act for op in results["fold"].graph.ops if op.kind == "CONV_2D")
    assert acts == ["RELU", "RELU", "RELU6"], acts  # the gate's RELU6 moved into the SE conv


def test_int8_sqnr_not_lower_with_the_fold(results: dict[str, Any]) -> None:
    ref, held = results["ref"], results["held"]
    with_fold = _sqnr(ref, _int8_outputs(results["fold"], held))
    without = _sqnr(ref, _int8_outputs(results["nofold"], held))
    assert with_fold > 25.0, with_fold
    assert with_fold >= without + 1.0, (with_fold, without)
