"""TRANSPOSEs moved past elementwise ops with constants of any broadcastable shape, until they cancel, and
per-channel ADD/SUB/MUL/DIV folded into the convolution before them (:func:`converters.ir.simplify`).

tf2onnx writes a TensorFlow batch norm as Mul/Add with per-channel constants between NHWC<->NCHW
Transposes (Yahoo's open_nsfw export kept 102 TRANSPOSEs). Random graphs of that kind (constants of shape
(C,), (1,C,1,1), (1,1,1,C), scalars, broadcasting on several axes; operands on either side; residual
joins of two transposed branches) must import without TRANSPOSEs, and the float IR (run on onnxruntime)
must equal the source model on onnxruntime within float tolerance.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from converters.calibrate import float_session, run_float
from converters.importers.onnx import import_onnx
from converters.layout_constants import channel_vector, permuted_operand

C, H, W = 4, 5, 6
NHWC, NCHW = [0, 2, 3, 1], [0, 3, 1, 2]


def _model(nodes: list, inits: list, in_shape: tuple, out_name: str = "y") -> onnx.ModelProto:
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape))],
                          [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, None)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    return onnx.shape_inference.infer_shapes(m)


def _check_against_ort(model: onnx.ModelProto, rng: np.random.Generator, n: int = 3) -> Any:
    """Import ``model``; the float IR's output equals onnxruntime's on the source model; the graph."""
    graph = import_onnx(model)
    ref = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    sess = float_session(graph)
    shape = tuple(d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim)
    for _ in range(n):
        x = rng.standard_normal(shape).astype(np.float32)
        want = ref.run(None, {"x": x})[0]
        got = run_float(sess, graph, graph.to_ir_layout(graph.inputs[0], x), only=graph.outputs)[graph.outputs[0]]
        if got.shape != want.shape and got.ndim == 4:  # a 4-D output comes back in the IR's NHWC layout
            got = got.transpose(0, 3, 1, 2)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * (1 + float(np.abs(want).max())))
    return graph


CONST_SHAPES_NHWC = [(C,), (1, 1, 1, C), (), (1,), (1, H, 1, C), (W, C), (H, W, C), (1, H, W, 1), (H, 1, 1)]
BINARY = ["Add", "Sub", "Mul", "Div", "Max", "Min"]
UNARY = ["Relu", "Sigmoid", "Tanh", "Abs", "Neg"]


def _random_chain(rng: np.random.Generator, src: str, stem: str, nodes: list, inits: list, n_ops: int) -> str:
    """``n_ops`` random elementwise ops on NHWC tensor ``src`` (constants of random broadcastable shapes,
    on a random side); the last tensor's name."""
    cur = src
    for k in range(n_ops):
        out = f"{stem}{k}"
        if rng.random() < 0.3:
            nodes.append(helper.make_node(str(rng.choice(UNARY)), [cur], [out]))
        else:
            kind = str(rng.choice(BINARY))
            shape = CONST_SHAPES_NHWC[int(rng.integers(len(CONST_SHAPES_NHWC)))]
            value = rng.uniform(0.5, 1.5, shape) * rng.choice([-1.0, 1.0], shape)
            inits.append(numpy_helper.from_array(np.asarray(value, np.float32), f"{out}_c"))
            pair = [cur, f"{out}_c"] if kind == "Div" or rng.random() < 0.5 else [f"{out}_c", cur]
            nodes.append(helper.make_node(kind, pair, [out]))
        cur = out
    return cur


@pytest.mark.parametrize("seed", range(6))
def test_random_transposed_chains_cancel_and_match_onnxruntime(seed: int) -> None:
    """Conv -> Transpose to NHWC -> random elementwise ops with constants -> a residual join of two
    transposed branches -> Transpose back -> Conv: no TRANSPOSE is left and the values are the source's."""
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(rng.standard_normal((C, C, 3, 3)).astype(np.float32) * 0.3, "w0"),
             numpy_helper.from_array(rng.standard_normal((C, C, 1, 1)).astype(np.float32) * 0.3, "w1")]
    nodes = [helper.make_node("Conv", ["x", "w0"], ["c0"], pads=[1, 1, 1, 1]),
             helper.make_node("Transpose", ["c0"], ["t0"], perm=NHWC)]
    a = _random_chain(rng, "t0", "a", nodes, inits, int(rng.integers(2, 6)))
    b = _random_chain(rng, "t0", "b", nodes, inits, int(rng.integers(1, 4)))
    nodes += [helper.make_node("Add", [a, b], ["joined"]),
              helper.make_node("Transpose", ["joined"], ["t1"], perm=NCHW),
              helper.make_node("Conv", ["t1", "w1"], ["y"])]
    graph = _check_against_ort(_model(nodes, inits, (1, C, H, W)), rng)
    assert graph.op_counts().get("TRANSPOSE", 0) == 0, graph.op_counts()


