"""ONNX Loop and Scan with an iteration count known when converting are unrolled (converters/importers/loop_unroll.py).

Each model is built with onnx.helper; the unrolled model must compute what onnxruntime computes on the original
Loop/Scan model (float, exactly up to float rounding), and its int8 conversion is checked by the shared harness
(int8 vs onnxruntime float SQNR, tflite-micro vs LiteRT, micro == tflite-micro). Loops that cannot be unrolled are
refused in one line naming the node.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
from helpers import micro_available
from onnx import TensorProto as TP
from onnx import helper, numpy_helper
from test_import_ops_common import check_onnx, make_model

from converters.importers.loop_unroll import MAX_ITERATIONS, unroll_loops
from edge_runtime.errors import UnsupportedModelError

INT64_MAX = np.iinfo(np.int64).max


def _vi(name: str, elem: int, shape: list) -> object:
    return helper.make_tensor_value_info(name, elem, shape)


def _init(name: str, value: object) -> object:
    return numpy_helper.from_array(np.asarray(value), name)


def _ort(model: object, feeds: dict) -> list:
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)


def _unrolled(model: object, shape: tuple, count: int = 1, seed: int = 0) -> object:
    """``model`` unrolled (``count`` loops), checked equal to onnxruntime on the original for random inputs."""
    out = copy.deepcopy(model)
    assert unroll_loops(out, "test") == count
    assert not any(n.op_type in ("Loop", "Scan") for n in out.graph.node)
    x = np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)
    name = model.graph.input[0].name
    for want, got in zip(_ort(model, {name: x}), _ort(out, {name: x})):
        assert want.shape == got.shape
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    return out


def _micro_matches(got: object) -> None:
    """micro == tflite-micro on the written .tflite (where both are installed)."""
    if got.tflm_ran and micro_available():
        assert got.micro_exact is True, "micro differs from tflite-micro"


def _rnn_loop(trip: int, width: int, seed: int, opset: int = 13) -> object:
    """h <- tanh(h @ W + x + 0.1 * i) for ``trip`` steps (x read from the outer scope); scan output relu(h)."""
    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node("Cast", ["i"], ["fi"], to=TP.FLOAT),
        helper.make_node("Mul", ["fi", "tenth"], ["fi10"]),
        helper.make_node("MatMul", ["h", "W"], ["hw"]),
        helper.make_node("Add", ["hw", "x"], ["hx"]),
        helper.make_node("Add", ["hx", "fi10"], ["hs"]),
        helper.make_node("Tanh", ["hs"], ["h2"]),
        helper.make_node("Identity", ["c"], ["c2"]),
        helper.make_node("Relu", ["h2"], ["s"]),
    ]
    body = helper.make_graph(nodes, "body", [_vi("i", TP.INT64, []), _vi("c", TP.BOOL, []), _vi("h", TP.FLOAT, [1, width])],
                             [_vi("c2", TP.BOOL, []), _vi("h2", TP.FLOAT, [1, width]), _vi("s", TP.FLOAT, [1, width])],
                             [_init("tenth", np.float32(0.1))])
    loop = helper.make_node("Loop", ["M", "cond", "h0"], ["hN", "hs_all"], body=body, name="rnn")
    return make_model([loop], [_vi("x", TP.FLOAT, [1, width])], [_vi("hs_all", TP.FLOAT, [trip, 1, width])],
                      [_init("M", np.int64(trip)), _init("cond", True), _init("h0", np.zeros((1, width), np.float32)),
                       _init("W", (rng.standard_normal((width, width)) * 0.5).astype(np.float32))], opset=opset)


@pytest.mark.parametrize("trip,width,seed,opset", [(3, 4, 0, 13), (5, 7, 1, 11)])
def test_loop_with_carried_state_scan_output_iteration_number_and_outer_value(tmp_path, trip, width, seed, opset):
    model = _unrolled(_rnn_loop(trip, width, seed, opset), (1, width), seed=seed)
    got = check_onnx(model, tmp_path, (1, width), min_sqnr=25.0)
    _micro_matches(got)


def _while_model(limit: int) -> object:
    """No trip count: ``while i < limit`` on a loop-carried counter; y <- y * 0.9 + x each step."""
    nodes = [
        helper.make_node("Add", ["n", "one"], ["n2"]),
        helper.make_node("Less", ["n2", "limit"], ["c2"]),
        helper.make_node("Mul", ["y", "decay"], ["yd"]),
        helper.make_node("Add", ["yd", "x"], ["y2"]),
    ]
    body = helper.make_graph(nodes, "body",
                             [_vi("i", TP.INT64, []), _vi("c", TP.BOOL, []), _vi("n", TP.INT64, []),
                              _vi("y", TP.FLOAT, [1, 3])],
                             [_vi("c2", TP.BOOL, []), _vi("n2", TP.INT64, []), _vi("y2", TP.FLOAT, [1, 3])],
                             [_init("one", np.int64(1)), _init("decay", np.float32(0.9))])
    loop = helper.make_node("Loop", ["", "cond", "n0", "y0"], ["nN", "yN"], body=body, name="while")
    return make_model([loop], [_vi("x", TP.FLOAT, [1, 3])], [_vi("yN", TP.FLOAT, [1, 3])],
                      [_init("cond", True), _init("n0", np.int64(0)), _init("limit", np.int64(limit)),
                       _init("y0", np.zeros((1, 3), np.float32))])


def test_loop_ended_by_a_constant_condition_runs_exactly_that_many_times(tmp_path):
    model = _unrolled(_while_model(4), (1, 3))
    assert sum(n.op_type == "Mul" for n in model.graph.node) == 4
    got = check_onnx(model, tmp_path, (1, 3), min_sqnr=30.0)
    _micro_matches(got)


def _nested_model() -> object:
    """An outer Loop of 3 whose body holds If(i == 0) and an inner Loop of i + 1 steps reading the outer iteration
    number."""
    then_g = helper.make_graph([helper.make_node("Mul", ["h", "two"], ["t"])], "then", [], [_vi("t", TP.FLOAT, [1, 6])])
    else_g = helper.make_graph([helper.make_node("Add", ["h", "half"], ["e"])], "else", [], [_vi("e", TP.FLOAT, [1, 6])])
    inner_body = helper.make_graph(
        [helper.make_node("Cast", ["i"], ["fi"], to=TP.FLOAT),  # outer iteration number, from the outer scope
         helper.make_node("Cast", ["j"], ["fj"], to=TP.FLOAT),
         helper.make_node("Add", ["fi", "fj"], ["fij"]),
         helper.make_node("Mul", ["fij", "tenth"], ["d"]),
         helper.make_node("Sub", ["g", "d"], ["g2"]),
         helper.make_node("Identity", ["ci"], ["ci2"])],
        "inner", [_vi("j", TP.INT64, []), _vi("ci", TP.BOOL, []), _vi("g", TP.FLOAT, [1, 6])],
        [_vi("ci2", TP.BOOL, []), _vi("g2", TP.FLOAT, [1, 6])])
    body = helper.make_graph(
        [helper.make_node("Equal", ["i", "zero"], ["first"]),
         helper.make_node("If", ["first"], ["hb"], then_branch=then_g, else_branch=else_g),
         helper.make_node("Add", ["i", "one_i"], ["inner_m"]),  # the inner loop runs i + 1 times
         helper.make_node("Loop", ["inner_m", "", "hb"], ["hi"], body=inner_body),
         helper.make_node("Sigmoid", ["hi"], ["h2"]),
         helper.make_node("Identity", ["c"], ["c2"])],
        "body", [_vi("i", TP.INT64, []), _vi("c", TP.BOOL, []), _vi("h", TP.FLOAT, [1, 6])],
        [_vi("c2", TP.BOOL, []), _vi("h2", TP.FLOAT, [1, 6]), _vi("h2", TP.FLOAT, [1, 6])])
    loop = helper.make_node("Loop", ["M", "", "x"], ["hN", "hs"], body=body, name="outer")
    return make_model([loop, helper.make_node("Add", ["hs", "bias"], ["y"])], [_vi("x", TP.FLOAT, [1, 6])],
                      [_vi("y", TP.FLOAT, [3, 1, 6])],
                      [_init("M", np.int64(3)), _init("zero", np.int64(0)), _init("two", np.float32(2.0)),
                       _init("half", np.float32(0.5)), _init("tenth", np.float32(0.1)), _init("one_i", np.int64(1)),
                       _init("bias", np.float32(0.25))])


def test_nested_if_and_loop_in_the_body(tmp_path):
    model = _unrolled(_nested_model(), (1, 6), count=4)  # the outer loop and three inner ones
    assert sum(n.op_type == "Sub" for n in model.graph.node) == 1 + 2 + 3
    got = check_onnx(model, tmp_path, (1, 6), min_sqnr=30.0)
    _micro_matches(got)


def _scan_model(reverse: int, out_axis: int) -> object:
    """Scan over axis 1 of x [1, 5, 3]: running sum carried, scan output = tanh(sum), stacked on ``out_axis``."""
    body = helper.make_graph([helper.make_node("Add", ["s", "xi"], ["s2"]), helper.make_node("Tanh", ["s2"], ["t"])],
                             "body", [_vi("s", TP.FLOAT, [1, 3]), _vi("xi", TP.FLOAT, [1, 3])],
                             [_vi("s2", TP.FLOAT, [1, 3]), _vi("t", TP.FLOAT, [1, 3])])
    scan = helper.make_node("Scan", ["s0", "x"], ["sN", "ts"], body=body, num_scan_inputs=1, scan_input_axes=[1],
                            scan_input_directions=[reverse], scan_output_axes=[out_axis], name="scan")
    out_shape = [5, 1, 3] if out_axis == 0 else [1, 3, 5]
    return make_model([scan], [_vi("x", TP.FLOAT, [1, 5, 3])], [_vi("ts", TP.FLOAT, out_shape)],
                      [_init("s0", np.zeros((1, 3), np.float32))], opset=13)


@pytest.mark.parametrize("reverse,out_axis", [(0, 0), (1, -1)])
def test_scan_over_a_static_axis(tmp_path, reverse, out_axis):
    model = _unrolled(_scan_model(reverse, out_axis), (1, 5, 3))
    got = check_onnx(model, tmp_path, (1, 5, 3), min_sqnr=30.0)
    _micro_matches(got)


def _one_line_refusal(model: object, *words: str) -> str:
    with pytest.raises(UnsupportedModelError) as info:
        unroll_loops(model, "m.onnx")
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("m.onnx: ONNX node '")
    for w in words:
        assert w in msg, msg
    return msg


def test_refuses_a_trip_count_computed_at_run_time():
    model = _rnn_loop(3, 4, 0)
    model.graph.node.insert(0, helper.make_node("ReduceMax", ["x"], ["xm"], keepdims=0))
    model.graph.node.insert(1, helper.make_node("Cast", ["xm"], ["M_run"], to=TP.INT64))
    model.graph.node[2].input[0] = "M_run"
    _one_line_refusal(model, "'rnn' (Loop)", "trip count 'M_run' is computed at run time")


def test_refuses_a_condition_that_depends_on_data():
    model = _while_model(4)
    body = model.graph.node[0].attribute[0].g
    body.node.append(helper.make_node("ReduceSum", ["y2"], ["ys"], keepdims=0))
    body.node.append(helper.make_node("Less", ["ys", "lim_f"], ["c_data"]))
    body.initializer.append(_init("lim_f", np.float32(3.0)))
    body.output[0].name = "c_data"
    _one_line_refusal(model, "'while' (Loop)", "depends on run-time values")


def test_refuses_too_many_iterations_naming_the_trip_count():
    trip = MAX_ITERATIONS + 1
    msg = _one_line_refusal(_rnn_loop(trip, 4, 0), "'rnn' (Loop)", f"M={trip}", "too large to unroll")
    assert str(MAX_ITERATIONS) in msg
    _one_line_refusal(_while_model(10**6), "'while' (Loop)", "too large to unroll")


def test_refuses_loop_carried_sequences():
    body = helper.make_graph([helper.make_node("Identity", ["c"], ["c2"]), helper.make_node("Identity", ["seq"], ["seq2"])],
                             "body", [_vi("i", TP.INT64, []), _vi("c", TP.BOOL, []),
                                      helper.make_tensor_sequence_value_info("seq", TP.FLOAT, None)],
                             [_vi("c2", TP.BOOL, []), helper.make_tensor_sequence_value_info("seq2", TP.FLOAT, None)])
    g = helper.make_graph([helper.make_node("SequenceEmpty", [], ["s0"]),
                           helper.make_node("Loop", ["M", "", "s0"], ["sN"], body=body, name="seqloop"),
                           helper.make_node("ConcatFromSequence", ["sN"], ["y"], axis=0)],
                          "g", [_vi("x", TP.FLOAT, [1])], [_vi("y", TP.FLOAT, None)], [_init("M", np.int64(2))])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    _one_line_refusal(model, "'seqloop' (Loop)", "sequence", "TFLite has no sequence type")


def test_a_loop_reaching_the_importer_is_refused_in_one_line():
    from converters.importers.onnx import import_onnx

    body = helper.make_graph([helper.make_node("Mul", ["y", "decay"], ["yd"]), helper.make_node("Add", ["yd", "x"], ["y2"]),
                              helper.make_node("ReduceSum", ["y2"], ["ys"], keepdims=0),
                              helper.make_node("Less", ["ys", "lim"], ["c2"])],
                             "body", [_vi("i", TP.INT64, []), _vi("c", TP.BOOL, []), _vi("y", TP.FLOAT, [1, 3])],
                             [_vi("c2", TP.BOOL, []), _vi("y2", TP.FLOAT, [1, 3])])
    nodes = [helper.make_node("ReduceMax", ["x"], ["xm"], keepdims=0), helper.make_node("Less", ["xm", "lim"], ["cond"]),
             helper.make_node("Loop", ["M", "cond", "y0"], ["yN"], body=body, name="while")]
    model = make_model(nodes, [_vi("x", TP.FLOAT, [1, 3])], [_vi("yN", TP.FLOAT, [1, 3])],
                       [_init("M", np.int64(4)), _init("lim", np.float32(3.0)), _init("decay", np.float32(0.9)),
                        _init("y0", np.zeros((1, 3), np.float32))])
    with pytest.raises(UnsupportedModelError) as info:
        import_onnx(model, name="m")
    msg = str(info.value)
    assert "\n" not in msg and "'while' (Loop)" in msg, msg
    # the importer's own Loop handler (a Loop the pre-pass left, e.g. inside an If branch) says why, too
    from converters.importers.onnx import dispatch
    from converters.importers.onnx_ops import REGISTRY
    from converters.importers.onnx_ops.context import ImportContext

    ctx = ImportContext("m", {"M": np.array(4, np.int64)}, {}, dispatch)
    with pytest.raises(UnsupportedModelError) as info:
        REGISTRY["Loop"](ctx, model.graph.node[2], {})
    msg = str(info.value)
    assert "\n" not in msg and "'while' (Loop)" in msg and "condition 'cond' is computed at run time" in msg, msg
