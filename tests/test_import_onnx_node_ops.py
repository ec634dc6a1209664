"""ONNX ops and attributes the onnx wheel's node conformance tests (``benchmarks/onnx_node_tests.py``)
showed refused, now converted: RNN, CastLike, LpPool (p = 1, 2), Gemm with ``transA=1`` or a matrix C,
LayerNormalization's Mean/InvStdDev outputs; and the one-line refusals of what stays unsupported (zero-size
tensors, an RNN activation other than tanh, a CastLike of an activation to an integer type, LpPool p=5).

Each model is built with ``onnx.helper`` at random sizes and attributes and goes through
:func:`test_import_breadth_onnx.check_graph`: the float IR against onnxruntime on the source model, the
int8 .tflite on LiteRT and the QDQ .onnx on onnxruntime with a minimum SQNR against that reference, and
micro == tflite-micro (``np.array_equal``). The benchmark's own case handling (opset relabelling, skips,
frozen inputs) is checked on small in-memory models at the end.
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


def _save(nodes: list, inputs: list, outputs: list, path: Path, inits: tuple = (), opset: int = 17) -> str:
    """A float model of ``nodes``, checked and saved."""
    g = helper.make_graph(nodes, "node_ops", inputs, outputs, list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, str(path))
    return str(path)


def _vi(name: str, shape: tuple, elem: int = TensorProto.FLOAT) -> object:
    return helper.make_tensor_value_info(name, elem, list(shape))


def _const(name: str, value: np.ndarray) -> object:
    return numpy_helper.from_array(np.asarray(value), name)


@pytest.mark.parametrize("seed,direction", [(0, "forward"), (1, "reverse"), (2, "bidirectional")])
def test_rnn_unrolled(seed, direction, tmp_path):
    """RNN (tanh) at random sizes, layout, bias and initial state: int8 close to float, micro == TFLM."""
    rng = np.random.default_rng(seed)
    seq, batch, size, hidden = (int(v) for v in rng.integers(2, 5, 4))
    dirs = 2 if direction == "bidirectional" else 1
    layout = int(rng.integers(0, 2))
    x_shape = (seq, batch, size) if layout == 0 else (batch, seq, size)
    y_shape = (seq, dirs, batch, hidden) if layout == 0 else (batch, seq, dirs, hidden)
    h_shape = (dirs, batch, hidden) if layout == 0 else (batch, dirs, hidden)
    inits = [_const("w", rng.standard_normal((dirs, hidden, size)).astype(np.float32) * 0.6),
             _const("r", rng.standard_normal((dirs, hidden, hidden)).astype(np.float32) * 0.4),
             _const("b", rng.standard_normal((dirs, 2 * hidden)).astype(np.float32) * 0.2)]
    ins = ["x", "w", "r", "b"]
    if seed == 1:  # a constant non-zero initial state, the same for every batch row
        h0 = np.broadcast_to(rng.standard_normal((dirs, 1, hidden)) * 0.3, (dirs, batch, hidden))
        inits.append(_const("h0", np.ascontiguousarray(h0 if layout == 0 else h0.transpose(1, 0, 2), np.float32)))
        ins += ["", "h0"]
    node = helper.make_node("RNN", ins, ["y", "y_h"], name="rnn", hidden_size=hidden, direction=direction,
                            layout=layout)
    path = _save([node], [_vi("x", x_shape)], [_vi("y", y_shape), _vi("y_h", h_shape)], tmp_path / "rnn.onnx",
                 tuple(inits), opset=14)
    graph = import_onnx(path, {"x": x_shape})  # keep the batch (the default makes it 1)
    assert graph.op_counts().get("TANH") == seq * dirs
    check_graph(graph, uniform(x_shape, seed=seed) * 2, onnx_reference(path), tmp_path, min_sqnr=28.0)


def test_rnn_other_activation_is_one_line(tmp_path):
    """An RNN activation other than tanh is refused in one line naming the node."""
    rng = np.random.default_rng(3)
    inits = (_const("w", rng.standard_normal((1, 4, 3)).astype(np.float32)),
             _const("r", rng.standard_normal((1, 4, 4)).astype(np.float32)))
    node = helper.make_node("RNN", ["x", "w", "r"], ["y"], name="rnn_relu", hidden_size=4, activations=["Relu"])
    path = _save([node], [_vi("x", (2, 1, 3))], [_vi("y", (2, 1, 1, 4))], tmp_path / "rnn_relu.onnx", inits, 14)
    with pytest.raises(UnsupportedModelError) as e:
        import_onnx(path)
    assert "rnn_relu" in str(e.value) and "activations" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("like_type", [TensorProto.DOUBLE, TensorProto.FLOAT])
def test_castlike_to_float_is_the_input(like_type, tmp_path):
    """CastLike to a float type: the activation itself; a constant CastLike'd to the input's type (a function
    body's alpha) becomes a float constant."""
    rng = np.random.default_rng(4)
    shape = tuple(int(v) for v in rng.integers(2, 6, 3))
    like = helper.make_tensor("like", like_type, [1], [0.0])
    alpha = helper.make_tensor("alpha", TensorProto.DOUBLE, [], [float(rng.uniform(0.5, 2.0))])
    nodes = [helper.make_node("CastLike", ["x", "like"], ["c"], name="castlike"),
             helper.make_node("CastLike", ["alpha", "c"], ["a"], name="alpha_like"),
             helper.make_node("Cast", ["c"], ["cf"], to=TensorProto.FLOAT),
             helper.make_node("Cast", ["a"], ["af"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["cf", "af"], ["y"])]
    path = _save(nodes, [_vi("x", shape)], [_vi("y", shape)], tmp_path / "castlike.onnx", (like, alpha))
    graph = import_onnx(path, {"x": shape})
    assert graph.op_counts() == {"MUL": 1}, graph.op_counts()
    check_graph(graph, uniform(shape), onnx_reference(path), tmp_path, min_sqnr=35.0)


def test_castlike_to_integer_is_one_line(tmp_path):
    """CastLike of a float activation to an integer type is refused in one line naming the node and type."""
    like = helper.make_tensor("like", TensorProto.INT64, [1], [0])
    nodes = [helper.make_node("CastLike", ["x", "like"], ["y"], name="to_int")]
    path = _save(nodes, [_vi("x", (2, 3))], [_vi("y", (2, 3), TensorProto.INT64)], tmp_path / "cl_int.onnx", (like,))
    with pytest.raises(UnsupportedModelError) as e:
        import_onnx(path)
    msg = str(e.value)
    assert "to_int" in msg and "CastLike" in msg and "INT64" in msg and "\n" not in msg


@pytest.mark.parametrize("seed,c_kind", [(5, "matrix"), (6, "column"), (7, "row")])
def test_gemm_trans_a_and_any_c(seed, c_kind, tmp_path):
    """Gemm with transA=1 (a TRANSPOSE before FULLY_CONNECTED) and a C of shape [M, N], [M, 1] or [N]
    (a matrix C is an ADD after it), random alpha/beta/transB."""
    rng = np.random.default_rng(seed)
    m, k, n = (int(v) for v in rng.integers(2, 7, 3))
    trans_b = int(rng.integers(0, 2))
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(np.float32) * 0.5
    c_shape = {"matrix": (m, n), "column": (m, 1), "row": (n,)}[c_kind]
    c = rng.standard_normal(c_shape).astype(np.float32)
    node = helper.make_node("Gemm", ["a", "b", "c"], ["y"], name="gemm", transA=1, transB=trans_b,
                            alpha=float(rng.uniform(0.5, 1.5)), beta=float(rng.uniform(0.5, 1.5)))
    path = _save([node], [_vi("a", (k, m))], [_vi("y", (m, n))], tmp_path / "gemm.onnx",
                 (_const("b", b), _const("c", c)))
    graph = import_onnx(path, {"a": (k, m)})
    counts = graph.op_counts()
    assert counts.get("FULLY_CONNECTED") == 1 and counts.get("TRANSPOSE") == 1, counts
    assert counts.get("ADD", 0) == (0 if c_kind == "row" else 1), counts
    # a matrix C is a second requantization (the FULLY_CONNECTED output, then the ADD): a lower floor
    check_graph(graph, uniform((k, m), seed=seed), onnx_reference(path), tmp_path,
                min_sqnr=35.0 if c_kind == "row" else 24.0)


@pytest.mark.parametrize("seed", [8, 9])
def test_layer_norm_mean_and_inv_std_dev(seed, tmp_path):
    """LayerNormalization's optional Mean and InvStdDev outputs, at a random rank and axis."""
    rng = np.random.default_rng(seed)
    rank = int(rng.integers(3, 5))
    shape = tuple(int(v) for v in rng.integers(2, 6, rank))
    axis = int(rng.integers(1, rank))
    stat = tuple(s if d < axis else 1 for d, s in enumerate(shape))
    scale = _const("scale", (1 + 0.3 * rng.standard_normal(shape[axis:])).astype(np.float32))
    bias = _const("bias", (0.2 * rng.standard_normal(shape[axis:])).astype(np.float32))
    node = helper.make_node("LayerNormalization", ["x", "scale", "bias"], ["y", "mean", "inv_std"], name="ln",
                            axis=axis, epsilon=1e-3)
    path = _save([node], [_vi("x", shape)], [_vi("y", shape), _vi("mean", stat), _vi("inv_std", stat)],
                 tmp_path / "ln.onnx", (scale, bias))
    graph = import_onnx(path, {"x": shape})
    data = uniform(shape, seed=seed) * 2 + 0.5  # a mean away from zero, so the Mean output has signal
    check_graph(graph, data, onnx_reference(path), tmp_path, min_sqnr=25.0)


def test_zero_size_tensors_are_one_line(tmp_path):
    """A node output with no elements (an empty Slice) and an input with a zero dimension: one line each."""
    starts, ends, axes = _const("s", np.array([2])), _const("e", np.array([2])), _const("ax", np.array([1]))
    nodes = [helper.make_node("Slice", ["x", "s", "e", "ax"], ["y"], name="empty_slice")]
    path = _save(nodes, [_vi("x", (3, 4))], [_vi("y", (3, 0))], tmp_path / "empty.onnx", (starts, ends, axes))
    with pytest.raises(UnsupportedModelError) as e:
        import_onnx(path)
    assert "empty_slice" in str(e.value) and "no elements" in str(e.value) and "\n" not in str(e.value)
    path = _save([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", (2, 0, 4))], [_vi("y", (2, 0, 4))],
                 tmp_path / "empty_in.onnx")
    with pytest.raises(UnsupportedModelError) as e:
        import_onnx(path, {"x": (2, 0, 4)})
    assert "input 'x'" in str(e.value) and "no elements" in str(e.value) and "\n" not in str(e.value)


# -- the benchmark's case handling ------------------------------------------------------------------------

def _case_model(op: str, opset: int, n_inputs: int = 1) -> object:
    names = [f"i{k}" for k in range(n_inputs)]
    g = helper.make_graph([helper.make_node(op, names, ["y"])], "case", [_vi(n, (2, 3)) for n in names],
                          [_vi("y", (2, 3))])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def test_newer_opsets_read_as_22_where_every_node_means_the_same():
    """onnx stamps models with its newest opset (up to 28) even when their ops have not changed since 22: such
    a model is read as opset 22 (Relu, since 14; Cast, whose later versions only added float8/float4 types
    and an optional round_mode left at its default). A node of an op new since 22, or one setting an
    attribute its opset-22 form lacks, is refused in one line naming the op; opset 22 itself is untouched."""
    from converters.importers.prepare import prepare_onnx_model
    from edge_runtime.errors import UnsupportedModelError

    def cast_model(opset: int) -> object:
        m = _case_model("Cast", opset)
        m.graph.node[0].attribute.append(helper.make_attribute("to", TensorProto.FLOAT))
        return m

    for opset in (23, 25, 28):
        for m in (_case_model("Relu", opset), cast_model(opset)):
            m = prepare_onnx_model(m, source="m")
            assert [o.version for o in m.opset_import if o.domain in ("", "ai.onnx")] == [22], opset
    m = _case_model("Relu", 17)
    assert prepare_onnx_model(m, source="m").opset_import[0].version >= 17
    cast = cast_model(25)
    cast.graph.node[0].attribute.append(helper.make_attribute("round_mode", "up"))  # the default: same meaning
    prepare_onnx_model(cast, source="m")
    cast = cast_model(25)
    cast.graph.node[0].attribute.append(helper.make_attribute("round_mode", "down"))
    with pytest.raises(UnsupportedModelError, match=r"^m: ONNX opset 25: node sets attribute 'round_mode'.*$"):
        prepare_onnx_model(cast, source="m")
    # an op new since 22 with no function body to expand (RMSNormalization has one, so it converts)
    g = helper.make_graph([helper.make_node("BitCast", ["x"], ["y"], to=TensorProto.FLOAT)], "g",
                          [_vi("x", (2, 3))], [_vi("y", (2, 3))])
    with pytest.raises(UnsupportedModelError, match=r"op BitCast exists only from ONNX opset 26"):
        prepare_onnx_model(helper.make_model(g, opset_imports=[helper.make_opsetid("", 26)]), source="m")
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [_vi("x", (2, 3))], [_vi("y", (2, 3))])
    with pytest.raises(UnsupportedModelError, match="outside the supported range"):  # newer than onnx knows
        prepare_onnx_model(helper.make_model(g, opset_imports=[helper.make_opsetid("", 99)]), source="m")


def test_benchmark_skips_and_freezes():
    """Skip reasons (random op, non-float first input, non-float reference); later inputs frozen as
    initializers, as an exported model holds them."""
    from benchmarks.onnx_node_tests import frozen_model, skip_reason, state

    x = np.zeros((2, 3), np.float32)
    m = _case_model("Add", 17, 2)
    assert skip_reason({"name": "t", "data_sets": [([x, x], [x])]}, m) is None
    assert "first input is int64" in skip_reason({"name": "t", "data_sets": [([x.astype(np.int64), x], [x])]}, m)
    assert "reference output is bool" in skip_reason({"name": "t", "data_sets": [([x, x], [x > 0])]}, m)
    assert "random op" in skip_reason({"name": "t", "data_sets": [([x], [x])]}, _case_model("RandomUniformLike", 17))
    f = frozen_model(m, {"i1": np.ones((2, 3), np.float32)})
    assert [vi.name for vi in f.graph.input] == ["i0"] and [i.name for i in f.graph.initializer] == ["i1"]
    assert [vi.name for vi in m.graph.input] == ["i0", "i1"]  # the original is untouched
    assert state({"case": "t", "ok": True, "live_error": "x"}) == "converted, inputs frozen"
    assert state({"case": "t", "ok": False, "inputs": 2, "error": "E: 2 inputs are not supported"}) == "several inputs"


@pytest.mark.parametrize("seed,p,one_d", [(10, 2, False), (11, 1, False), (12, 2, True)])
def test_lp_pool(seed, p, one_d, tmp_path):
    """LpPool p=1/2, 2-D or 1-D, random kernel, strides and padding: the window sum of |x|^p through an
    AVERAGE_POOL_2D that counts the padding."""
    rng = np.random.default_rng(seed)
    k = [int(v) for v in rng.integers(2, 4, 1 if one_d else 2)]
    s = [int(v) for v in rng.integers(1, 3, len(k))]
    pads = [int(v) for v in rng.integers(0, 2, len(k))] * 2
    c = int(rng.integers(2, 5))
    spatial = [int(v) for v in rng.integers(6, 10, len(k))]
    out = [(n + pads[i] + pads[i + len(k)] - k[i]) // s[i] + 1 for i, n in enumerate(spatial)]
    node = helper.make_node("LpPool", ["x"], ["y"], name="lp", p=p, kernel_shape=k, strides=s, pads=pads)
    x_shape, y_shape = tuple([1, c] + spatial), tuple([1, c] + out)
    path = _save([node], [_vi("x", x_shape)], [_vi("y", y_shape)], tmp_path / "lp.onnx", opset=18)
    graph = import_onnx(path)
    assert graph.op_counts().get("AVERAGE_POOL_2D") == 1 and graph.op_counts().get("SQRT", 0) == (p == 2)
    check_graph(graph, uniform(x_shape, seed=seed) * 2, onnx_reference(path), tmp_path, min_sqnr=30.0)


def test_lp_pool_other_p_is_one_line(tmp_path):
    """LpPool with p=5 is refused in one line naming the node and p."""
    node = helper.make_node("LpPool", ["x"], ["y"], name="lp3", p=5, kernel_shape=[2, 2])
    path = _save([node], [_vi("x", (1, 2, 4, 4))], [_vi("y", (1, 2, 3, 3))], tmp_path / "lp3.onnx", opset=18)
    with pytest.raises(UnsupportedModelError) as e:
        import_onnx(path)
    assert "lp3" in str(e.value) and "p=5" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("seed,coord,nearest", [
    (13, "half_pixel", "round_prefer_floor"), (14, "align_corners", "floor"), (15, "asymmetric", "ceil"),
    (16, "pytorch_half_pixel", "round_prefer_ceil")])
def test_nearest_resize_picks_onnx_pixels(seed, coord, nearest, tmp_path):
    """Nearest Resize at random sizes (up and down) reads the pixels the ONNX spec picks: the same as
    onnxruntime's float model, whether it becomes RESIZE_NEAREST_NEIGHBOR or two GATHERs."""
    rng = np.random.default_rng(seed)
    c, h, w = (int(v) for v in rng.integers(2, 7, 3))
    oh, ow = (int(v) for v in rng.integers(1, 12, 2))
    node = helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], name="resize", mode="nearest",
                            coordinate_transformation_mode=coord, nearest_mode=nearest)
    path = _save([node], [_vi("x", (1, c, h, w))], [_vi("y", (1, c, oh, ow))], tmp_path / "resize.onnx",
                 (_const("sizes", np.array([1, c, oh, ow], np.int64)),), opset=13)
    graph = import_onnx(path)
    kinds = set(graph.op_counts())
    assert kinds in ({"RESIZE_NEAREST_NEIGHBOR"}, {"GATHER"}), kinds
    check_graph(graph, uniform((1, c, h, w), seed=seed), onnx_reference(path), tmp_path, min_sqnr=35.0)


def test_nearest_index_rules_match_tflite_where_they_agree():
    """The index rules: integer upsampling with half_pixel is TFLite's half_pixel_centers; a 4 -> 3
    half_pixel round_prefer_floor downsample (a tie at 1.5) is not, so it needs GATHER."""
    from converters.importers.onnx_ops.resize import (
        onnx_nearest_indices,
        tflite_nearest_indices,
    )

    want = onnx_nearest_indices(3, 6, 2.0, "half_pixel", "round_prefer_floor")
    assert np.array_equal(want, [0, 0, 1, 1, 2, 2])
    assert np.array_equal(tflite_nearest_indices(3, 6, False, True), want)
    want = onnx_nearest_indices(4, 3, 0.75, "half_pixel", "round_prefer_floor")
    assert np.array_equal(want, [0, 1, 3])
    assert not any(np.array_equal(tflite_nearest_indices(4, 3, *f), want)
                   for f in ((False, False), (False, True), (True, False)))
