"""A per-channel Mul after a convolution of a QDQ model: the import folds it into the conv's weights
(:func:`converters.ir._fold_channel_affine`), and the conversion still keeps the model's own int8 weights
(:func:`converters.qdq_source.fixed_weights`): the same integers (negated in channels whose factor is negative)
with the model's scales times ``|factor|``.

The models are written by hand with ``onnx.helper``: QuantizeLinear/DequantizeLinear on the input, a Conv (or a
depthwise Conv) whose weight is a DequantizeLinear of int8 values with per-channel scales, a pair on the conv's
output, a Mul by a per-channel constant with a negative and a zero entry (also between NHWC<->NCHW Transposes, as
tf2onnx writes it), and a pair on the output. Checked:

- the imported IR has no MUL (the fold happened: onnxslim's Conv+Mul fusion, or the IR's own fold after the
  Transposes cancel);
- the written .tflite's conv weights (read back with LiteRT) are the model's int8 values in TFLite's OHWI
  layout, negated where the factor is negative, zero where it is zero, with scales ``scale x |factor|`` (to float32
  rounding),
  and the report lists the weight under ``weights_from_model`` with nothing re-quantized;
- the .tflite on LiteRT stays close to onnxruntime running the QDQ model (the reference): within 2 LSB of the
  output (the model's pair on the conv output, fused away by the fold, is the one rounding it does not repeat);
- a fold on a float model (no QDQ source) writes re-quantized weights as before (nothing to keep).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from test_import_ops_common import make_model

n = helper.make_node
C_IN, C_OUT = 3, 4
FACTORS = np.array([1.5, -0.7, 0.0, 2.25], np.float32)
X_SCALE, C_SCALE, Y_SCALE = 0.02, 0.05, 0.06


#: the models: a Conv, a depthwise Conv (group = channels), and a Conv whose Mul sits between NHWC<->NCHW Transposes
#: (as tf2onnx writes it; onnxslim leaves it, :func:`converters.ir.simplify` folds it)
KINDS = ("conv", "depthwise", "transposed")


def _cin(kind: str) -> int:
    return C_OUT if kind == "depthwise" else C_IN


def _int8_weight(kind: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    q = rng.integers(-127, 128, (C_OUT, 1 if kind == "depthwise" else C_IN, 3, 3)).astype(np.int8)
    scales = (rng.uniform(0.002, 0.01, C_OUT)).astype(np.float32)
    return q, scales


def _qdq_model(kind: str) -> onnx.ModelProto:
    q, scales = _int8_weight(kind)
    f = np.float32
    nhwc = kind == "transposed"
    inits = [numpy_helper.from_array(q, "wq"), numpy_helper.from_array(scales, "ws"),
             numpy_helper.from_array(np.zeros(C_OUT, np.int8), "wz"),
             numpy_helper.from_array((np.random.default_rng(4).standard_normal(C_OUT) * 0.1).astype(f), "b"),
             numpy_helper.from_array(FACTORS.reshape((1, 1, 1, C_OUT) if nhwc else (1, C_OUT, 1, 1)), "m")]
    for name, s in (("x", X_SCALE), ("c", C_SCALE), ("y", Y_SCALE)):
        inits += [numpy_helper.from_array(np.array(s, f), f"{name}_s"),
                  numpy_helper.from_array(np.array(0, np.int8), f"{name}_z")]
    conv = dict(pads=[1] * 4, group=C_OUT) if kind == "depthwise" else dict(pads=[1] * 4)
    nodes = [n("QuantizeLinear", ["x", "x_s", "x_z"], ["xq"], name="qx"),
             n("DequantizeLinear", ["xq", "x_s", "x_z"], ["xd"], name="dqx"),
             n("DequantizeLinear", ["wq", "ws", "wz"], ["w"], axis=0, name="dqw"),
             n("Conv", ["xd", "w", "b"], ["c"], name="conv", **conv),
             n("QuantizeLinear", ["c", "c_s", "c_z"], ["cq"], name="qc"),
             n("DequantizeLinear", ["cq", "c_s", "c_z"], ["cd"], name="dqc")]
    if nhwc:
        nodes += [n("Transpose", ["cd"], ["ct"], perm=[0, 2, 3, 1], name="to_nhwc"),
                  n("Mul", ["ct", "m"], ["yt"], name="mul"),
                  n("Transpose", ["yt"], ["y"], perm=[0, 3, 1, 2], name="to_nchw")]
    else:
        nodes.append(n("Mul", ["cd", "m"], ["y"], name="mul"))
    nodes += [n("QuantizeLinear", ["y", "y_s", "y_z"], ["yq"], name="qy"),
              n("DequantizeLinear", ["yq", "y_s", "y_z"], ["out"], name="dqy")]
    return make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, _cin(kind), 8, 8])],
                      [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, C_OUT, 8, 8])], inits, opset=13)


def _data(k: int, kind: str = "conv") -> np.ndarray:
    return np.random.default_rng(5 + k).uniform(-2.0, 2.0, (16, 1, _cin(kind), 8, 8)).astype(np.float32)


def _conv_weights(tflite_path: str) -> list[dict[str, Any]]:
    from converters.report import litert_interpreter

    it = litert_interpreter(tflite_path)
    return [dict(d, value=it.get_tensor(d["index"])) for d in it.get_tensor_details()
            if d["dtype"] == np.int8 and len(d["shape"]) == 4 and d["quantization_parameters"]["scales"].size > 1]


@pytest.fixture(scope="module", params=KINDS)
def converted(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from converters.pipeline import convert_model

    kind = request.param
    tmp = tmp_path_factory.mktemp(f"affine_fold_qdq_{kind}")
    path = tmp / "qdq_mul.onnx"
    onnx.save(_qdq_model(kind), str(path))
    res = convert_model(str(path), "rpi4-4gb", _data(0, kind), str(tmp / "out"), report_samples=4)
    return {"path": path, "res": res, "kind": kind}


@pytest.mark.parametrize("kind", KINDS)
def test_the_import_folds_the_mul(kind: str) -> None:
    from converters.importers.onnx import import_onnx

    graph = import_onnx(_qdq_model(kind))
    counts = graph.op_counts()
    assert "MUL" not in counts and "TRANSPOSE" not in counts, counts
    assert counts.get("DEPTHWISE_CONV_2D" if kind == "depthwise" else "CONV_2D") == 1, counts


def test_written_weights_are_the_models_integers_rescaled(converted: dict[str, Any]) -> None:
    res, kind = converted["res"], converted["kind"]
    written = _conv_weights(res.tflite_path)
    assert len(written) == 1
    q, scales = _int8_weight(kind)
    sign = np.sign(FACTORS).astype(np.int8)
    signed = (q * sign[:, None, None, None]).astype(np.int8)
    # OIHW -> OHWI; a depthwise [C, 1, kh, kw] -> [1, kh, kw, C]
    want = signed.transpose(1, 2, 3, 0) if kind == "depthwise" else signed.transpose(0, 2, 3, 1)
    assert np.array_equal(written[0]["value"], want)
    want_scales = np.where(FACTORS == 0, scales, (scales.astype(np.float64) * np.abs(FACTORS))).astype(np.float32)
    got_scales = written[0]["quantization_parameters"]["scales"].astype(np.float32)
    assert np.allclose(got_scales, want_scales, rtol=1e-6, atol=0)
    assert not np.any(written[0]["quantization_parameters"]["zero_points"])
    qdq = res.report["qdq"]
    assert len(qdq["weights_from_model"]) == 1 and not qdq["weights_requantized"]


def test_output_close_to_onnxruntime_running_the_qdq_model(converted: dict[str, Any]) -> None:
    import onnxruntime as ort

    from converters.report import TFLiteRunner

    res, held = converted["res"], _data(1, converted["kind"])
    sess = ort.InferenceSession(str(converted["path"]), providers=["CPUExecutionProvider"])
    ref = np.stack([sess.run(None, {"x": x})[0] for x in held])  # the reference: onnxruntime on the QDQ model
    runner = TFLiteRunner(res.tflite_path)
    got = np.stack([runner.run(res.graph.to_ir_layout(res.graph.inputs[0], x))[0] for x in held])
    got = got.reshape(held.shape[0], 1, 8, 8, C_OUT).transpose(0, 1, 4, 2, 3)
    scale = res.plan.activations[res.graph.outputs[0]].scale
    assert scale == np.float32(Y_SCALE)  # the model's output pair is kept
    lsb = np.abs(got.astype(np.float64) - ref) / scale
    assert lsb.max() <= 2.0 + 1e-4, lsb.max()


def test_float_source_is_requantized(tmp_path: Path) -> None:
    """Without a QDQ source the folded weight is quantized from its float values (max |w| per channel -> 127)."""
    from converters.pipeline import convert_model

    q, scales = _int8_weight("conv")
    w = (q.astype(np.float32) * scales[:, None, None, None])
    f = np.float32
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.zeros(C_OUT, f), "b"),
             numpy_helper.from_array(FACTORS.reshape(1, C_OUT, 1, 1), "m")]
    model = make_model([n("Conv", ["x", "w", "b"], ["c"], pads=[1] * 4, name="conv"),
                        n("Mul", ["c", "m"], ["y"], name="mul")],
                       [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, C_IN, 8, 8])],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, C_OUT, 8, 8])], inits, opset=13)
    path = tmp_path / "float_mul.onnx"
    onnx.save(model, str(path))
    res = convert_model(str(path), "rpi4-4gb", _data(0), str(tmp_path / "out"), report_samples=2)
    assert "qdq" not in res.report
    (written,) = _conv_weights(res.tflite_path)
    live = FACTORS != 0
    assert np.all(np.abs(written["value"][live]).reshape(int(live.sum()), -1).max(axis=1) == 127)
    assert not np.array_equal(np.abs(written["value"]), np.abs(q).transpose(0, 2, 3, 1))
