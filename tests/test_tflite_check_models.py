"""The structural check (formats/tflite_check.py) against what LiteRT and tflite-micro actually accept.

Every model here was once refused by the check although a runtime runs it correctly
(ops without outputs, multi-subgraph models, rank-1 biases with a stray
quantized_dimension, variables written by ops, tensors written later in the graph).
Each test records what the check, micro, tflite-micro and LiteRT do with it; where
LiteRT itself refuses a model, the litert backend must report that cleanly.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tflite_builder import ModelBuilder, T, opts, run_micro, run_tflm

import edge_runtime
from edge_runtime.errors import ModelFormatError, UnsupportedModelError
from edge_runtime.formats.tflite import TFLiteModel
from edge_runtime.formats.tflite_check import check_tflite_model


def _litert(path: Path, sets: list) -> list:
    litert = pytest.importorskip("ai_edge_litert.interpreter")
    it = litert.Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    out = []
    for xs in sets:
        for d, x in zip(it.get_input_details(), xs):
            it.set_tensor(d["index"], x)
        it.invoke()
        out.append([it.get_tensor(d["index"]) for d in it.get_output_details()])
    return out


def _same(a: list, b: list) -> bool:
    return all(np.array_equal(x, y) for u, v in zip(a, b) for x, y in zip(u, v)) and len(a) == len(b)


def test_ops_without_outputs_and_output_less_subgraphs_pass(tmp_path):
    """CALL_ONCE and ASSIGN_VARIABLE have no outputs; an init subgraph has none either. LiteRT and TFLM run it."""
    from test_micro_stateful import streaming_model

    p = streaming_model(tmp_path / "s.tflite", "int8", 1, 4, 2, seed=1)
    check_tflite_model(TFLiteModel.open(str(p)))
    xs = [[np.full((1, 2), k, np.int8)] for k in range(5)]
    ref = run_tflm(p, xs, reset_each=False)
    assert _same(run_micro(p, xs, reset_each=False), ref)
    assert _same(_litert(p, xs), ref)


def test_a_missing_output_is_still_refused(tmp_path):
    mb = ModelBuilder()
    sg = mb.subgraph("main")
    x = sg.tensor(T([4], "float32"))
    y = sg.tensor(T([4], "float32"))
    sg.op("RELU", [x], [])
    sg.op("RELU", [x], [y])
    sg.io([x], [y])
    with pytest.raises(ModelFormatError, match=r"operator 0 \(RELU\) has a missing output"):
        check_tflite_model(TFLiteModel.open(str(mb.write(tmp_path / "m.tflite"))))


def test_if_model_passes_and_litert_agrees_with_micro(tmp_path):
    """A three-subgraph IF model: accepted; LiteRT's outputs equal micro's and tflite-micro's."""
    from test_micro_control import if_model

    p = if_model(tmp_path / "if.tflite", "float32", [2, 3], (1, 1, 1, 1), (0, 0, 0, 0), ("ADD", "MUL"), 4)
    check_tflite_model(TFLiteModel.open(str(p)))
    rng = np.random.default_rng(0)
    sets = [[np.array([k % 2 == 0]), rng.standard_normal((2, 3)).astype(np.float32)] for k in range(4)]
    got = run_micro(p, sets)
    for ref in (run_tflm(p, sets), _litert(p, sets)):
        for g, e in zip(got, ref):
            assert np.allclose(g[0], e[0], rtol=1e-6, atol=1e-6)


def test_control_ops_naming_missing_or_entry_subgraphs_are_refused(tmp_path):
    for target in (0, 5):
        mb = ModelBuilder()
        sg = mb.subgraph("main")
        x = sg.tensor(T([2], "float32"))
        y = sg.tensor(T([2], "float32"))
        sg.op("CALL_ONCE", [], [], opts("CallOnceOptions", initSubgraphIndex=target))
        sg.op("RELU", [x], [y])
        sg.io([x], [y])
        mb.subgraph("init").io([], [])
        with pytest.raises(ModelFormatError, match=f"invokes subgraph {target}"):
            check_tflite_model(TFLiteModel.open(str(mb.write(tmp_path / f"c{target}.tflite"))))


def _fc_with_rank1_bias(path: Path, quantized_dimension: int) -> Path:
    mb = ModelBuilder()
    sg = mb.subgraph("main")
    x = sg.tensor(T([1, 4], "int8", scale=0.1, zp=2))
    w = sg.tensor(T([3, 4], "int8", scale=[0.01, 0.02, 0.03], axis=0,
                    data=np.arange(-6, 6).reshape(3, 4).astype(np.int8)))
    b = sg.tensor(T([3], "int32", scale=[0.001, 0.002, 0.003], axis=quantized_dimension,
                    data=np.array([100, -50, 7], np.int32)))
    y = sg.tensor(T([1, 3], "int8", scale=0.05, zp=-1))
    sg.op("FULLY_CONNECTED", [x, w, b], [y], opts("FullyConnectedOptions"))
    sg.io([x], [y])
    return mb.write(path)


