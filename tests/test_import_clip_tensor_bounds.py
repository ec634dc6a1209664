"""ONNX Clip whose min and/or max is computed at run time (log-mel front ends: power_to_db's top_db is
``Clip(x, min=ReduceMax(x) - 80)``) -> MAXIMUM / MINIMUM against that tensor, with broadcasting.

Each model is built with ``onnx.helper`` and goes through :func:`check_graph` (import, calibration, the
int8 .tflite on LiteRT and the QDQ .onnx on onnxruntime, SQNR against the float model on onnxruntime,
micro == tflite-micro with ``np.array_equal``). Constant bounds keep their single-op forms.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from test_import_breadth_onnx import check_graph, onnx_reference, uniform

from converters.importers.onnx import import_onnx
from edge_runtime.errors import UnsupportedModelError

SHAPE = [1, 3, 8, 8]
OUT = [1, 4, 8, 8]


def _c(name: str, v: float) -> object:
    return numpy_helper.from_array(np.array(v, np.float32), name)


def _peak(src: str, op: str, k: str, dst: str, bound: str) -> list:
    """``ReduceMax(src op k)`` over all axes (no axes attribute: opsets 11 to 17 read it the same), which is
    ``ReduceMax(src) op k``, as a 0-d scalar (``bound="scalar"``) or reshaped to ``(1,)`` (``"one"``): the
    bound shapes onnxruntime's Clip accepts."""
    nodes = [helper.make_node(op, [src, k], [f"{dst}/pre"], name=f"{dst}/pre")]
    if bound == "scalar":
        return nodes + [helper.make_node("ReduceMax", [f"{dst}/pre"], [dst], name=dst, keepdims=0)]
    return nodes + [helper.make_node("ReduceMax", [f"{dst}/pre"], [f"{dst}/0d"], name=f"{dst}/0d", keepdims=0),
                    helper.make_node("Reshape", [f"{dst}/0d", "shape1"], [dst], name=dst)]


def _model(path: Path, lo: str, hi: str, opset: int, bound: str = "scalar") -> str:
    """Conv -> Clip(c, lo, hi) where each bound is "" (absent), "const" or "tensor" (computed from c)."""
    rng = np.random.default_rng(3)
    w = numpy_helper.from_array((rng.standard_normal((4, 3, 3, 3)) * 0.4).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1])]
    inits = [w, _c("k_lo", 1.2), _c("k_hi", 0.4), _c("c_lo", -0.3), _c("c_hi", 1.5),
             numpy_helper.from_array(np.array([1], np.int64), "shape1")]
    ins = ["c", "", ""]
    if lo == "tensor":  # top_db style: max - constant
        nodes += _peak("c", "Sub", "k_lo", "lo", bound)
        ins[1] = "lo"
    elif lo == "const":
        ins[1] = "c_lo"
    if hi == "tensor":
        nodes += _peak("c", "Mul", "k_hi", "hi", bound)
        ins[2] = "hi"
    elif hi == "const":
        ins[2] = "c_hi"
    while ins[-1] == "":
        ins.pop()
    nodes.append(helper.make_node("Clip", ins, ["y"], name="clip"))
    g = helper.make_graph(nodes, "clip", [helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPE)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, OUT)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 7
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, str(path))
    return str(path)


def _data() -> np.ndarray:
    return uniform(tuple(SHAPE)) * 2


@pytest.mark.parametrize("opset", [11, 13])
@pytest.mark.parametrize("bound", ["scalar", "one"])  # a 0-d bound or one of shape (1,), broadcast to x
@pytest.mark.parametrize("lo,hi,kinds", [("tensor", "", ("MAXIMUM",)), ("", "tensor", ("MINIMUM",)),
                                         ("tensor", "tensor", ("MAXIMUM", "MINIMUM")),
                                         ("const", "tensor", ("MAXIMUM", "MINIMUM")),
                                         ("tensor", "const", ("MAXIMUM", "MINIMUM"))])
def test_tensor_bounds(lo, hi, kinds, bound, opset, tmp_path):
    """A computed bound -> MAXIMUM (min) / MINIMUM (max) against it; close to float onnxruntime, micro exact."""
    path = _model(tmp_path / "clip.onnx", lo, hi, opset, bound)
    graph = import_onnx(path)
    ops = [op for op in graph.ops if op.kind in ("MAXIMUM", "MINIMUM")]
    assert tuple(op.kind for op in ops) == kinds, graph.op_counts()
    assert ops[-1].outputs == ["y"]
    m = check_graph(graph, _data(), onnx_reference(path), tmp_path, min_sqnr=25.0)
    assert m.tflite["y"] > 25.0 and m.onnx["y"] > 25.0


