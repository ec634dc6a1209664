"""Round 4 of the real-ONNX scout (``benchmarks/real_models_onnx.py``): what the new models exposed, rebuilt as small
hand-made graphs so nothing is downloaded.

arabic-name-romanizer's encoder has a bool ``src_mask [batch, src_len]`` input that the benchmark freezes (all
False: no padding) and fixes to ``1x9`` with ``--input-shape``; the onnxruntime reference was fed a ``[1, 1]`` mask
instead (every dynamic dim taken as 1), so its masked mean over time divided by 1, not 9, and the converted model
(which is right) scored 7.6 dB against a wrong reference."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from benchmarks import real_models_onnx as rm


def _masked_mean(path: str) -> None:
    """``y = sum_t(x * !mask) / max(sum_t(!mask), 1)`` over ``x [1, T, 4]`` and a bool ``mask [1, T]`` (dynamic T)."""
    nodes = [
        helper.make_node("Not", ["mask"], ["keep"]),
        helper.make_node("Unsqueeze", ["keep", "minus1"], ["keep3"]),
        helper.make_node("Cast", ["keep3"], ["w"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["x", "w"], ["xw"]),
        helper.make_node("ReduceSum", ["xw", "axis1"], ["num"], keepdims=0),
        helper.make_node("ReduceSum", ["w", "axis1"], ["den"], keepdims=0),
        helper.make_node("Clip", ["den", "one"], ["den1"]),
        helper.make_node("Div", ["num", "den1"], ["y"]),
    ]
    inits = [helper.make_tensor("minus1", TensorProto.INT64, [1], [-1]),
             helper.make_tensor("axis1", TensorProto.INT64, [1], [1]),
             helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])]
    graph = helper.make_graph(nodes, "masked_mean", [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "T", 4]),
        helper.make_tensor_value_info("mask", TensorProto.BOOL, [1, "T"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def test_frozen_input_takes_its_input_shape_in_the_reference(tmp_path) -> None:
    path = str(tmp_path / "masked_mean.onnx")
    _masked_mean(path)
    xs = np.random.default_rng(0).normal(size=(3, 1, 9, 4)).astype(np.float32)
    got = rm._outputs(path, xs, {"mask": 0}, {"x": (1, 9, 4), "mask": (1, 9)})[0]
    assert np.allclose(got, xs.mean(axis=2), atol=1e-6)  # the mean over 9 steps, not their sum
    sess = rm._ort(path)
    feeds = rm._feeds(sess, xs[0], {"mask": 0}, {"mask": (1, 9)})
    assert feeds["mask"].dtype == np.bool_ and feeds["mask"].shape == (1, 9) and not feeds["mask"].any()


def test_frozen_input_without_a_shape_keeps_one_per_dynamic_dim(tmp_path) -> None:
    path = str(tmp_path / "masked_mean.onnx")
    _masked_mean(path)
    feeds = rm._feeds(rm._ort(path), np.zeros((1, 5, 4), np.float32), {"mask": 1})
    assert feeds["mask"].shape == (1, 1) and feeds["mask"].all()


def test_isbn_page_draws_a_barcode_inside_the_letterbox() -> None:
    a, b = rm.isbn_page(np.random.default_rng(5)), rm.isbn_page(np.random.default_rng(5))
    assert a.shape == (1, 3, 640, 640) and a.dtype == np.float32 and np.array_equal(a, b)
    assert np.allclose(a[0, :, :, :94], 114 / 255) and np.allclose(a[0, :, :, 546:], 114 / 255)
    row = a[0, 0, :, 94:546]
    transitions = np.abs(np.diff((row < 0.25).astype(np.int8), axis=1)).sum(axis=1)
    assert transitions.max() >= 40  # a row crossing the barcode's bars


def test_slider_captcha_has_a_dark_gap_and_grey_bars() -> None:
    x = rm.slider_captcha(np.random.default_rng(2))
    assert x.shape == (1, 3, 640, 640) and 0 <= x.min() and x.max() <= 1
    assert np.allclose(x[0, :, :160], 114 / 255) and np.allclose(x[0, :, 480:], 114 / 255)
    assert not np.allclose(x[0, :, 160:480], 114 / 255)
