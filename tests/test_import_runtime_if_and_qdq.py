"""ONNX If on a run-time condition, and models holding QuantizeLinear/DequantizeLinear.

- A run-time If (openWakeWord's hey_jarvis runs a verifier when p >= 0.5) is imported with both branches
  inlined under fresh names and each output selected by SELECT_V2 on the condition. Simple, nested,
  branches reading outer-scope values, a 1-element 1-D condition broadcast over a 4-D output, and branch
  outputs of different but broadcastable shapes: int8 on LiteRT against the float model on onnxruntime
  (SQNR, with held-out data taking both branches), and micro equal to tflite-micro (``np.array_equal``).
- What cannot be selected is refused in one line naming the If: branch outputs of different shapes (by the
  prepare pass's static-shape check), a Loop in a branch, a non-float output.
- A constant DequantizeLinear (weights stored as int8) folds at opset 13 as at 19+ (ONNX's reference
  evaluator implements it from opset 19 only); a QuantizeLinear on an activation gets the one-line
  "already quantized" refusal at both opsets.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from test_import_real_patterns_onnx import _micro_equals_tflm, _sqnr

from converters.importers.onnx import import_onnx
from converters.pipeline import convert_model
from converters.report import TFLiteRunner
from edge_runtime.errors import UnsupportedModelError

PROFILE = "rpi4-4gb"
CALIB, HELD = 48, 32
F = TensorProto.FLOAT


def _vi(name: str, shape: list, kind: int = F) -> Any:
    return helper.make_tensor_value_info(name, kind, shape)


def _w(rng: np.random.Generator, name: str, *shape: int, scale: float = 0.3) -> Any:
    return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)


def _c(name: str, value: Any, dtype: Any = np.float32) -> Any:
    return numpy_helper.from_array(np.array(value, dtype), name)


def _model(nodes: list, inputs: list, outputs: list, inits: list, opset: int = 13) -> onnx.ModelProto:
    m = helper.make_model(helper.make_graph(nodes, "m", inputs, outputs, inits),
                          opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def _convert(model: onnx.ModelProto, data: np.ndarray, tmp_path: Path) -> tuple[float, Any]:
    """Convert with ``data[:CALIB]``; the held-out SQNR of the int8 model on LiteRT against float onnxruntime
    (the reference), after checking micro == tflite-micro on a few held-out inputs."""
    import onnxruntime as ort

    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    res = convert_model(str(path), PROFILE, data[:CALIB], str(tmp_path / "out"), formats=("tflite",),
                        report_samples=4)
    held = data[CALIB:]
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    ref = np.stack([sess.run(None, {name: x})[0] for x in held])
    lite = TFLiteRunner(res.tflite_path)
    got = np.stack([lite.run(res.graph.to_ir_layout(res.graph.inputs[0], x))[0] for x in held])
    if got.ndim == 5:  # a 4-D output is NHWC in the IR, NCHW in ONNX
        got = got.transpose(0, 1, 4, 2, 3)
    _micro_equals_tflm(res.tflite_path, res.graph, held[:4])
    return _sqnr(ref, got), res


def _branch_rate(model: onnx.ModelProto, cond: str, xs: np.ndarray) -> float:
    """The share of inputs ``xs`` for which ONNX tensor ``cond`` is true (onnxruntime, float model)."""
    import onnxruntime as ort

    m = onnx.ModelProto()
    m.CopyFrom(model)
    m.graph.output.append(helper.make_tensor_value_info(cond, TensorProto.BOOL, None))
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return float(np.mean([bool(np.asarray(sess.run([cond], {name: x})[0]).reshape(-1)[0]) for x in xs]))


# ---------------------------------------------------------------- models
def _verifier(rng: np.random.Generator, width: int = 12) -> onnx.ModelProto:
    """hey_jarvis's shape: p = sigmoid(x @ A); if max(p) >= 0.8 a verifier recomputes it from the outer-scope
    input x (then: Gemm, Relu, Gemm, Sigmoid), else p passes through (Identity of an outer-scope value)."""
    then = helper.make_graph([helper.make_node("Gemm", ["x", "V1", "b1"], ["t0"]),
                              helper.make_node("Relu", ["t0"], ["t1"]),
                              helper.make_node("Gemm", ["t1", "V2"], ["t2"]),
                              helper.make_node("Sigmoid", ["t2"], ["t"])], "then", [], [_vi("t", [1, 4])],
                             [_w(rng, "V1", width, 16), _w(rng, "b1", 16, scale=0.1), _w(rng, "V2", 16, 4)])
    other = helper.make_graph([helper.make_node("Identity", ["p"], ["e"])], "else", [], [_vi("e", [1, 4])])
    nodes = [helper.make_node("Gemm", ["x", "A"], ["logit"]),
             helper.make_node("Sigmoid", ["logit"], ["p"]),
             helper.make_node("ReduceMax", ["p"], ["pm"], keepdims=0),
             helper.make_node("GreaterOrEqual", ["pm", "half"], ["c"]),
             helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other, name="verify")]
    return _model(nodes, [_vi("x", [1, width])], [_vi("y", [1, 4])], [_w(rng, "A", width, 4), _c("half", 0.8)])


def _nested(rng: np.random.Generator) -> onnx.ModelProto:
    """An If (on a 0-d condition) whose then branch holds another run-time If (on a second condition computed
    outside both, a [1, 1] tensor), whose branches read outer-scope activations; branch-local names repeat
    across branches (``h``); the else branch ends in a tanh (fixed int8 range) selected against a wider value."""
    inner_then = helper.make_graph([helper.make_node("Mul", ["a", "k2"], ["h"])], "it", [], [_vi("h", [1, 8])],
                                   [_c("k2", 2.0)])
    inner_else = helper.make_graph([helper.make_node("Sub", ["a", "b"], ["h"])], "ie", [], [_vi("h", [1, 8])])
    then = helper.make_graph([helper.make_node("If", ["c2"], ["u"], then_branch=inner_then, else_branch=inner_else,
                                               name="inner"),
                              helper.make_node("Add", ["u", "b"], ["h"])], "then", [], [_vi("h", [1, 8])])
    other = helper.make_graph([helper.make_node("Tanh", ["b"], ["h"])], "else", [], [_vi("h", [1, 8])])
    nodes = [helper.make_node("MatMul", ["x", "W"], ["a"]),
             helper.make_node("MatMul", ["x", "U"], ["b"]),
             helper.make_node("Gather", ["x", "six"], ["x6"], axis=1),
             helper.make_node("Greater", ["x6", "zero"], ["c1"]),
             helper.make_node("Gather", ["x", "seven"], ["x7"], axis=1),
             helper.make_node("Less", ["x7", "zero"], ["c2"]),
             helper.make_node("If", ["c1"], ["y"], then_branch=then, else_branch=other, name="outer")]
    return _model(nodes, [_vi("x", [1, 8])], [_vi("y", [1, 8])],
                  [_w(rng, "W", 8, 8), _w(rng, "U", 8, 8), _c("zero", 0.0), _c("six", 6, np.int64),
                   _c("seven", [7], np.int64)])


def _conv4d(rng: np.random.Generator) -> onnx.ModelProto:
    """A 4-D (NCHW) If output selected by a 1-element 1-D condition (broadcast over NHWC in the IR): a conv
    of the outer-scope activation, or its sigmoid (fixed int8 range); then added to the activation."""
    then = helper.make_graph([helper.make_node("Conv", ["f", "K2"], ["t"], pads=[1, 1, 1, 1])], "then", [],
                             [_vi("t", [1, 4, 6, 6])], [_w(rng, "K2", 4, 4, 3, 3, scale=0.2)])
    other = helper.make_graph([helper.make_node("Sigmoid", ["f"], ["e"])], "else", [], [_vi("e", [1, 4, 6, 6])])
    nodes = [helper.make_node("Conv", ["x", "K"], ["f0"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["f0"], ["f"]),
             helper.make_node("ReduceMean", ["x"], ["m"], axes=[1, 2, 3], keepdims=0),
             helper.make_node("Greater", ["m", "zero"], ["c"]),
             helper.make_node("If", ["c"], ["s"], then_branch=then, else_branch=other, name="pick"),
             helper.make_node("Add", ["s", "f"], ["y"])]
    return _model(nodes, [_vi("x", [1, 3, 6, 6])], [_vi("y", [1, 4, 6, 6])],
                  [_w(rng, "K", 4, 3, 3, 3), _c("zero", [0.0])])


# ---------------------------------------------------------------- run-time If
@pytest.mark.parametrize("case", ["verifier", "nested", "conv4d"])
def test_runtime_if_matches_onnxruntime(case, tmp_path, caplog):
    rng = np.random.default_rng({"verifier": 1, "nested": 2, "conv4d": 3}[case])
    n = CALIB + HELD
    sign = rng.choice([-1.0, 1.0], (n, 1, 1))
    if case == "verifier":  # a threshold on a continuous score, as hey_jarvis's
        model, data, cond = _verifier(rng), rng.normal(0, 1.5, (n, 1, 12)), ["c"]
    elif case == "nested":  # conditions far from their thresholds: int8 takes the branch float takes
        model, data, cond = _nested(rng), rng.normal(0, 1, (n, 1, 8)), ["c1", "c2"]
        data[:, :, 6:] = 2 * rng.choice([-1.0, 1.0], (n, 1, 2))
    else:
        model, data, cond = _conv4d(rng), rng.normal(0, 1, (n, 1, 3, 6, 6)) + 1.5 * sign[..., None, None], ["c"]
    data = data.astype(np.float32)
    for c in cond:  # the held-out data takes both ways of every If, so both selections are checked
        assert 0.15 < _branch_rate(model, c, data[CALIB:]) < 0.85, c
    with caplog.at_level(logging.WARNING, logger="converters.importers.onnx"):
        db, res = _convert(model, data, tmp_path)
    assert db > 25.0, f"{case}: {db:.1f} dB against onnxruntime float"
    assert any(op.kind == "SELECT_V2" for op in res.graph.ops)
    assert any("both branches always run" in r.getMessage() for r in caplog.records)


def test_runtime_if_log_line_names_the_if_and_branch_sizes(caplog):
    with caplog.at_level(logging.WARNING, logger="converters.importers.onnx"):
        import_onnx(_verifier(np.random.default_rng(1)))
    lines = [r.getMessage() for r in caplog.records if "If" in r.getMessage()]
    want = "ONNX node 'verify' (If) on a run-time condition: both branches always run (then: 4 ops, else: 1 ops)"
    assert lines == [want]


def _refusal(then_nodes: list, then_out: Any, else_nodes: list, else_out: Any, inits: list = (),
             out_shape: Any = (1, 8)) -> str:
    then = helper.make_graph(then_nodes, "then", [], [then_out])
    other = helper.make_graph(else_nodes, "else", [], [else_out])
    nodes = [helper.make_node("MatMul", ["x", "W"], ["a"]),
             helper.make_node("ReduceMax", ["a"], ["am"], keepdims=0),
             helper.make_node("Greater", ["am", "zero"], ["c"]),
             helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other, name="choose")]
    model = _model(nodes, [_vi("x", [1, 8])], [_vi("y", list(out_shape))],
                   [_w(np.random.default_rng(0), "W", 8, 8), _c("zero", 0.0), *inits])
    with pytest.raises(UnsupportedModelError) as info:
        import_onnx(model)
    msg = str(info.value)
    assert "\n" not in msg and "'choose' (If)" in msg
    return msg


def test_runtime_if_refuses_branch_outputs_of_different_shapes():
    msg = _refusal([helper.make_node("Relu", ["a"], ["t"])], _vi("t", [1, 8]),
                   [helper.make_node("Slice", ["a", "s0", "s3", "s1"], ["e"])], _vi("e", [1, 3]),
                   [_c("s0", [0], np.int64), _c("s3", [3], np.int64), _c("s1", [1], np.int64)])
    assert "'y'" in msg and "no static shape" in msg  # the prepare pass's shape check names the If


def test_runtime_if_refuses_a_loop_in_a_branch():
    body = helper.make_graph([helper.make_node("Identity", ["cond_in"], ["cond_out"]),
                              helper.make_node("Relu", ["v_in"], ["v_out"])], "body",
                             [_vi("i", [], TensorProto.INT64), _vi("cond_in", [], TensorProto.BOOL),
                              _vi("v_in", [1, 8])],
                             [_vi("cond_out", [], TensorProto.BOOL), _vi("v_out", [1, 8])])
    loop = helper.make_node("Loop", ["n", "", "a"], ["t"], body=body, name="repeat")
    msg = _refusal([loop], _vi("t", [1, 8]), [helper.make_node("Relu", ["a"], ["e"])], _vi("e", [1, 8]),
                   [_c("n", 3, np.int64)])
    assert "Loop ('repeat')" in msg and "then branch" in msg


def test_runtime_if_refuses_a_non_float_output():
    with pytest.raises(UnsupportedModelError) as info:
        then = helper.make_graph([helper.make_node("ArgMax", ["a"], ["t"], axis=1)], "then", [],
                                 [_vi("t", [1, 1], TensorProto.INT64)])
        other = helper.make_graph([helper.make_node("ArgMin", ["a"], ["e"], axis=1)], "else", [],
                                  [_vi("e", [1, 1], TensorProto.INT64)])
        nodes = [helper.make_node("MatMul", ["x", "W"], ["a"]),
                 helper.make_node("ReduceMax", ["a"], ["am"], keepdims=0),
                 helper.make_node("Greater", ["am", "zero"], ["c"]),
                 helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other, name="choose")]
        import_onnx(_model(nodes, [_vi("x", [1, 8])], [_vi("y", [1, 1], TensorProto.INT64)],
                           [_w(np.random.default_rng(0), "W", 8, 8), _c("zero", 0.0)]))
    msg = str(info.value)
    assert "\n" not in msg and "'choose' (If)" in msg and "int64 output 't'" in msg and "float" in msg


# ---------------------------------------------------------------- Quantize/DequantizeLinear
def _int8_weights(opset: int, per_axis: bool) -> onnx.ModelProto:
    """y = relu(x @ DequantizeLinear(Wq)): weights stored as int8 (per tensor, or per output column)."""
    rng = np.random.default_rng(opset)
    wq = numpy_helper.from_array(rng.integers(-127, 128, (16, 8)).astype(np.int8), "wq")
    scale = _c("s", rng.uniform(0.002, 0.01, 8) if per_axis else 0.005)
    zero = _c("z", np.zeros(8) if per_axis else 0, np.int8)
    attrs = {"axis": 1} if per_axis else {}
    nodes = [helper.make_node("DequantizeLinear", ["wq", "s", "z"], ["w"], **attrs),
             helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Relu", ["h"], ["y"])]
    return _model(nodes, [_vi("x", [1, 16])], [_vi("y", [1, 8])], [wq, scale, zero], opset=opset)


@pytest.mark.parametrize("opset", [13, 17, 19, 21])
def test_constant_dequantize_linear_folds_at_every_opset(opset, tmp_path):
    model = _int8_weights(opset, per_axis=opset % 2 == 1)
    data = np.random.default_rng(5).normal(0, 1, (CALIB + HELD, 1, 16)).astype(np.float32)
    db, _ = _convert(model, data, tmp_path)
    assert db > 30.0, f"opset {opset}: {db:.1f} dB against onnxruntime float"


@pytest.mark.parametrize("opset", [13, 19])
def test_a_quantized_activation_pair_is_dropped_and_the_float_tensor_flows_on(opset):
    """A Q -> DQ pair on an activation (a QDQ model) imports as the float graph without it
    (converters/importers/qdq.py); the output equals onnxruntime on the model without the pair."""
    import onnxruntime as ort

    nodes = [helper.make_node("MatMul", ["x", "W"], ["a"]),
             helper.make_node("QuantizeLinear", ["a", "s", "z"], ["aq"], name="quant_a"),
             helper.make_node("DequantizeLinear", ["aq", "s", "z"], ["y"], name="dequant_a")]
    w = _w(np.random.default_rng(0), "W", 8, 8)
    model = _model(nodes, [_vi("x", [1, 8])], [_vi("y", [1, 8])], [w, _c("s", 0.02), _c("z", 0, np.int8)],
                   opset=opset)
    graph = import_onnx(model)
    assert not any(op.kind in ("QUANTIZE", "DEQUANTIZE") for op in graph.ops)
    plain = _model([helper.make_node("MatMul", ["x", "W"], ["y"])], [_vi("x", [1, 8])], [_vi("y", [1, 8])], [w],
                   opset=opset)
    x = np.random.default_rng(1).standard_normal((1, 8)).astype(np.float32)
    want = ort.InferenceSession(plain.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    from converters.calibrate import float_session, run_float

    got = run_float(float_session(graph), graph, x)[graph.outputs[0]]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