def test_bound_clips_something(tmp_path):
    """The computed bound is active on the test data (so the check above can fail): the output differs from
    the unclipped Conv on a good share of the values, and a model that ignored the bound would be far off."""
    import onnxruntime as ort

    path = _model(tmp_path / "clip.onnx", "tensor", "tensor", 13)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    x = _data()[0]
    y = sess.run(None, {"x": x})[0]
    g = onnx.load(path)
    g.graph.output[0].name = "c"
    del g.graph.node[1:]
    onnx.save(g, str(tmp_path / "conv.onnx"))
    c = ort.InferenceSession(str(tmp_path / "conv.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert np.mean(y != c) > 0.3


@pytest.mark.parametrize("lo,hi,kind", [(0.0, 6.0, "RELU6"), (0.0, None, "RELU")])
def test_constant_bounds_keep_single_ops(lo, hi, kind, tmp_path):
    """Constant bounds keep today's forms: RELU6 / RELU (fused into the Conv), no MAXIMUM or MINIMUM."""
    extra = [_c("z", lo)] + ([_c("six", hi)] if hi is not None else [])
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array((rng.standard_normal((4, 3, 3, 3)) * 0.4).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Clip", ["c", "z"] + (["six"] if hi is not None else []), ["y"], name="clip")]
    g = helper.make_graph(nodes, "clip", [helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPE)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, OUT)], [w] + extra)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    onnx.save(m, str(tmp_path / "c.onnx"))
    graph = import_onnx(str(tmp_path / "c.onnx"))
    counts = graph.op_counts()
    fused = [op.act for op in graph.ops if op.kind == "CONV_2D"]
    assert counts.get(kind) == 1 or fused == [kind], (counts, fused)  # RELU6 / RELU (or fused into the Conv)
    assert "MAXIMUM" not in counts and "MINIMUM" not in counts, counts


def test_constant_bounds_are_constant_operands(tmp_path):
    """Other constant bounds: MAXIMUM then MINIMUM, each against a one-element constant."""
    graph = import_onnx(_model(tmp_path / "c.onnx", "const", "const", 13))
    ops = [op for op in graph.ops if op.kind in ("MAXIMUM", "MINIMUM")]
    assert [op.kind for op in ops] == ["MAXIMUM", "MINIMUM"]
    vals = [float(graph.tensors[op.inputs[1]].data.reshape(-1)[0]) for op in ops]
    assert all(graph.tensors[op.inputs[1]].is_constant for op in ops)
    np.testing.assert_allclose(vals, [-0.3, 1.5], rtol=1e-6)


def test_bound_that_does_not_broadcast_is_refused_in_one_line(tmp_path):
    """A bound whose shape does not broadcast to the input is refused at import, naming the node."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array((rng.standard_normal((4, 3, 3, 3)) * 0.4).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("ReduceMax", ["c"], ["peak"], name="peak", axes=[3], keepdims=1),  # (1, 4, 8, 1)
             helper.make_node("Transpose", ["peak"], ["bad"], name="bad", perm=[0, 2, 3, 1]),  # (1, 8, 1, 4)
             helper.make_node("Clip", ["c", "bad"], ["y"], name="clip")]
    g = helper.make_graph(nodes, "clip", [helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPE)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, OUT)], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    onnx.save(m, str(tmp_path / "bad.onnx"))
    with pytest.raises(UnsupportedModelError) as exc:
        import_onnx(str(tmp_path / "bad.onnx"))
    msg = str(exc.value)
    assert "\n" not in msg and "'clip' (Clip)" in msg and "does not broadcast" in msg, msg


@pytest.mark.parametrize("op", ["Sub", "Add", "Mul", "Div"])
def test_power_to_db_floor_on_a_scalar_peak(op, tmp_path):
    """power_to_db's floor as exported (openWakeWord's melspectrogram.onnx): ``Clip(x, ReduceMax(x) - 80)``
    with the arithmetic on the 0-d ReduceMax output (keepdims=0), not inside the reduce. A scalar with a
    one-element constant is written as an op over (1,) (IR constants are at least 1-D): it converts, stays
    close to float onnxruntime, and micro equals tflite-micro (before, micro refused the written file:
    output shape () against the broadcast shape (1,))."""
    rng = np.random.default_rng(5)
    w = numpy_helper.from_array((rng.standard_normal((4, 3, 3, 3)) * 0.4).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("ReduceMax", ["c"], ["peak"], name="peak", keepdims=0),
             helper.make_node(op, ["peak", "k"], ["lo"], name="floor"),
             helper.make_node("Clip", ["c", "lo"], ["y"], name="clip")]
    k = {"Sub": 1.2, "Add": -1.2, "Mul": 0.3, "Div": 3.0}[op]
    g = helper.make_graph(nodes, "db_floor", [helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPE)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, OUT)], [w, _c("k", k)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    onnx.checker.check_model(m, full_check=True)
    path = str(tmp_path / "db_floor.onnx")
    onnx.save(m, path)
    graph = import_onnx(path)
    assert graph.tensors["lo"].shape == (1,)
    measured = check_graph(graph, _data(), onnx_reference(path), tmp_path, min_sqnr=25.0)
    assert measured.tflite["y"] > 25.0 and measured.onnx["y"] > 25.0
