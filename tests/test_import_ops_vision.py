"""Vision and layout ONNX constructs: grouped/transposed/1-D conv, pooling with ceil_mode and padding,
Resize, channel shuffle (5-D reshape + transpose), Slice/Split/Gather/Concat/Pad, normalisation,
Flatten/Squeeze/Unsqueeze/Expand, If on a constant condition, Constant/ConstantOfShape weights."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from test_import_ops_common import check_onnx, make_model

RNG = np.random.default_rng(5)


def c(name: str, arr, dtype=np.float32) -> object:  # type: ignore[no-untyped-def]
    return numpy_helper.from_array(np.asarray(arr, dtype), name)


def w(name: str, *shape: int, scale: float = 0.3) -> object:
    return c(name, RNG.standard_normal(shape) * scale)


def vi(name: str, shape) -> object:  # type: ignore[no-untyped-def]
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


n = helper.make_node
IN = (1, 8, 8, 8)


def _shuffle():
    return [n("Reshape", ["x", "s5"], ["r"], name="split_groups"),
            n("Transpose", ["r"], ["t"], name="shuffle", perm=[0, 2, 1, 3, 4]),
            n("Reshape", ["t", "s4"], ["y"], name="merge")], [c("s5", [1, 2, 4, 8, 8], np.int64),
                                                             c("s4", [1, 8, 8, 8], np.int64)], [1, 8, 8, 8]


CASES = {
    # name: (nodes, initializers, output shape, opset)
    "grouped_conv": lambda: ([n("Conv", ["x", "w", "b"], ["y"], name="gconv", group=2, kernel_shape=[3, 3],
                                pads=[1, 1, 1, 1])], [w("w", 6, 4, 3, 3), w("b", 6)], [1, 6, 8, 8], 13),
    "conv_transpose_k4s2p1": lambda: ([n("ConvTranspose", ["x", "w", "b"], ["y"], name="up", strides=[2, 2],
                                         pads=[1, 1, 1, 1], kernel_shape=[4, 4])],
                                      [w("w", 8, 4, 4, 4), w("b", 4)], [1, 4, 16, 16], 13),
    "conv_transpose_outpad": lambda: ([n("ConvTranspose", ["x", "w"], ["y"], name="up", strides=[2, 2],
                                         pads=[1, 1, 1, 1], output_padding=[1, 1], kernel_shape=[3, 3])],
                                      [w("w", 8, 4, 3, 3)], [1, 4, 16, 16], 13),
    "conv_transpose_depthwise": lambda: ([n("ConvTranspose", ["x", "w"], ["y"], name="dwup", strides=[2, 2],
                                            group=8, kernel_shape=[2, 2])], [w("w", 8, 1, 2, 2)], [1, 8, 16, 16], 13),
    "depth_to_space_dcr_crd": lambda: (
        [n("DepthToSpace", ["x"], ["a"], name="d2s_dcr", blocksize=2),
         n("SpaceToDepth", ["a"], ["b"], name="s2d", blocksize=2),
         n("DepthToSpace", ["b"], ["y"], name="d2s_crd", blocksize=2, mode="CRD")], [], [1, 2, 16, 16], 13),
    "maxpool_ceil": lambda: ([n("MaxPool", ["x"], ["y"], name="pool", kernel_shape=[3, 3], strides=[2, 2],
                                ceil_mode=1)], [], [1, 8, 4, 4], 13),
    "maxpool_pad1": lambda: ([n("MaxPool", ["x"], ["y"], name="pool", kernel_shape=[3, 3], strides=[2, 2],
                                pads=[1, 1, 1, 1])], [], [1, 8, 4, 4], 13),
    "avgpool_ceil_exclude": lambda: ([n("AveragePool", ["x"], ["y"], name="pool", kernel_shape=[3, 3],
                                        strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1)], [], [1, 8, 5, 5], 13),
    "avgpool_include": lambda: ([n("AveragePool", ["x"], ["y"], name="pool", kernel_shape=[3, 3], strides=[1, 1],
                                   pads=[1, 1, 1, 1], count_include_pad=1)], [], [1, 8, 8, 8], 13),
    "resize_nearest": lambda: ([n("Resize", ["x", "", "sc"], ["y"], name="up", mode="nearest",
                                  coordinate_transformation_mode="asymmetric", nearest_mode="floor")],
                               [c("sc", [1, 1, 2, 2])], [1, 8, 16, 16], 13),
    "resize_bilinear_half_pixel": lambda: ([n("Resize", ["x", "", "sc"], ["y"], name="up", mode="linear",
                                              coordinate_transformation_mode="pytorch_half_pixel")],
                                           [c("sc", [1, 1, 2, 2])], [1, 8, 16, 16], 13),
    "resize_bilinear_align": lambda: ([n("Resize", ["x", "", "", "sz"], ["y"], name="up", mode="linear",
                                         coordinate_transformation_mode="align_corners")],
                                      [c("sz", [1, 8, 15, 15], np.int64)], [1, 8, 15, 15], 13),
    "channel_shuffle_5d": lambda: _shuffle() + (13,),
    "window_partition_6d": lambda: (  # Swin: [B, C, H, W] -> windows through a 6-D permute
        [n("Transpose", ["x"], ["nhwc"], name="to_nhwc", perm=[0, 2, 3, 1]),
         n("Reshape", ["nhwc", "s6"], ["r6"], name="split_windows"),
         n("Transpose", ["r6"], ["t6"], name="window_first", perm=[0, 1, 3, 2, 4, 5]),
         n("Reshape", ["t6", "s3"], ["win"], name="flatten_windows"),
         n("Softmax", ["win"], ["y"], name="attend", axis=-1)],
        [c("s6", [1, 2, 4, 2, 4, 8], np.int64), c("s3", [4, 16, 8], np.int64)], [4, 16, 8], 13),
    "slice_steps_split_concat": lambda: (
        [n("Slice", ["x", "st", "en", "ax", "sp"], ["s"], name="slice"),
         n("Split", ["x", "parts"], ["a", "b"], name="split", axis=1),
         n("Concat", ["b", "a", "s"], ["y"], name="concat", axis=1)],
        [c("st", [1, 7], np.int64), c("en", [8, -9], np.int64), c("ax", [1, 3], np.int64),
         c("sp", [2, -1], np.int64), c("parts", [3, 5], np.int64)], [1, 12, 8, 8], 13),
    "ghost_slice_concat": lambda: (
        [n("Conv", ["x", "w1"], ["p"], name="primary", kernel_shape=[1, 1]),
         n("Conv", ["p", "w2"], ["q"], name="cheap", kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=4),
         n("Concat", ["p", "q"], ["cat"], name="cat", axis=1),
         n("Slice", ["cat", "st", "en", "ax"], ["y"], name="keep")],
        [w("w1", 4, 8, 1, 1), w("w2", 4, 1, 3, 3), c("st", [0], np.int64), c("en", [6], np.int64),
         c("ax", [1], np.int64)], [1, 6, 8, 8], 13),
    "gather_axes": lambda: (
        [n("Gather", ["x", "i1"], ["g1"], name="pick_channels", axis=1),
         n("Gather", ["g1", "i2"], ["y"], name="pick_row", axis=2)],
        [c("i1", [3, 0, 5], np.int64), c("i2", 2, np.int64)], [1, 3, 8], 13),
    "pad_reflect_and_value": lambda: (
        [n("Pad", ["x", "p1"], ["a"], name="reflect", mode="reflect"),
         n("Pad", ["a", "p2", "v"], ["y"], name="constant")],
        [c("p1", [0, 0, 1, 2, 0, 0, 1, 2], np.int64), c("p2", [0, 0, 1, 0, 0, 0, 0, 1], np.int64), c("v", 0.5)],
        [1, 8, 11, 13], 13),
    "instance_batch_norm": lambda: (
        [n("InstanceNormalization", ["x", "g", "b"], ["i"], name="inorm", epsilon=1e-5),
         n("BatchNormalization", ["i", "g2", "b2", "m2", "v2"], ["y"], name="bn")],
        [w("g", 8), w("b", 8), c("g2", RNG.random(8) + 0.5), w("b2", 8), w("m2", 8), c("v2", RNG.random(8) + 0.5)],
        [1, 8, 8, 8], 13),
    "flatten_axis2_unsqueeze": lambda: (
        [n("Flatten", ["x"], ["f"], name="flatten", axis=2),
         n("Unsqueeze", ["f", "ax"], ["u"], name="unsq"),
         n("Squeeze", ["u", "ax"], ["y"], name="sq")], [c("ax", [1], np.int64)], [8, 64], 13),
    "expand_tile": lambda: (
        [n("ReduceMax", ["x"], ["m"], name="max", axes=[1], keepdims=1),
         n("Expand", ["m", "shape"], ["y"], name="expand")], [c("shape", [1, 8, 8, 8], np.int64)], [1, 8, 8, 8], 13),
    "reduce_sum_last_nokeep": lambda: (
        [n("ReduceSum", ["x", "ax"], ["y"], name="sum", keepdims=0)], [c("ax", [3], np.int64)], [1, 8, 8], 13),
    "softmax_flattened_opset11": lambda: (
        [n("Softmax", ["x"], ["y"], name="softmax", axis=2)], [], [1, 8, 8, 8], 11),
    "log_softmax_channels": lambda: ([n("LogSoftmax", ["x"], ["y"], name="logsoftmax", axis=1)], [], [1, 8, 8, 8], 13),
    "softmax_axis2": lambda: ([n("Softmax", ["x"], ["y"], name="softmax", axis=2)], [], [1, 8, 8, 8], 13),
    "if_constant_condition": lambda: (
        [n("If", ["cond"], ["y"], name="branch",
           then_branch=helper.make_graph([n("Relu", ["x"], ["t_out"], name="then_relu")], "then", [],
                                         [vi("t_out", [1, 8, 8, 8])]),
           else_branch=helper.make_graph([n("Sigmoid", ["x"], ["e_out"], name="else_sig")], "else", [],
                                         [vi("e_out", [1, 8, 8, 8])]))],
        [numpy_helper.from_array(np.array(True), "cond")], [1, 8, 8, 8], 13),
    "constant_of_shape_weights": lambda: (
        [n("Constant", [], ["wshape"], name="wshape", value=c("wv", [4, 8, 1, 1], np.int64)),
         n("ConstantOfShape", ["wshape"], ["wc"], name="fill", value=c("fv", [0.25])),
         n("Conv", ["x", "wc"], ["y"], name="conv", kernel_shape=[1, 1])], [], [1, 4, 8, 8], 13),
    "conv1d": lambda: (
        [n("Reshape", ["x", "s3"], ["seq"], name="to_seq"),
         n("Conv", ["seq", "w"], ["c1"], name="conv1d", kernel_shape=[3], pads=[1, 1]),
         n("MaxPool", ["c1"], ["y"], name="pool1d", kernel_shape=[2], strides=[2])],
        [c("s3", [1, 8, 64], np.int64), w("w", 6, 8, 3)], [1, 6, 32], 13),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_vision_construct(case, tmp_path):
    nodes, inits, out_shape, opset = CASES[case]()
    model = make_model(nodes, [vi("x", list(IN))], [vi("y", out_shape)], inits, opset=opset)
    # a softmax over 64 values has outputs near 1/64: int8's 1/256 steps limit its SQNR
    res = check_onnx(model, tmp_path, IN, low=-2.0, high=2.0, min_sqnr=12.0 if "softmax" in case else 20.0)
    if res.micro_exact is not None:
        assert res.micro_exact, "micro backend differs from tflite-micro"


def test_channel_shuffle_has_no_nchw_round_trip(tmp_path):
    nodes, inits, out_shape, opset = CASES["channel_shuffle_5d"]()
    res = check_onnx(make_model(nodes, [vi("x", list(IN))], [vi("y", out_shape)], inits), tmp_path, IN)
    assert res.graph.op_counts().get("TRANSPOSE", 0) <= 3


def test_nhwc_input_of_a_tensorflow_export_needs_no_transpose(tmp_path):
    nodes = [n("Transpose", ["x"], ["t"], name="to_nchw", perm=[0, 3, 1, 2]),
             n("Conv", ["t", "w"], ["y"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1])]
    model = make_model(nodes, [vi("x", [1, 8, 8, 3])], [vi("y", [1, 4, 8, 8])], [w("w", 4, 3, 3, 3)])
    res = check_onnx(model, tmp_path, (1, 8, 8, 3))
    assert res.graph.input_layouts == {"x": "NHWC"} and res.graph.op_counts() == {"CONV_2D": 1}
