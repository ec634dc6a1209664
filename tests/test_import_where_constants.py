"""ONNX Where choosing between two constants on a run-time mask (a 0/1 weight, a piecewise gain).

References: onnxruntime on the float ONNX model (int8 SQNR via ``check_onnx``), tflite-micro (micro bit-exact).
"""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from test_import_ops_common import check_onnx, make_model

SHAPE = (1, 3, 4, 5)


@pytest.mark.parametrize("then_value,else_value,const_shape", [(1.0, 0.0, ()), (2.5, -1.0, (1, 3, 1, 1)),
                                                                (0.25, 4.0, (5,))])
def test_where_between_constants_on_a_mask(then_value: float, else_value: float, const_shape: tuple,
                                           tmp_path: object) -> None:
    rng = np.random.default_rng(3)
    a = (then_value + 0.1 * rng.standard_normal(const_shape)).astype(np.float32)
    b = (else_value + 0.1 * rng.standard_normal(const_shape)).astype(np.float32)
    consts = [numpy_helper.from_array(a, "a"), numpy_helper.from_array(b, "b"),
              numpy_helper.from_array(np.float32(0.2), "t")]
    nodes = [helper.make_node("Greater", ["x", "t"], ["mask"]),
             helper.make_node("Where", ["mask", "a", "b"], ["gain"]),
             helper.make_node("Mul", ["x", "gain"], ["y"])]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(SHAPE))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, list(SHAPE))
    res = check_onnx(make_model(nodes, [x], [y], consts, opset=13), tmp_path, SHAPE, min_sqnr=30.0)
    if not res.tflm_ran:  # type: ignore[attr-defined]
        pytest.skip("tflite-micro is not installed")
    assert res.micro_exact is True  # type: ignore[attr-defined]
