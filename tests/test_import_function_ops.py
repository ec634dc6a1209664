"""ONNX ops defined by a function body in onnx's schema (Attention, RMSNormalization, RotaryEmbedding, the
losses) and models with local functions: :mod:`converters.importers.expand_functions`.

Each model converts; the int8 .tflite run by LiteRT (and the QDQ .onnx) is compared with onnxruntime running
the original float model (SQNR >= 30 dB; >= 20 dB for the attention blocks, which measure 22-32 dB, as their
unfused MHA equivalents do; the float IR to 1e-4), and the project's micro backend with
tflite-micro (np.array_equal), through :func:`test_import_ops_common.check_onnx`.
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper
from test_import_ops_common import check_onnx

from converters.importers import expand_functions
from converters.importers.expand_functions import (
    expand_function_ops,
    refuse_unsupported_bodies,
)
from converters.importers.onnx_ops import REGISTRY
from converters.importers.prepare import _same_meaning, prepare_onnx_model
from edge_runtime.errors import UnsupportedModelError

MIN_SQNR = 30.0
ATTENTION_MIN_SQNR = 20.0


def _model(nodes: list, inputs: list, outputs: list, inits: list, opset: int, functions: tuple = ()) -> onnx.ModelProto:
    """A checked model of one graph at ``opset`` (the IR version onnx picks for it)."""
    g = helper.make_graph(nodes, "f", inputs, outputs, inits)
    domains = sorted({f.domain for f in functions})
    imports = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, 1) for d in domains]
    m = helper.make_model(g, opset_imports=imports, functions=list(functions))
    onnx.checker.check_model(m)
    return m


def _vi(name: str, shape: list[int] | None, elem: int = onnx.TensorProto.FLOAT) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, shape)


def _w(rng: np.random.Generator, name: str, *shape: int, scale: float = 0.5) -> onnx.TensorProto:
    return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)


def _check(model: onnx.ModelProto, tmp_path, shape: tuple[int, ...], min_sqnr: float = MIN_SQNR) -> None:
    c = check_onnx(model, tmp_path, shape, min_sqnr=min_sqnr)
    assert c.tflm_ran and c.micro_exact is True, "micro differs from tflite-micro"


@pytest.mark.parametrize("seq,embed,q_heads,kv_heads,opset,extra", [
    (6, 16, 2, 2, 23, {}),
    (5, 24, 4, 2, 24, {"scale": 0.3}),  # grouped-query attention, explicit scale
    (4, 16, 4, 4, 23, {"softcap": 3.0}),
])
def test_attention_self_attention_block(seq, embed, q_heads, kv_heads, opset, extra, tmp_path):
    rng = np.random.default_rng(seq + embed)
    kv = embed // q_heads * kv_heads
    inits = [_w(rng, "wq", embed, embed), _w(rng, "wk", embed, kv), _w(rng, "wv", embed, kv),
             _w(rng, "wo", embed, embed)]
    nodes = [helper.make_node("MatMul", ["x", "wq"], ["q"]), helper.make_node("MatMul", ["x", "wk"], ["k"]),
             helper.make_node("MatMul", ["x", "wv"], ["v"]),
             helper.make_node("Attention", ["q", "k", "v"], ["a"], name="attn", q_num_heads=q_heads,
                              kv_num_heads=kv_heads, **extra),
             helper.make_node("MatMul", ["a", "wo"], ["y"])]
    m = _model(nodes, [_vi("x", [1, seq, embed])], [_vi("y", [1, seq, embed])], inits, opset)
    _check(m, tmp_path, (1, seq, embed), ATTENTION_MIN_SQNR)


@pytest.mark.parametrize("shape,axis", [((1, 6, 8), -1), ((1, 4, 5, 6), 1), ((1, 3, 4, 10), -2)])
def test_rms_normalization(shape, axis, tmp_path):
    rng = np.random.default_rng(len(shape) + axis)
    scale = numpy_helper.from_array((1 + 0.3 * rng.standard_normal(shape[axis:])).astype(np.float32), "s")
    n = helper.make_node("RMSNormalization", ["x", "s"], ["y"], name="rms", axis=axis, epsilon=1e-5)
    m = _model([n], [_vi("x", list(shape))], [_vi("y", list(shape))], [scale], 23)
    _check(m, tmp_path, shape)


@pytest.mark.parametrize("interleaved,rotary_dim", [(0, 0), (1, 0), (0, 4)])
def test_rotary_embedding(interleaved, rotary_dim, tmp_path):
    heads, seq, dim = 2, 5, 8
    half = (rotary_dim or dim) // 2
    angle = np.arange(seq + 2)[:, None] * (1.0 / 10000 ** (np.arange(half) / half))[None, :]
    inits = [numpy_helper.from_array(np.cos(angle).astype(np.float32), "cos"),
             numpy_helper.from_array(np.sin(angle).astype(np.float32), "sin"),
             numpy_helper.from_array(np.arange(1, seq + 1, dtype=np.int64)[None, :], "pos")]
    n = helper.make_node("RotaryEmbedding", ["x", "cos", "sin", "pos"], ["y"], name="rope", interleaved=interleaved,
                         rotary_embedding_dim=rotary_dim)
    m = _model([n], [_vi("x", [1, heads, seq, dim])], [_vi("y", [1, heads, seq, dim])], inits, 23)
    _check(m, tmp_path, (1, heads, seq, dim))


@pytest.mark.parametrize("op,weighted", [("SoftmaxCrossEntropyLoss", False), ("NegativeLogLikelihoodLoss", True)])
def test_losses_with_constant_labels(op, weighted, tmp_path):
    classes, d = 5, 6
    rng = np.random.default_rng(3)
    labels = rng.integers(0, classes, (1, d)).astype(np.int64)
    labels[0, 2] = 1  # ignored below
    inits = [numpy_helper.from_array(labels, "t")]
    ins = ["x", "t"]
    if weighted:
        inits.append(numpy_helper.from_array(rng.uniform(0.5, 1.5, classes).astype(np.float32), "w"))
        ins.append("w")
    nodes = [helper.make_node(op, ins, ["y"], name="loss", reduction="none", ignore_index=1)]
    if op == "NegativeLogLikelihoodLoss":  # the usual pairing: log-probabilities in
        nodes.insert(0, helper.make_node("LogSoftmax", ["x"], ["lp"], axis=1))
        nodes[1].input[0] = "lp"
    m = _model(nodes, [_vi("x", [1, classes, d])], [_vi("y", [1, d])], inits, 13)
    _check(m, tmp_path, (1, classes, d))


def test_model_local_function_is_inlined(tmp_path):
    """A local function (as dynamo exports write them) whose body holds a function op without a handler."""
    f = helper.make_function("local", "NormGate", ["a", "s"], ["b"], [
        helper.make_node("RMSNormalization", ["a", "s"], ["n"], axis=-1),
        helper.make_node("Sigmoid", ["n"], ["g"]),
        helper.make_node("Mul", ["n", "g"], ["b"])], [helper.make_opsetid("", 23)])
    rng = np.random.default_rng(5)
    inits = [_w(rng, "w", 12, 12), numpy_helper.from_array(np.ones(12, np.float32), "s")]
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]),
             helper.make_node("NormGate", ["h", "s"], ["y"], name="gate", domain="local")]
    m = _model(nodes, [_vi("x", [1, 4, 12])], [_vi("y", [1, 4, 12])], inits, 23, functions=(f,))
    _check(m, tmp_path, (1, 4, 12))


def test_op_with_handler_is_not_expanded():
    """LayerNormalization has a function body and a handler: the handler's node stays."""
    n = helper.make_node("LayerNormalization", ["x", "s"], ["y"], name="ln", axis=-1)
    m = _model([n], [_vi("x", [1, 4, 8])], [_vi("y", [1, 4, 8])],
               [numpy_helper.from_array(np.ones(8, np.float32), "s")], 17)
    out = prepare_onnx_model(m)
    assert [x.op_type for x in out.graph.node] == ["LayerNormalization"]


