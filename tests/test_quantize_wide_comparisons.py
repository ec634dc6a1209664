"""Comparisons of wide int8 inputs (scale >= 1: degrees, days) run in float; narrow ones stay int8.

tflite-micro aborts on an int8 comparison whose input scale is 1 or more and LiteRT compares wrongly, so the
quantizer writes such a comparison between DEQUANTIZE and the bool mask. References: onnxruntime on the float
ONNX model (int8 SQNR via ``check_onnx``), tflite-micro (micro bit-exact, run in a subprocess by the check).
"""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from test_import_ops_common import check_onnx, make_model

SHAPE = (1, 3, 4, 5)


def _model(op: str) -> object:
    consts = [numpy_helper.from_array(np.float32(20.0), "t"), numpy_helper.from_array(np.float32(1.0), "one"),
              numpy_helper.from_array(np.float32(0.0), "zero")]
    nodes = [helper.make_node(op, ["x", "t"], ["mask"]),
             helper.make_node("Where", ["mask", "one", "zero"], ["gate"]),
             helper.make_node("Mul", ["x", "gate"], ["y"])]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(SHAPE))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, list(SHAPE))
    return make_model(nodes, [x], [y], consts, opset=13)


@pytest.mark.parametrize("op", ["Greater", "Less", "GreaterOrEqual", "LessOrEqual"])
@pytest.mark.parametrize("low,high", [(-180.0, 180.0), (-3.0, 3.0)])
def test_comparison_of_a_wide_input_converts_and_is_exact(op: str, low: float, high: float,
                                                         tmp_path: object) -> None:
    res = check_onnx(_model(op), tmp_path, SHAPE, low=low, high=high, min_sqnr=25.0)
    if not res.tflm_ran:  # type: ignore[attr-defined]
        pytest.skip("tflite-micro is not installed")
    assert res.micro_exact is True  # type: ignore[attr-defined]


def test_only_wide_comparisons_become_float(tmp_path: object) -> None:
    import onnx

    from converters.importers.onnx import import_onnx
    from converters.quantize import QParams, wide_comparison_keys

    path = str(tmp_path / "m.onnx")  # type: ignore[operator]
    onnx.save(_model("Greater"), path)
    graph = import_onnx(path)
    compare = next(op for op in graph.ops if op.kind == "GREATER")
    wide = {t: QParams(1.4, 0) for t in compare.inputs}
    narrow = {t: QParams(0.02, 0) for t in compare.inputs}
    assert len(wide_comparison_keys(graph, {}, wide, {})) == 1
    assert wide_comparison_keys(graph, {}, narrow, {}) == []
