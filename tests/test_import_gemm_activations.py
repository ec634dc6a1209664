"""Gemm whose B (or C) is computed at run time (``torch.mm``/``torch.addmm`` of two activations): written as
Transpose/MatMul/Mul/Add by the prepare pass, imported as BATCH_MATMUL and elementwise ops.

References: onnxruntime on the float ONNX model (float IR and int8 SQNR via ``check_onnx``), tflite-micro
(micro bit-exact).
"""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from test_import_ops_common import check_onnx, make_model

M, K = 4, 6


@pytest.mark.parametrize("trans_a,trans_b,alpha,beta,c", [
    (0, 1, 1.0, 1.0, None), (1, 0, 0.5, 1.0, "const"), (0, 1, 1.0, 2.0, "activation"),
    (1, 1, 2.0, 0.5, "const")])
def test_gemm_of_two_activations(trans_a: int, trans_b: int, alpha: float, beta: float, c: object,
                                 tmp_path: object) -> None:
    x0 = helper.make_tensor_value_info("x0", TensorProto.FLOAT, [1, M * K])
    a_in = "xt" if trans_a else "x"  # A as Gemm reads it: [M, K] after its transA
    b_in = "bx" if trans_b else "bxt"  # B: [K, M] after its transB
    nodes = [helper.make_node("Reshape", ["x0", "shape"], ["x"]),
             helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0]),
             helper.make_node("Mul", ["x", "k"], ["bx"]),
             helper.make_node("Transpose", ["bx"], ["bxt"], perm=[1, 0])]
    consts = [numpy_helper.from_array(np.float32(0.7), "k"), numpy_helper.from_array(np.array([M, K], np.int64), "shape")]
    inputs = [a_in, b_in]
    if c == "const":
        consts.append(numpy_helper.from_array(np.linspace(-1, 1, M).astype(np.float32), "c"))
        inputs.append("c")
    elif c == "activation":
        nodes.append(helper.make_node("ReduceSum", ["x", "axes"], ["c"], keepdims=1))
        consts.append(numpy_helper.from_array(np.array([1], np.int64), "axes"))
        inputs.append("c")
    nodes.append(helper.make_node("Gemm", inputs, ["y"], transA=trans_a, transB=trans_b, alpha=alpha, beta=beta))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [M, M])
    res = check_onnx(make_model(nodes, [x0], [y], consts, opset=13), tmp_path, (1, M * K), min_sqnr=30.0)
    if not res.tflm_ran:  # type: ignore[attr-defined]
        pytest.skip("tflite-micro is not installed")
    assert res.micro_exact is True  # type: ignore[attr-defined]
