"""Elementwise ONNX ops (with broadcasting and constant operands) through import, int8 and every runtime."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from test_import_ops_common import check_onnx, make_model

X = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 6, 6])
Y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 6, 6])
RNG = np.random.default_rng(3)


def c(name: str, arr) -> object:  # type: ignore[no-untyped-def]
    return numpy_helper.from_array(np.asarray(arr, np.float32), name)


def conv(inp: str, out: str, cin: int = 8, cout: int = 8) -> tuple:
    w = c(f"{out}_w", RNG.standard_normal((cout, cin, 1, 1)) * 0.4)
    return helper.make_node("Conv", [inp, f"{out}_w"], [out], name=f"conv_{out}"), w


CASES = {
    "sub_const": ([helper.make_node("Sub", ["x", "k"], ["y"], name="sub")], [c("k", RNG.random((8, 1, 1)))]),
    "const_minus_x": ([helper.make_node("Sub", ["k", "x"], ["y"], name="sub")], [c("k", [0.5])]),
    "div_const": ([helper.make_node("Div", ["x", "k"], ["y"], name="div")], [c("k", [3.0])]),
    "div_act": ([helper.make_node("Relu", ["x"], ["r"], name="relu"),
                 helper.make_node("Add", ["r", "one"], ["d"], name="plus1"),
                 helper.make_node("Div", ["x", "d"], ["y"], name="div")], [c("one", [1.0])]),
    "max_min": ([helper.make_node("Max", ["x", "k"], ["m"], name="max"),
                 helper.make_node("Min", ["m", "k2"], ["y"], name="min")], [c("k", [-0.3]), c("k2", [0.6])]),
    "mul_broadcast_act": ([helper.make_node("ReduceMean", ["x"], ["m"], name="mean", axes=[2, 3], keepdims=1),
                           helper.make_node("Sigmoid", ["m"], ["s"], name="sig"),
                           helper.make_node("Mul", ["x", "s"], ["y"], name="scale")], []),
    "pow2_sqrt": ([helper.make_node("Pow", ["x", "two"], ["p"], name="pow"),
                   helper.make_node("Add", ["p", "eps"], ["pe"], name="add"),
                   helper.make_node("Sqrt", ["pe"], ["y"], name="sqrt")], [c("two", [2.0]), c("eps", [0.1])]),
    "exp_log": ([helper.make_node("Exp", ["x"], ["e"], name="exp"),
                 helper.make_node("Log", ["e"], ["y"], name="log")], []),
    "abs_neg": ([helper.make_node("Abs", ["x"], ["a"], name="abs"),
                 helper.make_node("Neg", ["a"], ["y"], name="neg")], []),
    "leaky_prelu": ([helper.make_node("LeakyRelu", ["x"], ["l"], name="leaky", alpha=0.2),
                     helper.make_node("PRelu", ["l", "slope"], ["y"], name="prelu")],
                    [c("slope", RNG.random((8, 1, 1)) * 0.5)]),
    "clip_any": ([helper.make_node("Clip", ["x", "lo", "hi"], ["y"], name="clip")], [c("lo", -0.25), c("hi", 0.5)]),
    "clip_relu6": ([helper.make_node("Mul", ["x", "k"], ["m"], name="scale"),
                    helper.make_node("Clip", ["m", "lo", "hi"], ["y"], name="clip")],
                   [c("k", [8.0]), c("lo", 0.0), c("hi", 6.0)]),
    "hardsigmoid_se": ([helper.make_node("HardSigmoid", ["x"], ["h"], name="hsig", alpha=1 / 6, beta=0.5),
                        helper.make_node("Mul", ["x", "h"], ["y"], name="hswish")], []),
    "hardsigmoid_gate": ([helper.make_node("HardSigmoid", ["x"], ["h"], name="hsig", alpha=0.2, beta=0.5),
                          helper.make_node("Mul", ["h", "h"], ["y"], name="sq")], []),
    "hardswish": ([helper.make_node("HardSwish", ["x"], ["y"], name="hswish")], []),
    "sum_mean_variadic": ([helper.make_node("Relu", ["x"], ["r"], name="relu"),
                           helper.make_node("Sum", ["x", "r", "k"], ["s"], name="sum3"),
                           helper.make_node("Mean", ["s", "x"], ["y"], name="mean2")], [c("k", RNG.random((6,)))]),
    "reduce_min_broadcast": ([helper.make_node("ReduceMin", ["x"], ["m"], name="rmin", axes=[1], keepdims=1),
                              helper.make_node("Sub", ["x", "m"], ["y"], name="sub")], []),
    "elu_softplus_mish": ([helper.make_node("Elu", ["x"], ["e"], name="elu"),
                           helper.make_node("Softplus", ["e"], ["s"], name="softplus"),
                           helper.make_node("Mul", ["s", "x"], ["y"], name="mul")], []),
    "l2_norms": ([helper.make_node("LpNormalization", ["x"], ["n"], name="l2norm", axis=1, p=2),
                  helper.make_node("ReduceL2", ["x"], ["r"], name="rl2", axes=[1], keepdims=1),
                  helper.make_node("ReduceSumSquare", ["x"], ["q"], name="rss", axes=[1], keepdims=1),
                  helper.make_node("ReduceL1", ["x"], ["l1"], name="rl1", axes=[1], keepdims=1),
                  helper.make_node("Add", ["r", "q"], ["rq"], name="add1"),
                  helper.make_node("Add", ["rq", "l1"], ["rql"], name="add2"),
                  helper.make_node("Mul", ["n", "rql"], ["y"], name="mul")], []),
    "mish": ([helper.make_node("Mish", ["x"], ["y"], name="mish")], []),
    "tanh_sigmoid": ([helper.make_node("Tanh", ["x"], ["t"], name="tanh"),
                      helper.make_node("Sigmoid", ["t"], ["y"], name="sig")], []),
}
OPSET = {"hardswish": 14, "mish": 18}


@pytest.mark.parametrize("case", sorted(CASES))
def test_elementwise_op(case, tmp_path):
    nodes, inits = CASES[case]
    model = make_model(nodes, [X], [Y], inits, opset=OPSET.get(case, 13))
    low = 0.05 if case == "exp_log" else -2.0
    res = check_onnx(model, tmp_path, (1, 8, 6, 6), low=low, high=2.0)
    assert res.tflite_sqnr > 20
    if res.micro_exact is not None:
        assert res.micro_exact, "micro backend differs from tflite-micro"


def test_hardswish_pattern_becomes_one_op(tmp_path):
    nodes, inits = CASES["hardsigmoid_se"]
    res = check_onnx(make_model(nodes, [X], [Y], inits), tmp_path, (1, 8, 6, 6), low=-4, high=4)
    assert res.graph.op_counts() == {"HARD_SWISH": 1}


def test_div_by_constant_is_a_multiply(tmp_path):
    nodes, inits = CASES["div_const"]
    res = check_onnx(make_model(nodes, [X], [Y], inits), tmp_path, (1, 8, 6, 6))
    assert res.graph.op_counts() == {"MUL": 1}


def test_exp_log_run_as_float_islands(tmp_path):
    nodes, inits = CASES["exp_log"]
    res = check_onnx(make_model(nodes, [X], [Y], inits), tmp_path, (1, 8, 6, 6), low=0.05, high=2.0)
    from edge_runtime.formats.tflite import TFLiteModel

    kinds = [op.name for op in TFLiteModel.open(res.tflite_path).main.operators]
    assert kinds == ["DEQUANTIZE", "EXP", "QUANTIZE", "DEQUANTIZE", "LOG", "QUANTIZE"]
    assert res.tflm_ran  # tflite-micro runs the float EXP/LOG between them
    assert res.plan.precision()["float_islands"] == ["exp", "log"]


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_op_becomes_its_tanh_form_in_int8_ops(approximate, tmp_path):
    """The Gelu op (opset 20, either form): six int8 ops every runtime has, the float IR within 1e-3 of
    onnxruntime's exact Gelu over [-4, 4] (check_onnx's atol), micro bit-exact with tflite-micro."""
    from converters.importers.onnx_ops.gelu import gelu_reference

    x = np.linspace(-6, 6, 2001, dtype=np.float32)
    from scipy.special import erf

    assert np.abs(gelu_reference(x) - 0.5 * x * (1 + erf(x / np.sqrt(2)))).max() < 5e-4
    node = helper.make_node("Gelu", ["x"], ["y"], name="gelu", approximate=approximate)
    res = check_onnx(make_model([node], [X], [Y], [], opset=20), tmp_path, (1, 8, 6, 6), low=-4, high=4, atol=1e-3)
    assert res.graph.op_counts() == {"MUL": 4, "ADD": 1, "LOGISTIC": 1}
    assert res.tflite_sqnr > 35, res.tflite_sqnr
    if res.micro_exact is not None:
        assert res.micro_exact, "micro backend differs from tflite-micro"


def test_sigmoid_input_range_stops_where_the_sigmoid_saturates(tmp_path):
    """A tensor read only by LOGISTIC gets at most [-8, 8] as its int8 range (the output is the same
    beyond), a finer step than its calibrated [-20, 20]; one also read by another op keeps its range."""
    from converters.quantize import SATURATION

    nodes = [helper.make_node("Mul", ["x", "k"], ["m"], name="scale"),
             helper.make_node("Sigmoid", ["m"], ["s"], name="sig"),
             helper.make_node("Mul", ["x", "k2"], ["n"], name="scale2"),
             helper.make_node("Tanh", ["n"], ["t"], name="tanh"),
             helper.make_node("Add", ["s", "t"], ["u"], name="add"),
             helper.make_node("Add", ["u", "n"], ["y"], name="add2")]
    res = check_onnx(make_model(nodes, [X], [Y], [c("k", [10.0]), c("k2", [6.0])]), tmp_path, (1, 8, 6, 6),
                     low=-2, high=2)
    assert res.plan.ranges["m"][1] > 19  # calibrated
    assert res.plan.activations["m"].scale <= 2 * SATURATION["LOGISTIC"] / 255 * 1.0001
    assert res.plan.activations["n"].scale > 23 / 255  # also read by ADD: keeps its calibrated [-12, 12]
    assert res.tflite_sqnr > 30, res.tflite_sqnr
    if res.micro_exact is not None:
        assert res.micro_exact, "micro backend differs from tflite-micro"
