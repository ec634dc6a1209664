"""A RELU6 that cannot be fused into the op before it (after a Concat, or on a model input) converts.

TFLite's int8 RELU6 clamps in its input's quantization parameters, so micro (as tflite-micro) refuses one
whose output parameters differ; the quantizer gives input and output one set of parameters. References:
onnxruntime on the float ONNX model (int8 SQNR via ``check_onnx``), tflite-micro (micro bit-exact).
"""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from test_import_ops_common import check_onnx, make_model

SHAPE = (1, 4, 5, 5)


def _relu6(x: str, y: str, opset: int) -> object:
    if opset >= 11:
        return helper.make_node("Clip", [x, "lo", "hi"], [y])
    return helper.make_node("Clip", [x], [y], min=0.0, max=6.0)


@pytest.mark.parametrize("opset", [9, 13])
@pytest.mark.parametrize("where", ["input", "concat"])
def test_unfused_relu6_converts_and_is_exact(where: str, opset: int, tmp_path: object) -> None:
    consts = [numpy_helper.from_array(np.float32(0.0), "lo"), numpy_helper.from_array(np.float32(6.0), "hi")] \
        if opset >= 11 else []
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(SHAPE))
    if where == "input":
        nodes = [_relu6("x", "y", opset)]
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, list(SHAPE))
    else:
        nodes = [helper.make_node("Concat", ["x", "x2"], ["c"], axis=1),
                 helper.make_node("Neg", ["x"], ["x2"]), _relu6("c", "y", opset)]
        nodes = [nodes[1], nodes[0], nodes[2]]
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 5, 5])
    model = make_model(nodes, [x], [y], consts, opset=opset)
    res = check_onnx(model, tmp_path, SHAPE, low=-9.0, high=9.0, min_sqnr=30.0)
    if not res.tflm_ran:  # type: ignore[attr-defined]
        pytest.skip("tflite-micro is not installed")
    assert res.micro_exact is True  # type: ignore[attr-defined]
