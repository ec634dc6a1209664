"""Exact GELU in every product order exporters write: ``x * (0.5 * (1 + erf(x / sqrt2)))`` (torch's dynamo
exporter: the half first, x last) as well as the classic ``(x * (1 + erf)) * 0.5``.

References: onnxruntime on the float ONNX model (int8 SQNR via ``check_onnx``), tflite-micro (micro bit-exact).
"""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from test_import_ops_common import check_onnx, make_model

SHAPE = (1, 8, 16)


def _model(order: str, half: float) -> object:
    rng = np.random.default_rng(0)
    consts = [numpy_helper.from_array((rng.standard_normal((16, 16)) * 0.3).astype(np.float32), "w"),
              numpy_helper.from_array(np.float32(2 ** 0.5), "s2"), numpy_helper.from_array(np.float32(1.0), "one"),
              numpy_helper.from_array(np.float32(half), "half")]
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"]), helper.make_node("Div", ["y", "s2"], ["d"]),
             helper.make_node("Erf", ["d"], ["e"]), helper.make_node("Add", ["e", "one"], ["a"])]
    if order == "half_first":
        nodes += [helper.make_node("Mul", ["half", "a"], ["m"]), helper.make_node("Mul", ["y", "m"], ["out"])]
    elif order == "half_first_swapped":
        nodes += [helper.make_node("Mul", ["a", "half"], ["m"]), helper.make_node("Mul", ["m", "y"], ["out"])]
    else:
        nodes += [helper.make_node("Mul", ["y", "a"], ["m"]), helper.make_node("Mul", ["m", "half"], ["out"])]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(SHAPE))
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, list(SHAPE))
    return make_model(nodes, [x], [out], consts, opset=17)


@pytest.mark.parametrize("half", [0.5, 0.25])
@pytest.mark.parametrize("order", ["classic", "half_first", "half_first_swapped"])
def test_gelu_in_any_product_order_converts(order: str, half: float, tmp_path: object) -> None:
    res = check_onnx(_model(order, half), tmp_path, SHAPE, min_sqnr=30.0, atol=2e-3)  # the IR computes the tanh form
    if not res.tflm_ran:  # type: ignore[attr-defined]
        pytest.skip("tflite-micro is not installed")
    assert res.micro_exact is True  # type: ignore[attr-defined]
