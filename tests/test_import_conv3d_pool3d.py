"""3-D Conv, MaxPool and AveragePool (5-D ``[N, C, D, H, W]`` inputs), lowered to 2-D ops tflite-micro has.

Each model is built with ``onnx.helper`` at random shapes, kernels, strides, dilations, pads (explicit and
``auto_pad``), groups, ``ceil_mode`` and ``count_include_pad`` and goes through
:func:`test_import_breadth_onnx.check_graph`: the float IR against onnxruntime float on the source model
(allclose: the lowering is exact in float), the int8 .tflite on LiteRT and the QDQ .onnx on onnxruntime
with a minimum SQNR against onnxruntime float, and micro == tflite-micro (``np.array_equal``). What stays
unsupported is refused in one line naming the node.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from test_import_breadth_onnx import CALIB, HELD_OUT, check_graph, onnx_reference

from converters.importers.onnx import import_onnx
from edge_runtime.errors import UnsupportedModelError

N = CALIB + HELD_OUT


def _save(nodes: list, in_shape: tuple, path: Path, inits: tuple = (), opset: int = 13) -> str:
    """A float model of ``nodes`` from ``x`` to ``y`` (output shape from ONNX shape inference), saved."""
    g = helper.make_graph(nodes, "conv3d", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    m = onnx.shape_inference.infer_shapes(m, strict_mode=True)
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, str(path))
    return str(path)


def _refuses(path: str, *words: str) -> None:
    """Import refuses ``path`` in one line containing every one of ``words``."""
    with pytest.raises(UnsupportedModelError) as e:
        import_onnx(path)
    msg = str(e.value)
    assert "\n" not in msg and all(w in msg for w in words), msg


def _window(rng: np.random.Generator, auto: bool, dilate: bool, pool: bool = False) -> dict:
    """Random 3-D window attributes: kernel, strides, dilations and pads (each pad below the kernel span;
    for pooling below the kernel, as onnxruntime requires)."""
    kernel = [int(rng.integers(2, 4))] + [int(v) for v in rng.integers(1, 4, 2)]  # depth taps always folded
    a = {"kernel_shape": kernel, "strides": [int(v) for v in rng.integers(1, 3, 3)]}
    dil = [int(v) for v in rng.integers(1, 3, 3)] if dilate else [1, 1, 1]
    if dilate:
        a["dilations"] = dil
    if auto:
        a["auto_pad"] = str(rng.choice(["SAME_UPPER", "SAME_LOWER", "VALID"]))
    else:
        a["pads"] = [int(rng.integers(0, k if pool else (k - 1) * d + 1)) for k, d in zip(kernel * 2, dil * 2)]
    return a


@pytest.mark.parametrize("seed", range(5))
def test_conv3d_random(seed, tmp_path):
    """Conv on 5-D input, random everything (groups, bias or none, batch 1-2): one CONV_2D per group (or one
    DEPTHWISE_CONV_2D) over every output depth at once (depth taps folded into channels), no 3-D op."""
    rng = np.random.default_rng(seed)
    group = int(rng.choice([1, 1, 2, 3]))
    c, o = group * int(rng.integers(1, 4)), group * int(rng.integers(1, 4))
    a = _window(rng, auto=seed % 3 == 2, dilate=seed % 2 == 1)
    a["group"] = group
    shape = (int(rng.integers(1, 3)), c) + tuple(int(v) for v in rng.integers(5, 9, 3))
    w = rng.normal(0, 0.5, (o, c // group) + tuple(a["kernel_shape"])).astype(np.float32)
    inits = [numpy_helper.from_array(w, "w")]
    inputs = ["x", "w"]
    if seed != 3:
        inits.append(numpy_helper.from_array(rng.normal(0, 0.3, o).astype(np.float32), "b"))
        inputs.append("b")
    path = _save([helper.make_node("Conv", inputs, ["y"], name="conv3d", **a)], shape, tmp_path / "c.onnx", tuple(inits))
    graph = import_onnx(path, {"x": shape})
    ops = graph.op_counts()
    convs = ops.get("CONV_2D", 0) + ops.get("DEPTHWISE_CONV_2D", 0)
    assert convs in (1, group) and not any("3D" in k for k in ops), ops
    data = rng.uniform(-1, 1, (N,) + shape).astype(np.float32)
    m = check_graph(graph, data, onnx_reference(path), tmp_path, min_sqnr=30.0)
    assert m.tflite["y"] >= 30.0


def test_depthwise_conv3d_then_max_pool3d(tmp_path):
    """A depthwise 3-D Conv (group == channels) feeding a 3-D MaxPool: two lowered 3-D ops back to back."""
    rng = np.random.default_rng(7)
    shape = (1, 4, 6, 7, 5)
    w = rng.normal(0, 0.5, (4, 1, 2, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["h"], name="dw3d", group=4, kernel_shape=[2, 3, 3],
                              pads=[1, 1, 1, 0, 1, 1]),
             helper.make_node("MaxPool", ["h"], ["y"], name="mp3d", kernel_shape=[2, 2, 2], strides=[2, 2, 1])]
    path = _save(nodes, shape, tmp_path / "dw.onnx", (numpy_helper.from_array(w, "w"),))
    graph = import_onnx(path, {"x": shape})
    data = rng.uniform(-1, 1, (N,) + shape).astype(np.float32)
    check_graph(graph, data, onnx_reference(path), tmp_path, min_sqnr=30.0)


@pytest.mark.parametrize("op,seed", [("MaxPool", 0), ("MaxPool", 1), ("MaxPool", 2),
                                     ("AveragePool", 0), ("AveragePool", 1), ("AveragePool", 2), ("AveragePool", 3)])
def test_pool3d_random(op, seed, tmp_path):
    """3-D MaxPool (dilated too) / AveragePool (count_include_pad 0/1) with random windows, explicit or
    auto pads and ceil_mode: a 2-D pooling over (H, W) per depth frame, then one over depth."""
    rng = np.random.default_rng(100 + seed)
    a = _window(rng, auto=seed == 2, dilate=op == "MaxPool" and seed != 2, pool=True)
    a["ceil_mode"] = int(seed % 2 == 1 and "auto_pad" not in a)
    if op == "AveragePool":
        a["count_include_pad"] = int(seed >= 2)
    shape = (int(rng.integers(1, 3)), int(rng.integers(1, 5))) + tuple(int(v) for v in rng.integers(4, 9, 3))
    path = _save([helper.make_node(op, ["x"], ["y"], name="pool3d", **a)], shape, tmp_path / "p.onnx")
    graph = import_onnx(path, {"x": shape})
    assert not any("3D" in k for k in graph.op_counts())
    data = rng.uniform(-1, 1, (N,) + shape).astype(np.float32)
    m = check_graph(graph, data, onnx_reference(path), tmp_path, min_sqnr=25.0)
    assert m.tflite["y"] >= 25.0


def test_grouped_conv_transpose3d_is_refused(tmp_path):
    """Grouped ConvTranspose on 5-D input stays unsupported: one line naming the node."""
    w = np.ones((2, 3, 2, 2, 2), np.float32)
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="deconv3d", group=2)
    path = _save([node], (1, 2, 3, 4, 4), tmp_path / "t.onnx", (numpy_helper.from_array(w, "w"),))
    _refuses(path, "deconv3d", "ConvTranspose", "group")


def test_max_pool3d_indices_refused_and_dilated_average_converts(tmp_path):
    """MaxPool's Indices output on 5-D input: a one-line refusal; dilated AveragePool (opset 19) converts."""
    node = helper.make_node("MaxPool", ["x"], ["y", "idx"], name="mp_idx", kernel_shape=[2, 2, 2])
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
                           helper.make_tensor_value_info("idx", TensorProto.INT64, None)])
    m = onnx.shape_inference.infer_shapes(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]))
    m.ir_version = 8
    onnx.save(m, str(tmp_path / "idx.onnx"))
    _refuses(str(tmp_path / "idx.onnx"), "mp_idx", "Indices")
    node = helper.make_node("AveragePool", ["x"], ["y"], name="ap_dil", kernel_shape=[2, 2, 2], dilations=[2, 1, 1])
    path = _save([node], (1, 2, 6, 4, 4), tmp_path / "dil.onnx", opset=19)
    data = np.random.default_rng(3).uniform(-1, 1, (N, 1, 2, 6, 4, 4)).astype(np.float32)
    check_graph(import_onnx(path), data, onnx_reference(path), tmp_path, min_sqnr=30.0)


