"""Spatial ONNX ops the importer lowers to int8 TFLite ops: dilated AveragePool (1-D, 2-D, 3-D) and LpPool,
ConvTranspose (3-D, dilated, output_shape past the full output), Col2Im (2-D, 3-D), RoiAlign (avg, max;
constant regions), cubic GridSample (constant grid), DeformConv (constant offsets and mask), MaxUnpool
(constant indices), 3-D GlobalAverage/MaxPool and GlobalLpPool.

Each model is built with ``onnx.helper`` at random shapes, strides, pads and dilations and goes through
:func:`test_import_ops_common.check_onnx`: the float IR equals onnxruntime on the source model, the int8
.tflite (LiteRT) and QDQ .onnx (onnxruntime) reach a minimum SQNR against onnxruntime float, tflite-micro
agrees with LiteRT, and the micro backend is ``np.array_equal`` to tflite-micro. What stays unsupported is
refused in one line naming the node.
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from test_import_ops_common import check_onnx

from converters.importers.onnx import import_onnx
from edge_runtime.errors import UnsupportedModelError


def _model(nodes: list, in_shape: tuple, inits: tuple = (), opset: int = 19,
           extra_inputs: tuple = ()) -> onnx.ModelProto:
    """A float model of ``nodes`` from ``x`` to ``y`` (output shape from ONNX shape inference)."""
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape))] + list(extra_inputs)
    g = helper.make_graph(nodes, "spatial", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    m = onnx.shape_inference.infer_shapes(m, strict_mode=True)
    onnx.checker.check_model(m, full_check=True)
    return m


def _init(name: str, value: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value), name)


def _check(m: onnx.ModelProto, tmp_path, in_shape: tuple, min_sqnr: float = 30.0, **kw) -> None:
    res = check_onnx(m, tmp_path, in_shape, min_sqnr=min_sqnr, **kw)
    assert res.tflm_ran, "tflite-micro did not run"
    assert res.micro_exact is True, "micro backend differs from tflite-micro (or lacks a kernel)"


def _refuses(m: onnx.ModelProto, tmp_path, *words: str) -> None:
    path = str(tmp_path / "refused.onnx")
    onnx.save(m, path)
    with pytest.raises(UnsupportedModelError) as e:
        import_onnx(path)
    msg = str(e.value)
    assert "\n" not in msg and all(w in msg for w in words), msg


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dilated_average_pool_2d(tmp_path, seed):
    rng = np.random.default_rng(seed)
    k = [int(v) for v in rng.integers(2, 4, 2)]
    a = {"kernel_shape": k, "strides": [int(v) for v in rng.integers(1, 3, 2)],
         "dilations": [int(v) for v in rng.integers(2, 4, 2)], "pads": [int(rng.integers(0, kk)) for kk in k * 2],
         "ceil_mode": int(seed == 1), "count_include_pad": int(seed == 2)}
    shape = (1, 3, int(rng.integers(9, 14)), int(rng.integers(9, 14)))
    _check(_model([helper.make_node("AveragePool", ["x"], ["y"], **a)], shape), tmp_path, shape)


def test_dilated_average_pool_1d_and_lppool(tmp_path):
    shape = (1, 4, 17)
    avg = helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[3], dilations=[3], strides=[2], pads=[2, 1])
    _check(_model([avg], shape), tmp_path, shape)
    shape = (1, 2, 10, 9)
    lp = helper.make_node("LpPool", ["x"], ["y"], kernel_shape=[2, 3], dilations=[2, 2], p=2, pads=[1, 1, 0, 1])
    (tmp_path / "lp").mkdir()
    _check(_model([lp], shape), tmp_path / "lp", shape, min_sqnr=25.0)


@pytest.mark.parametrize("p", [1, 2])
def test_lppool_3d(tmp_path, p):
    shape = (1, 2, 5, 6, 7)
    lp = helper.make_node("LpPool", ["x"], ["y"], kernel_shape=[2, 3, 2], strides=[1, 2, 2], pads=[1, 1, 0, 0, 1, 1], p=p)
    _check(_model([lp], shape), tmp_path, shape, min_sqnr=25.0)


def test_dilated_average_pool_3d(tmp_path):
    shape = (1, 2, 7, 8, 9)
    a = {"kernel_shape": [2, 3, 2], "dilations": [2, 1, 3], "strides": [1, 2, 2], "pads": [1, 0, 1, 1, 1, 0],
         "ceil_mode": 1}
    _check(_model([helper.make_node("AveragePool", ["x"], ["y"], **a)], shape), tmp_path, shape)


@pytest.mark.parametrize("seed", [0, 1])
def test_conv_transpose_3d(tmp_path, seed):
    rng = np.random.default_rng(10 + seed)
    c, o = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    k = [int(v) for v in rng.integers(1, 4, 3)]
    w = rng.normal(size=(c, o) + tuple(k)).astype(np.float32)
    b = rng.normal(size=o).astype(np.float32)
    a = {"strides": [int(v) for v in rng.integers(1, 3, 3)], "dilations": [int(v) for v in rng.integers(1, 3, 3)],
         "pads": [int(rng.integers(0, kk)) for kk in k * 2], "output_padding": [int(seed), 0, int(seed)]}
    a["output_padding"] = [min(p, s - 1) for p, s in zip(a["output_padding"], a["strides"])]
    shape = (1, c, 3, 4, 5)
    node = helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], **a)
    _check(_model([node], shape, (_init("w", w), _init("b", b))), tmp_path, shape)


@pytest.mark.parametrize("attrs", [{"auto_pad": "SAME_UPPER", "strides": [2, 1, 2]},
                                   {"auto_pad": "SAME_LOWER", "strides": [2, 2, 1]},
                                   {"output_shape": [7, 9, 10], "strides": [2, 2, 2]}])
def test_conv_transpose_3d_same_and_output_shape(tmp_path, attrs):
    w = np.random.default_rng(1).normal(size=(2, 3, 3, 2, 3)).astype(np.float32)
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], **attrs)
    _check(_model([node], (1, 2, 3, 4, 5), (_init("w", w),)), tmp_path, (1, 2, 3, 4, 5))


def test_conv_transpose_2d_dilated_and_output_shape_past_full(tmp_path):
    rng = np.random.default_rng(5)
    w = rng.normal(size=(2, 3, 3, 2)).astype(np.float32)
    shape = (1, 2, 5, 6)
    dil = helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 1], dilations=[2, 3], pads=[1, 0, 2, 1])
    _check(_model([dil], shape, (_init("w", w),)), tmp_path, shape)
    # full output (11, 7): output_shape (12, 7) ends one pixel past it (total padding -1: onnx begins at 0)
    big = helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 1], output_shape=[12, 7])
    sub = tmp_path / "big"
    sub.mkdir()
    _check(_model([big], shape, (_init("w", w),)), sub, shape)


@pytest.mark.parametrize("seed", [0, 1])
def test_col2im_2d(tmp_path, seed):
    rng = np.random.default_rng(20 + seed)
    block = [int(v) for v in rng.integers(1, 4, 2)]
    strides = [int(v) for v in rng.integers(1, 3, 2)]
    dil = [int(v) for v in rng.integers(1, 3, 2)]
    pads = [int(v) for v in rng.integers(0, 2, 4)]
    image = [int(v) for v in rng.integers(6, 9, 2)]
    grid = [(image[i] + pads[i] + pads[i + 2] - (block[i] - 1) * dil[i] - 1) // strides[i] + 1 for i in range(2)]
    c = 2
    shape = (1, c * block[0] * block[1], grid[0] * grid[1])
    node = helper.make_node("Col2Im", ["x", "image", "block"], ["y"], strides=strides, dilations=dil, pads=pads)
    inits = (_init("image", np.array(image, np.int64)), _init("block", np.array(block, np.int64)))
    _check(_model([node], shape, inits), tmp_path, shape)


def test_col2im_3d(tmp_path):
    image, block = [3, 4, 5], [2, 1, 3]
    shape = (1, 2 * 6, 2 * 4 * 3)
    node = helper.make_node("Col2Im", ["x", "image", "block"], ["y"])
    inits = (_init("image", np.array(image, np.int64)), _init("block", np.array(block, np.int64)))
    _check(_model([node], shape, inits), tmp_path, shape)


@pytest.mark.parametrize("mode,ct", [("avg", "half_pixel"), ("avg", "output_half_pixel"), ("max", "half_pixel")])
def test_roi_align_constant_regions(tmp_path, mode, ct):
    rng = np.random.default_rng(30)
    n, c, h, w = 1, 3, 12, 10  # check_onnx feeds a batch of 1
    x0, y0 = rng.uniform(-1, 5, 4), rng.uniform(-1, 6, 4)
    rois = np.stack([x0, y0, x0 + rng.uniform(1, 6, 4), y0 + rng.uniform(1, 7, 4)], 1).astype(np.float32) * 2
    batch = np.zeros(4, np.int64)
    ratio = 2 if mode == "max" else 0
    node = helper.make_node("RoiAlign", ["x", "rois", "batch"], ["y"], mode=mode, output_height=3, output_width=4,
                            sampling_ratio=ratio, spatial_scale=0.5, coordinate_transformation_mode=ct)
    shape = (n, c, h, w)
    _check(_model([node], shape, (_init("rois", rois), _init("batch", batch))), tmp_path, shape,
           min_sqnr=28.0 if mode == "max" else 30.0)


@pytest.mark.parametrize("padding,align", [("zeros", 0), ("border", 1), ("reflection", 0)])
def test_grid_sample_cubic_constant_grid(tmp_path, padding, align):
    rng = np.random.default_rng(40)
    grid = rng.uniform(-1.2, 1.2, (1, 5, 6, 2)).astype(np.float32)
    node = helper.make_node("GridSample", ["x", "grid"], ["y"], mode="cubic", padding_mode=padding,
                            align_corners=align)
    shape = (1, 3, 7, 8)
    _check(_model([node], shape, (_init("grid", grid),), opset=20), tmp_path, shape, min_sqnr=25.0)


def test_deform_conv_constant_offsets(tmp_path):
    rng = np.random.default_rng(50)
    n, c, h, w, o = 1, 4, 7, 8, 3
    kh, kw, og = 2, 3, 2
    strides, pads, dil = [1, 2], [1, 0, 0, 1], [2, 1]
    oh = (h + pads[0] + pads[2] - (kh - 1) * dil[0] - 1) // strides[0] + 1
    ow = (w + pads[1] + pads[3] - (kw - 1) * dil[1] - 1) // strides[1] + 1
    weights = rng.normal(size=(o, c, kh, kw)).astype(np.float32)
    offset = rng.uniform(-1.5, 1.5, (n, og * 2 * kh * kw, oh, ow)).astype(np.float32)
    mask = rng.uniform(0, 1, (n, og * kh * kw, oh, ow)).astype(np.float32)
    bias = rng.normal(size=o).astype(np.float32)
    node = helper.make_node("DeformConv", ["x", "w", "offset", "b", "mask"], ["y"], kernel_shape=[kh, kw],
                            strides=strides, pads=pads, dilations=dil, offset_group=og)
    inits = (_init("w", weights), _init("offset", offset), _init("b", bias), _init("mask", mask))
    _check(_model([node], (n, c, h, w), inits), tmp_path, (n, c, h, w))


def test_max_unpool_constant_indices(tmp_path):
    rng = np.random.default_rng(60)
    shape = (1, 2, 3, 4)
    out_hw = (6, 8)
    # each input element names a distinct output element of its own channel (as a MaxPool's indices do)
    idx = np.stack([rng.permutation(out_hw[0] * out_hw[1])[:12] + ch * 48 for ch in range(2)]).reshape(shape)
    node = helper.make_node("MaxUnpool", ["x", "i"], ["y"], kernel_shape=[2, 2], strides=[2, 2])
    _check(_model([node], shape, (_init("i", idx.astype(np.int64)),)), tmp_path, shape)


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"])
def test_global_pools_3d(tmp_path, op):
    shape = (1, 3, 4, 5, 6)
    # inputs in [-0.5, 1.5]: a mean of 120 values in [-1, 1] is ~0, all noise
    _check(_model([helper.make_node(op, ["x"], ["y"])], shape), tmp_path, shape, min_sqnr=30.0, low=-0.5, high=1.5)


def test_spatial_refusals_are_one_line(tmp_path):
    grid_in = helper.make_tensor_value_info("grid", TensorProto.FLOAT, [1, 4, 4, 2])
    cubic = helper.make_node("GridSample", ["x", "grid"], ["y"], mode="cubic")
    _refuses(_model([cubic], (1, 1, 5, 5), opset=20, extra_inputs=(grid_in,)), tmp_path, "GridSample",
             "constant grid")
    rois_in = helper.make_tensor_value_info("rois", TensorProto.FLOAT, [2, 4])
    roi = helper.make_node("RoiAlign", ["x", "rois", "batch"], ["y"])
    _refuses(_model([roi], (1, 1, 8, 8), (_init("batch", np.zeros(2, np.int64)),), extra_inputs=(rois_in,)),
             tmp_path, "RoiAlign", "rois must be constant")
    lp = helper.make_node("LpPool", ["x"], ["y"], kernel_shape=[2, 2], p=5)
    _refuses(_model([lp], (1, 1, 6, 6)), tmp_path, "LpPool", "p=5")


@pytest.mark.parametrize("size,align", [((1, 3, 5, 7), 0), ((1, 2, 3, 4, 5), 1)])
def test_affine_grid(tmp_path, size, align):
    dims = len(size) - 2
    node = helper.make_node("AffineGrid", ["x", "size"], ["y"], align_corners=align)
    shape = (1, dims, dims + 1)
    _check(_model([node], shape, (_init("size", np.array(size, np.int64)),), opset=20), tmp_path, shape)
