"""A float island that computes +inf (a DIV by an activation at exactly 0) must quantize to +127, and -inf
(LOG of 0) to -128.

TFLite's QUANTIZE converts round(x / scale) to int32 before adding the zero point and clamping; on x86
(tflite-micro's package, and micro, bit-exact with it) infinities and anything beyond the int32 range become
INT32_MIN: +inf gave the lowest code, and -inf the highest under a negative zero point (the addition wraps).
The TFLite writer clamps such an island's output in float (MAXIMUM/MINIMUM at its quantization range, only
on the sides the bounds of :mod:`converters.island_bounds` allow an overflow). References: tflite-micro
(int8, ``np.array_equal`` with micro), onnxruntime (float, the sign of the infinities).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from converters.ir import Graph, Op, Tensor
from converters.island_bounds import clamp_range, float_bounds, needs_clamp, op_bounds
from converters.pipeline import convert_model
from converters.quantize import QParams
from edge_runtime.formats.tflite import TFLiteModel

N = 8


def _model(path: Path, nodes: list, outputs: list[str], inits: list) -> Path:
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, N])],
                          [helper.make_tensor_value_info(o, TensorProto.FLOAT, [1, N]) for o in outputs], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


def _int8_runs(tflite_path: str, x: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(micro outputs, tflite-micro outputs) on float input ``x`` quantized as the model's input."""
    pytest.importorskip("tflite_micro")
    from tflite_micro.python.tflite_micro import runtime

    import edge_runtime
    from converters.report import TFLiteRunner

    lite = TFLiteRunner(tflite_path)
    q = TFLiteRunner._q(x, lite.inp).reshape(lite.inp["shape"])
    tflm = runtime.Interpreter.from_file(tflite_path)
    tflm.set_input(q, 0)
    tflm.invoke()
    micro = [np.asarray(o) for o in edge_runtime.load(tflite_path, backend="micro").run(q)]
    return micro, [tflm.get_output(k) for k in range(len(micro))]


def test_division_by_zero_and_log_of_zero_saturate(tmp_path: Path) -> None:
    """``(2 - 3|x|) / |x|`` is +inf at x = 0: +127 on micro and tflite-micro (it was -128: its zero point is
    positive); ``log(|x|)`` is -inf there: -128 (it was +127: its zero point is negative, INT32_MIN + zp wrapped);
    the finite values stay within two steps of onnxruntime's; micro == tflite-micro."""
    path = _model(tmp_path / "m.onnx", [
        helper.make_node("Abs", ["x"], ["a"]), helper.make_node("Mul", ["a", "three"], ["a3"]),
        helper.make_node("Sub", ["two", "a3"], ["num"]), helper.make_node("Div", ["num", "a"], ["ratio"]),
        helper.make_node("Log", ["a"], ["log"])], ["ratio", "log"],
        [numpy_helper.from_array(np.array(2.0, np.float32), "two"),
         numpy_helper.from_array(np.array(3.0, np.float32), "three")])
    rng = np.random.default_rng(0)  # |x| >= 0.5 while calibrating: no division by zero there
    calib = (rng.uniform(0.5, 4.0, (24, 1, N)) * rng.choice([-1.0, 1.0], (24, 1, N))).astype(np.float32)
    res = convert_model(str(path), "rpi4-4gb", calib, tmp_path / "out", report_samples=4)
    counts = TFLiteModel.open(res.tflite_path).op_counts()
    # DIV: both sides (its int8 numerator's range holds 0 too: 0 / 0 is NaN); LOG: below only (log(0) = -inf)
    assert counts.get("MINIMUM") == 1 and counts.get("MAXIMUM") == 2, counts
    assert res.plan.activations["ratio"].zero_point > 0 and res.plan.activations["log"].zero_point < 0
    x = np.array([[0.0, -1.0, 2.0, 0.0, 3.5, -3.0, 1.0, 0.0]], np.float32)
    with np.errstate(divide="ignore"):
        ref = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    zero = x == 0
    assert np.isposinf(ref[0][zero]).all() and np.isneginf(ref[1][zero]).all()
    micro, tflm = _int8_runs(res.tflite_path, x)
    for a, b in zip(micro, tflm):
        np.testing.assert_array_equal(a, b)
    ratio, log = tflm
    assert (ratio[zero] == 127).all(), ratio
    assert (log[zero] == -128).all(), log
    for name, q, want in (("ratio", ratio, ref[0]), ("log", log, ref[1])):
        qp = res.plan.activations[name]
        np.testing.assert_allclose(qp.dequantize(q)[~zero], want[~zero], atol=2 * qp.scale)