def test_expanded_names_are_fresh_and_absent_outputs_pruned():
    """A body's intermediate names cannot clash with the graph's; outputs the node leaves out are not computed."""
    n = helper.make_node("SoftmaxCrossEntropyLoss", ["x", "t"], ["y"], name="loss", reduction="mean")
    clash = helper.make_node("Identity", ["x"], ["loss/SoftmaxCrossEntropyLoss/X_Log"], name="clash")
    m = _model([clash, n], [_vi("x", [1, 3, 4])],
               [_vi("y", []), _vi("loss/SoftmaxCrossEntropyLoss/X_Log", [1, 3, 4])],
               [numpy_helper.from_array(np.zeros((1, 4), np.int64), "t")], 13)
    origins = expand_function_ops(m, 13, "m", REGISTRY, _same_meaning)
    outs = [o for node in m.graph.node for o in node.output]
    assert len(outs) == len(set(outs)), "two nodes write one tensor"
    assert origins and all(v == ("SoftmaxCrossEntropyLoss", "loss") for v in origins.values())
    assert not any(node.op_type in ("SoftmaxCrossEntropyLoss", "NegativeLogLikelihoodLoss") for node in m.graph.node)
    onnx.checker.check_model(m, full_check=True)


def test_body_op_without_handler_is_refused_naming_both():
    n = helper.make_node("RMSNormalization", ["x", "s"], ["y"], name="norm1")
    m = _model([n], [_vi("x", [1, 4, 8])], [_vi("y", [1, 4, 8])],
               [numpy_helper.from_array(np.ones(8, np.float32), "s")], 23)
    handled = set(REGISTRY) - {"Sqrt"}
    origins = expand_function_ops(m, 23, "m.onnx", handled, _same_meaning)
    with pytest.raises(UnsupportedModelError) as e:
        refuse_unsupported_bodies(m, origins, handled, "m.onnx")
    msg = str(e.value)
    assert "\n" not in msg and "'norm1' (RMSNormalization)" in msg and "Sqrt" in msg, msg


