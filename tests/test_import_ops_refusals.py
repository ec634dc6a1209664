"""Unsupported ONNX constructs are refused in one line naming the op and the node (never a traceback)."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from test_import_ops_common import make_model

from converters.importers.onnx import import_onnx
from edge_runtime.errors import ModelFormatError, UnsupportedModelError

n = helper.make_node


def c(name: str, arr, dtype=np.float32) -> object:  # type: ignore[no-untyped-def]
    return numpy_helper.from_array(np.asarray(arr, dtype), name)


def vi(name: str, shape, elem=TensorProto.FLOAT) -> object:  # type: ignore[no-untyped-def]
    return helper.make_tensor_value_info(name, elem, shape)


X4 = vi("x", [1, 4, 6, 6])
LOOP_BODY = helper.make_graph([n("Identity", ["cond_in"], ["cond_out"], name="keep_going"),
                               n("Relu", ["v_in"], ["v_out"], name="relu_step")], "body",
                              [vi("i", [], TensorProto.INT64), vi("cond_in", [], TensorProto.BOOL), vi("v_in", [1, 4, 6, 6])],
                              [vi("cond_out", [], TensorProto.BOOL), vi("v_out", [1, 4, 6, 6])])
# both branches of an If on a run-time condition are imported (SELECT_V2 picks); a looping branch is refused
RUNTIME_IF = n("If", ["flag"], ["y"], name="runtime_if",
               then_branch=helper.make_graph([n("Loop", ["trips", "", "x"], ["t"], name="t", body=LOOP_BODY)],
                                             "then", [], [vi("t", [1, 4, 6, 6])]),
               else_branch=helper.make_graph([n("Neg", ["x"], ["e"], name="e")], "else", [], [vi("e", [1, 4, 6, 6])]))

CASES = {
    # name: (nodes, inits, inputs, output shape, opset, words the message must contain)
    "unsupported_op": ([n("Trilu", ["x", "k"], ["y"], name="the_trilu")],
                       [numpy_helper.from_array(np.array(1, np.int64), "k")], [X4], [1, 4, 6, 6], 14,
                       ["Trilu", "the_trilu"]),
    "custom_domain": ([n("MyOp", ["x"], ["y"], name="custom_node", domain="com.example")], [], [X4], [1, 4, 6, 6],
                      13, ["com.example", "custom_node"]),
    # (Erf outside Gelu and Pow with exponent 1.7, refused here before, convert since H11)
    "pow_runtime_exponent": ([n("Pow", ["x", "x"], ["y"], name="pow_xx")], [], [X4], [1, 4, 6, 6], 13,
                             ["Pow", "pow_xx", "constant exponent"]),
    "pow_zero_exponent": ([n("Pow", ["x", "e"], ["y"], name="pow0")], [c("e", [0.0])], [X4], [1, 4, 6, 6], 13,
                          ["Pow", "pow0", "exponent 0"]),
    "runtime_if": ([n("ReduceMax", ["x"], ["m"], name="rmax", keepdims=0),
                    n("Greater", ["m", "z"], ["flag"], name="gt"), RUNTIME_IF],
                   [c("z", 0.0), numpy_helper.from_array(np.array(3, np.int64), "trips")], [X4], [1, 4, 6, 6],
                   13, ["If", "runtime_if", "run-time condition"]),
    "conv_transpose_before_full_output": ([n("ConvTranspose", ["x", "w"], ["y"], name="ddeconv", output_shape=[10, 10],
                                             kernel_shape=[2, 2])], [c("w", np.ones((4, 2, 2, 2)))], [X4],
                                          [1, 2, 10, 10], 13, ["ConvTranspose", "ddeconv", "before the full output"]),
    "cast_to_int": ([n("Cast", ["x"], ["i"], name="to_int", to=TensorProto.INT32),
                     n("Cast", ["i"], ["y"], name="back", to=TensorProto.FLOAT)], [], [X4], [1, 4, 6, 6], 13,
                    ["Cast", "to_int", "INT32"]),
    "resize_channels": ([n("Resize", ["x", "", "s"], ["y"], name="channel_up", mode="linear")],
                        [c("s", [1, 2, 1, 1])], [X4], [1, 8, 6, 6], 13, ["Resize", "channel_up", "height and width"]),
    "lstm_clip": ([n("Transpose", ["x3"], ["seq"], name="tr", perm=[1, 0, 2]),
                   n("LSTM", ["seq", "W", "R"], ["y"], name="clipped_lstm", hidden_size=3, clip=1.0)],
                  [c("W", np.ones((1, 12, 5))), c("R", np.ones((1, 12, 3)))], [vi("x3", [1, 4, 5])], [4, 1, 1, 3],
                  13, ["LSTM", "clipped_lstm", "clip"]),
    "conv_weights_at_runtime": ([n("Conv", ["x", "x"], ["y"], name="self_conv")], [], [X4], [1, 1, 1, 1], 13,
                                ["Conv", "self_conv", "constant"]),
    "already_quantized": ([n("QLinearConv", ["xq", "s", "z", "wq", "s", "z", "s", "z"], ["yq"], name="qconv"),
                           n("DequantizeLinear", ["yq", "s", "z"], ["y"], name="dequant")],
                          [c("s", 0.1), numpy_helper.from_array(np.array(128, np.uint8), "z"),
                           numpy_helper.from_array(np.full((4, 4, 1, 1), 130, np.uint8), "wq")],
                          [vi("xq", [1, 4, 6, 6], TensorProto.UINT8)], [1, 4, 6, 6], 13,
                          ["QLinearConv", "qconv", "QOperator format", "float model"]),
    "conv_transpose3d_grouped": ([n("ConvTranspose", ["x5", "w"], ["y"], name="deconv3d", group=2)],
                                 [c("w", np.ones((4, 1, 1, 1, 1)))], [vi("x5", [1, 4, 2, 6, 6])], [1, 2, 2, 6, 6], 13,
                                 ["ConvTranspose", "deconv3d", "group"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_refusal_is_one_line_naming_op_and_node(case):
    nodes, inits, inputs, out_shape, opset, words = CASES[case]
    model = make_model(nodes, inputs, [vi("y", out_shape)], inits, opset=opset)
    with pytest.raises((UnsupportedModelError, ModelFormatError)) as info:
        import_onnx(model)
    msg = str(info.value)
    assert "\n" not in msg and "Traceback" not in msg
    for word in words:
        assert word in msg, (word, msg)


def test_dynamic_dimension_without_input_shape_is_refused():
    model = make_model([n("Relu", ["x"], ["y"], name="r")], [vi("x", [1, 4, "T"])], [vi("y", [1, 4, "T"])])
    with pytest.raises((UnsupportedModelError, ModelFormatError)) as info:
        import_onnx(model)
    assert "--input-shape" in str(info.value)


def test_dynamic_dimension_fixed_by_input_shape():
    model = make_model([n("Relu", ["x"], ["y"], name="r")], [vi("x", [1, 4, "T"])], [vi("y", [1, 4, "T"])])
    g = import_onnx(model, input_shapes={"x": (1, 4, 9)})
    assert g.tensors["x"].shape == (1, 4, 9)