def test_rank1_bias_with_quantized_dimension_3_is_accepted(tmp_path):
    """TFLM reads a rank-1 per-channel bias by element whatever its quantized_dimension: the check accepts it
    and micro equals tflite-micro. LiteRT refuses such a file itself; the litert backend says so cleanly."""
    p = _fc_with_rank1_bias(tmp_path / "b.tflite", 3)
    check_tflite_model(TFLiteModel.open(str(p)))
    sets = [[np.arange(4, dtype=np.int8).reshape(1, 4) * k] for k in (-9, 3, 11)]
    assert _same(run_micro(p, sets), run_tflm(p, sets))
    pytest.importorskip("ai_edge_litert.interpreter")
    with pytest.raises(UnsupportedModelError, match="quantized_dimension"):
        edge_runtime.load(str(p), backend="litert")


def test_wrong_scale_count_is_still_refused(tmp_path):
    mb = ModelBuilder()
    sg = mb.subgraph("main")
    x = sg.tensor(T([1, 4], "int8", scale=0.1))
    w = sg.tensor(T([3, 4], "int8", scale=[0.01, 0.02], axis=0, data=np.zeros((3, 4), np.int8)))
    y = sg.tensor(T([1, 3], "int8", scale=0.05))
    sg.op("FULLY_CONNECTED", [x, w, -1], [y], opts("FullyConnectedOptions"))
    sg.io([x], [y])
    with pytest.raises(ModelFormatError, match="2 scales for 3 channels"):
        check_tflite_model(TFLiteModel.open(str(mb.write(tmp_path / "w.tflite"))))


@pytest.mark.parametrize("with_data", [False, True])
def test_variable_written_by_an_op_is_accepted(tmp_path, with_data):
    """An accumulator: y = x + v; v <- y + 0 (v a variable tensor written by an op). TFLM and micro agree; LiteRT
    runs it when v has no buffer and refuses it itself (cleanly) when it has one."""
    mb = ModelBuilder()
    sg = mb.subgraph("main")
    x = sg.tensor(T([4], "float32"))
    v = sg.tensor(T([4], "float32", variable=True, data=np.ones(4, np.float32) if with_data else None))
    y = sg.tensor(T([4], "float32"))
    z = sg.tensor(T([4], "float32", data=np.zeros(4, np.float32)))
    sg.op("ADD", [x, v], [y], opts("AddOptions"))
    sg.op("ADD", [y, z], [v], opts("AddOptions"))
    sg.io([x], [y])
    p = mb.write(tmp_path / "acc.tflite")
    check_tflite_model(TFLiteModel.open(str(p)))
    sets = [[np.arange(4, dtype=np.float32) * k] for k in range(1, 5)]
    ref = run_tflm(p, sets, reset_each=False)
    assert _same(run_micro(p, sets, reset_each=False), ref)
    assert np.array_equal(ref[-1][0], np.arange(4, dtype=np.float32) * 10)  # 1 + 2 + 3 + 4, from a zero state
    pytest.importorskip("ai_edge_litert.interpreter")
    if with_data:
        with pytest.raises(UnsupportedModelError, match="variable tensor with buffer"):
            edge_runtime.load(str(p), backend="litert")
    else:
        assert _same(_litert(p, sets), ref)


def test_tensor_written_later_in_the_graph_is_accepted(tmp_path):
    """op 0 reads t, op 1 writes t (feedback through the arena). No runtime refuses it and none crashes, but they
    disagree: tflite-micro runs the ops in file order (t holds the previous invocation's value; the first is
    uninitialised), LiteRT's XNNPACK delegate reorders them. micro runs in file order like TFLM (zeroed at first),
    in-place planning on and off. A tensor nothing writes is still refused (tests/test_loader.py)."""
    mb = ModelBuilder()
    sg = mb.subgraph("main")
    x = sg.tensor(T([4], "float32"))
    t = sg.tensor(T([4], "float32"))
    y = sg.tensor(T([4], "float32"))
    sg.op("ADD", [x, t], [y], opts("AddOptions"))
    sg.op("RELU", [x], [t])
    sg.io([x], [y])
    p = mb.write(tmp_path / "fb.tflite")
    check_tflite_model(TFLiteModel.open(str(p)))
    sets = [[np.full(4, k, np.float32)] for k in (1.0, -2.0, 3.0, 5.0)]
    ref = run_tflm(p, sets, reset_each=False)
    for in_place in (False, True):
        got = run_micro(p, sets, in_place=in_place, reset_each=False)
        assert np.array_equal(got[0][0], sets[0][0])  # t starts at 0
        assert _same(got[1:], ref[1:])
    assert len(_litert(p, sets)) == len(sets)
    m = edge_runtime.load(str(p), backend="micro")
    first = [np.array(m.run(x)[0]) for x in sets]
    m.reset()  # a fresh model's view again, feedback tensor included
    assert all(np.array_equal(a, np.array(m.run(x)[0])) for a, x in zip(first, sets))