def test_nested_expansion_depth_is_bounded(monkeypatch):
    """SoftmaxCrossEntropyLoss's body calls NegativeLogLikelihoodLoss: two rounds; one is refused in one line."""
    n = helper.make_node("SoftmaxCrossEntropyLoss", ["x", "t"], ["y"], name="sce", reduction="none")
    m = _model([n], [_vi("x", [1, 3, 4])], [_vi("y", [1, 4])],
               [numpy_helper.from_array(np.zeros((1, 4), np.int64), "t")], 13)
    monkeypatch.setattr(expand_functions, "MAX_DEPTH", 1)
    with pytest.raises(UnsupportedModelError, match=r"'sce' \(SoftmaxCrossEntropyLoss\).*NegativeLogLikelihoodLoss"):
        prepare_onnx_model(m)


def test_integer_label_input_gathers_the_run_time_log_probabilities(tmp_path):
    """Labels as a live int64 input index the class axis of the run-time log-probabilities (a gather by an
    integer model input, ``converters/importers/onnx_ops/runtime_gather.py``; refused before session 13):
    the converted model equals onnxruntime within half an int8 step of the input's scale."""
    import onnxruntime as ort

    from converters.pipeline import convert_model
    from converters.report import TFLiteRunner

    n = helper.make_node("NegativeLogLikelihoodLoss", ["x", "t"], ["y"], name="nll", reduction="none")
    m = _model([n], [_vi("x", [1, 5, 40]), _vi("t", [1, 40], onnx.TensorProto.INT64)], [_vi("y", [1, 40])], [], 22)
    path = str(tmp_path / "nll.onnx")
    onnx.save(m, path)
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((32, 1, 5, 40)).astype(np.float32)
    ts = rng.integers(0, 5, (32, 1, 40)).astype(np.int64)
    res = convert_model(path, "rpi4-4gb", {"x": xs, "t": ts}, str(tmp_path / "out"))
    g, runner = res.graph, TFLiteRunner(res.tflite_path)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    feed = {"x": lambda i: g.to_ir_layout("x", xs[i]), "t": lambda i: ts[i].astype(np.int32)}
    half_step = res.plan.activations["x"].scale / 2
    for i in range(8):
        ref = sess.run(None, {"x": xs[i], "t": ts[i]})[0]
        got = runner.run([feed[name](i) for name in g.inputs])[0].reshape(ref.shape)
        assert np.abs(ref - got).max() <= half_step + 1e-6


def test_causal_attention_converts_through_the_pipeline(tmp_path):
    """is_causal=1 adds a mask of -inf before the softmax: the masked sum and softmax run in float
    (converters/masked_softmax.py), so the whole conversion goes through; micro == tflite-micro."""
    import onnx

    from converters.pipeline import convert_model

    q = _vi("q", [1, 2, 4, 8])
    n = helper.make_node("Attention", ["q", "q", "q"], ["y"], name="self_attn", is_causal=1)
    path = str(tmp_path / "causal.onnx")
    onnx.save(_model([n], [q], [_vi("y", [1, 2, 4, 8])], [], 23), path)
    calib = np.random.default_rng(0).standard_normal((16, 1, 2, 4, 8)).astype(np.float32)
    convert_model(path, "rpi4-4gb", calib, str(tmp_path / "out"))
    from tflite_builder import assert_exact

    assert_exact(next((tmp_path / "out").glob("*.tflite")))  # random int8 inputs, micro vs tflite-micro


def test_new_op_without_function_body_still_refused():
    """BitCast (opset 26) has no function body: the opset check still refuses it in one line, after the
    RMSNormalization beside it was expanded."""
    nodes = [helper.make_node("RMSNormalization", ["x", "s"], ["n"], name="rms"),
             helper.make_node("BitCast", ["n"], ["y"], name="cp", to=onnx.TensorProto.FLOAT)]
    inits = [numpy_helper.from_array(np.ones(3, np.float32), "s")]
    m = _model(nodes, [_vi("x", [2, 3])], [_vi("y", [2, 3])], inits, 26)
    with pytest.raises(UnsupportedModelError, match=r"^m: ONNX opset 26: op BitCast exists only from ONNX opset 26 "
                                                     r"\(node 'cp'\)[^\n]*$"):
        prepare_onnx_model(m, source="m")


@pytest.mark.parametrize("opset", [9, 11, 13])
def test_body_written_for_an_older_opset(opset, tmp_path):
    """MeanVarianceNormalization's body is written for opset 9 (13 from opset 13 on): read at opset 11 its ops
    mean the same (Constant's value only became optional); below 13 the expanded graph is upgraded after.
    The body computes the variance as E[x^2] - E[x]^2, which int8 resolves coarsely: 22-41 dB over shapes,
    hence 20 dB here."""
    n = helper.make_node("MeanVarianceNormalization", ["x"], ["y"], name="mvn", axes=[0, 2, 3])
    m = _model([n], [_vi("x", [1, 3, 4, 5])], [_vi("y", [1, 3, 4, 5])], [], opset)
    _check(m, tmp_path, (1, 3, 4, 5), min_sqnr=20.0)