@pytest.mark.parametrize("const_shape", [(C,), (1, 1, 1, C), (), (1, H, 1, C)])
def test_tf2onnx_batch_norm_folds_into_the_convolution(const_shape: tuple) -> None:
    """Conv -> Transpose(NHWC) -> Sub/Mul/Add per-channel -> Relu -> Transpose(NCHW): one CONV_2D with the
    batch norm in its weights and bias (a constant varying along H stays an op, still without TRANSPOSEs)."""
    rng = np.random.default_rng(3)

    def const(name: str) -> Any:
        return numpy_helper.from_array(rng.uniform(0.5, 1.5, const_shape).astype(np.float32), name)

    inits = [numpy_helper.from_array(rng.standard_normal((C, C, 3, 3)).astype(np.float32) * 0.3, "w0"),
             const("mean"), const("scale"), const("beta")]
    nodes = [helper.make_node("Conv", ["x", "w0"], ["c0"], pads=[1, 1, 1, 1]),
             helper.make_node("Transpose", ["c0"], ["t0"], perm=NHWC),
             helper.make_node("Sub", ["t0", "mean"], ["s"]), helper.make_node("Mul", ["s", "scale"], ["m"]),
             helper.make_node("Add", ["m", "beta"], ["a"]), helper.make_node("Relu", ["a"], ["r"]),
             helper.make_node("Transpose", ["r"], ["y"], perm=NCHW)]
    graph = _check_against_ort(_model(nodes, inits, (1, C, H, W)), rng)
    counts = graph.op_counts()
    assert "TRANSPOSE" not in counts, counts
    if const_shape == (1, H, 1, C):  # varies along H: not a per-channel constant, so it is not folded
        assert counts.get("CONV_2D") == 1 and counts.get("MUL") == 1, counts
    else:
        assert counts == {"CONV_2D": 1}, counts
        assert graph.ops[0].act == "RELU"


@pytest.mark.parametrize("kind", ["depthwise", "gemm"])
def test_per_channel_scale_folds_into_depthwise_and_fully_connected(kind: str) -> None:
    """Per-channel Mul/Div/Sub after a depthwise convolution (NCHW constants (1,C,1,1)), a scalar Mul/Div and
    a per-channel Sub after a Gemm: folded into its weights and bias, values unchanged; a constant minus the
    activation is not folded."""
    rng = np.random.default_rng(5)
    if kind == "depthwise":
        shape, cshape = (1, C, H, W), (1, C, 1, 1)
        inits = [numpy_helper.from_array(rng.standard_normal((C, 1, 3, 3)).astype(np.float32), "w")]
        first = helper.make_node("Conv", ["x", "w"], ["c0"], group=C, pads=[1, 1, 1, 1])
    else:
        shape, cshape = (1, 8), (C,)
        inits = [numpy_helper.from_array(rng.standard_normal((8, C)).astype(np.float32), "w"),
                 numpy_helper.from_array(rng.standard_normal((C,)).astype(np.float32), "b")]
        first = helper.make_node("Gemm", ["x", "w", "b"], ["c0"])
    for name in ("k1", "k2", "k3", "k4"):
        shape_k = () if kind == "gemm" and name in ("k1", "k2") else cshape
        inits.append(numpy_helper.from_array(rng.uniform(0.5, 2.0, shape_k).astype(np.float32), name))
    nodes = [first, helper.make_node("Mul", ["c0", "k1"], ["m"]), helper.make_node("Div", ["m", "k2"], ["d"]),
             helper.make_node("Sub", ["d", "k3"], ["s"]), helper.make_node("Sub", ["k4", "s"], ["y"])]
    graph = _check_against_ort(_model(nodes, inits, shape), rng)
    counts = graph.op_counts()
    weighted = "DEPTHWISE_CONV_2D" if kind == "depthwise" else "FULLY_CONNECTED"
    assert counts.get(weighted) == 1 and counts.get("SUB") == 1 and len(graph.ops) == 2, counts