def test_subgraphs_calling_each_other_in_a_cycle_are_refused(tmp_path):
    """sg1 -> sg2 -> sg1: LiteRT and TFLM would recurse without end; the check refuses it in one line."""
    mb = ModelBuilder()
    sg = mb.subgraph("main")
    x = sg.tensor(T([2], "float32"))
    y = sg.tensor(T([2], "float32"))
    sg.op("CALL_ONCE", [], [], opts("CallOnceOptions", initSubgraphIndex=1))
    sg.op("RELU", [x], [y])
    sg.io([x], [y])
    for target in (2, 1):
        s = mb.subgraph()
        s.op("CALL_ONCE", [], [], opts("CallOnceOptions", initSubgraphIndex=target))
        s.io([], [])
    p = mb.write(tmp_path / "cycle.tflite")
    with pytest.raises(ModelFormatError, match=r"cycle \(1 -> 2 -> 1\)"):
        check_tflite_model(TFLiteModel.open(str(p)))
    with pytest.raises(ModelFormatError, match="cycle"):
        edge_runtime.load(str(p), backend="micro")


def test_a_model_without_inputs_passes(tmp_path):
    """A counter: no inputs, its state in a resource variable (CALL_ONCE sets it to 10, each run adds 1). LiteRT
    and tflite-micro run it; so does micro, through the loader, with the same outputs."""
    mb = ModelBuilder()
    sg = mb.subgraph("main")
    h = sg.tensor(T([], "resource"))
    s = sg.tensor(T([1], "int32"))
    one = sg.tensor(T([1], "int32", data=np.ones(1, np.int32)))
    s2 = sg.tensor(T([1], "int32"))
    sg.op("CALL_ONCE", [], [], opts("CallOnceOptions", initSubgraphIndex=1))
    sg.op("VAR_HANDLE", [], [h], opts("VarHandleOptions", sharedName="count"))
    sg.op("READ_VARIABLE", [h], [s])
    sg.op("ADD", [s, one], [s2], opts("AddOptions"))
    sg.op("ASSIGN_VARIABLE", [h, s2], [])
    sg.io([], [s2])
    ini = mb.subgraph("init")
    h1 = ini.tensor(T([], "resource"))
    ten = ini.tensor(T([1], "int32", data=np.array([10], np.int32)))
    ini.op("VAR_HANDLE", [], [h1], opts("VarHandleOptions", sharedName="count"))
    ini.op("ASSIGN_VARIABLE", [h1, ten], [])
    ini.io([], [])
    p = mb.write(tmp_path / "counter.tflite")
    check_tflite_model(TFLiteModel.open(str(p)))
    sets = [[] for _ in range(3)]
    expect = [[np.array([11 + k], np.int32)] for k in range(3)]
    assert _same(run_tflm(p, sets, reset_each=False), expect)
    assert _same(_litert(p, sets), expect)
    m = edge_runtime.load(str(p), backend="micro")
    assert _same([m.run([]) for _ in sets], expect)


@pytest.mark.parametrize("op", ["ADD", "SUB"])
def test_int16_add_beyond_its_shift_is_refused_before_litert_aborts(tmp_path, op):
    """int16 ADD/SUB rescale with a 15-bit shift: at an input scale 2^14 times the output's LiteRT aborts the
    process while allocating (exit 134, seen with ratio 20,000); the check refuses it in one line. Ratio 10,000
    passes the check, and tflite-micro and micro agree on it. int8 keeps the wider 2^18 bound."""
    from tflite_builder import build

    def model(ratio: float, dtype: str = "int16") -> Path:
        zp = 0 if dtype == "int16" else 3
        return build(tmp_path / f"{op}_{dtype}_{int(ratio)}.tflite", op,
                     [T((1, 8), dtype, scale=ratio * 1e-4, zp=zp), T((1, 8), dtype, scale=1e-4, zp=zp)],
                     [T((1, 8), dtype, scale=1e-4, zp=zp)])

    with pytest.raises(ModelFormatError, match=r"int16 input scale is 2e\+04 times the output's; int16 ADD/SUB "
                                               r"kernels need less than 16384") as e:
        check_tflite_model(TFLiteModel.open(str(model(20000))))
    assert "\n" not in str(e.value)
    ok = model(10000)
    check_tflite_model(TFLiteModel.open(str(ok)))
    x = [[np.arange(-4, 4, dtype=np.int16).reshape(1, 8), np.full((1, 8), 7, np.int16)]]
    assert np.array_equal(run_micro(ok, x)[0][0], run_tflm(ok, x)[0][0])
    check_tflite_model(TFLiteModel.open(str(model(20000, "int8"))))