def test_conv3d_relu_conv3d_average_pool3d_chain(tmp_path):
    """A small 3-D CNN (Conv, Relu, Conv, AveragePool with SAME padding): 5-D activations between lowered
    ops, all of it against onnxruntime float."""
    rng = np.random.default_rng(11)
    shape = (1, 3, 6, 10, 9)
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["h"], name="c1", kernel_shape=[3, 3, 3], pads=[1] * 6),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("Conv", ["r", "w2"], ["h2"], name="c2", kernel_shape=[2, 3, 3], strides=[1, 2, 2],
                              auto_pad="SAME_UPPER"),
             helper.make_node("AveragePool", ["h2"], ["y"], name="ap", kernel_shape=[2, 2, 2], strides=[2, 2, 2],
                              auto_pad="SAME_LOWER")]
    inits = (numpy_helper.from_array(rng.normal(0, 0.3, (6, 3, 3, 3, 3)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.normal(0, 0.1, 6).astype(np.float32), "b1"),
             numpy_helper.from_array(rng.normal(0, 0.3, (4, 6, 2, 3, 3)).astype(np.float32), "w2"))
    path = _save(nodes, shape, tmp_path / "chain.onnx", inits)
    graph = import_onnx(path, {"x": shape})
    assert graph.op_counts().get("CONV_2D") == 2
    data = rng.uniform(-1, 1, (N,) + shape).astype(np.float32)
    check_graph(graph, data, onnx_reference(path), tmp_path, min_sqnr=25.0)  # AVERAGE_POOL keeps its input scale