def test_bounded_islands_get_no_clamp(tmp_path: Path) -> None:
    """EXP, SQRT and FLOOR of a bounded int8 input cannot overflow: no clamp (the int8 results are as before)."""
    path = _model(tmp_path / "m.onnx", [
        helper.make_node("Exp", ["x"], ["e"]), helper.make_node("Sqrt", ["x"], ["s"]),
        helper.make_node("Floor", ["x"], ["f"])], ["e", "s", "f"], [])
    calib = np.random.default_rng(1).uniform(0.0, 3.0, (24, 1, N)).astype(np.float32)
    res = convert_model(str(path), "rpi4-4gb", calib, tmp_path / "out", report_samples=4)
    counts = TFLiteModel.open(res.tflite_path).op_counts()
    assert counts.get("EXP") == 1 and counts.get("SQRT") == 1 and counts.get("FLOOR") == 1, counts
    assert "MINIMUM" not in counts and "MAXIMUM" not in counts, counts


def test_bounds_rules() -> None:
    """Interval rules: DIV by a range holding 0 and RSQRT of 0 are unbounded; EXP, LOG, SQRT of bounded
    inputs are bounded; a clamp is needed only from 2**30 steps of the output scale."""
    g = Graph("g", {"x": Tensor("x", (1, 4)), "y": Tensor("y", (1, 4)), "z": Tensor("z", (1, 4)),
                    "w": Tensor("w", (2, 4), np.array([[1, -2, 0, 1], [0.5, 0.5, 0.5, 0.5]], np.float32)),
                    "b": Tensor("b", (2,), np.array([3.0, -1.0], np.float32))}, [], ["x"], ["y"])

    def bound(kind: str, *ins: tuple[float, float], **attrs: object) -> tuple[float, float]:
        inputs = ["x", "w", "b"] if kind == "FULLY_CONNECTED" else ["x", "z"][:len(ins)]
        return op_bounds(g, Op(kind, inputs, ["y"], dict(attrs)), list(ins))

    assert bound("DIV", (1.0, 2.0), (0.0, 4.0)) == (0.25, np.inf)
    assert bound("DIV", (1.0, 2.0), (-4.0, 0.0)) == (-np.inf, -0.25)
    assert bound("DIV", (1.0, 2.0), (-1.0, 4.0)) == (-np.inf, np.inf)
    assert op_bounds(g, Op("MUL", ["x", "x"], ["y"]), [(-3.0, 2.0)] * 2) == (0.0, 9.0)  # x * x: a square
    assert bound("DIV", (1.0, 2.0), (0.5, 4.0)) == (0.25, 4.0)
    assert bound("RSQRT", (0.0, 4.0))[1] == np.inf
    assert bound("EXP", (-2.0, 3.0)) == pytest.approx((np.exp(-2.0), np.exp(3.0)))
    assert bound("LOG", (0.0, np.e)) == (-np.inf, pytest.approx(1.0))
    assert bound("SQRT", (-1.0, 9.0)) == (0.0, 3.0)
    assert bound("FULLY_CONNECTED", (-2.0, 1.0)) == (-5.0, 9.0)  # rows: [-3, 9] and [-5, 1]
    assert bound("MUL", (-2.0, 3.0), (-1.0, 4.0), act="RELU") == (0.0, 12.0)
    qp = QParams(0.5, -10)
    assert clamp_range(qp) == (-59.0, 68.5)
    assert needs_clamp((-1.0, np.inf), qp) == (False, True) and needs_clamp((-np.inf, 1.0), qp) == (True, False)
    assert needs_clamp((-1e6, 2.0 ** 30), qp) == (False, True)
    assert float_bounds(g, _AllInt8()) == {}


class _AllInt8:
    """A plan with every op in int8 (no float islands)."""

    @staticmethod
    def op_dtype(op: Op) -> str:
        return "int8"