def test_per_row_scale_is_not_folded_into_fully_connected() -> None:
    """Gemm -> Mul by a per-output constant stays a MUL (FULLY_CONNECTED weights may be per tensor)."""
    rng = np.random.default_rng(6)
    inits = [numpy_helper.from_array(rng.standard_normal((8, C)).astype(np.float32), "w"),
             numpy_helper.from_array(np.array([0.1, 1.0, 10.0, 3.0], np.float32), "k")]
    nodes = [helper.make_node("Gemm", ["x", "w"], ["g"]), helper.make_node("Mul", ["g", "k"], ["y"])]
    graph = _check_against_ort(_model(nodes, inits, (1, 8)), rng)
    assert graph.op_counts() == {"FULLY_CONNECTED": 1, "MUL": 1}, graph.op_counts()


def test_shared_transpose_moves_only_where_it_cannot_add_one() -> None:
    """A TRANSPOSE read by an elementwise op and by the graph output stays for its other reader; the values
    are the source's (the op still computes right)."""
    rng = np.random.default_rng(9)
    inits = [numpy_helper.from_array(rng.uniform(0.5, 1.5, (C,)).astype(np.float32), "k")]
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=NHWC), helper.make_node("Mul", ["t", "k"], ["m"]),
             helper.make_node("Add", ["m", "t"], ["y"])]
    _check_against_ort(_model(nodes, inits, (1, C, H, W)), rng)


def test_permuted_operand_and_channel_vector() -> None:
    """The numpy helpers: ``op(T_p(x), c) == T_p(op(x, c'))`` for random perms and shapes; per-channel
    constants are recognised only when they vary along the last axis alone."""
    rng = np.random.default_rng(11)
    for _ in range(30):
        shape = tuple(int(d) for d in rng.integers(1, 5, 4))
        perm = tuple(int(p) for p in rng.permutation(4))
        x = rng.standard_normal(shape)
        xt = x.transpose(perm)
        keep = rng.random(4) < 0.5
        cshape = tuple(d if k else 1 for d, k in zip(xt.shape, keep))[int(rng.integers(0, 4)):]
        c = rng.standard_normal(cshape)
        np.testing.assert_array_equal((x * permuted_operand(c, perm)).transpose(perm), xt * c)
    assert permuted_operand(np.ones((2, 1, 1, 1, 3)), (0, 2, 3, 1)) is None
    np.testing.assert_array_equal(channel_vector(np.arange(3.0).reshape(1, 1, 3), (1, 4, 4, 3)), [0, 1, 2])
    np.testing.assert_array_equal(channel_vector(np.array(2.0), (1, 4, 4, 3)), [2, 2, 2])
    assert channel_vector(np.ones((4, 1, 3)), (1, 4, 4, 3)) is None
    assert channel_vector(np.ones((1, 1, 1, 1, 3)), (1, 4, 4, 3)) is None


@pytest.mark.parametrize("kind,axes,keep", [("ReduceMean", (1, 2), 1), ("ReduceMean", (1, 2), 0),
                                            ("ReduceMean", (2, 3), 0), ("ReduceMean", (1,), 0),
                                            ("ReduceSum", (1, 2, 3), 1), ("ReduceMax", (3,), 0)])
def test_transpose_moves_below_a_reduction(kind: str, axes: tuple, keep: int) -> None:
    """Transpose(NHWC) -> ReduceMean/ReduceSum/ReduceMax over any axes (kept or not) -> Mul: the reduction
    reads the input itself (its axes permuted; a TRANSPOSE after it only where the kept axes change order)."""
    rng = np.random.default_rng(sum(axes) + keep)
    inits = [numpy_helper.from_array(np.array(2.0, np.float32), "two")]
    if kind == "ReduceSum":  # opset 13: axes as an input
        inits.append(numpy_helper.from_array(np.array(axes, np.int64), "axes"))
        reduce = helper.make_node(kind, ["t", "axes"], ["r"], keepdims=keep)
    else:
        reduce = helper.make_node(kind, ["t"], ["r"], axes=list(axes), keepdims=keep)
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=NHWC), reduce,
             helper.make_node("Mul", ["r", "two"], ["y"])]
    graph = _check_against_ort(_model(nodes, inits, (1, C, H, W)), rng)
    assert not any(op.kind == "TRANSPOSE" and op.inputs[0] in graph.inputs for op in graph.ops), graph.ops
