"""Integer index tensors selected at constant positions before a table lookup convert to int8 TFLite and QDQ ONNX.

Hand-built ONNX models (``onnx.helper``) whose int64 token ids are selected from before an embedding lookup:
the last token ``emb[ids[:, -1]]`` (Gather with a constant index), a Slice of the ids, a Concat of a constant
BOS token with the ids, an Unsqueeze -> Reshape -> Gather at constant positions -> Cast chain, a Gather at a 2-D
block of constant positions, Split/Tile/Expand of the ids joined by a Concat, an ArgMax result (an integer tensor
computed in the graph: a greedy decoding step), and the ids as
run-time index tuples of GatherND / indices of GatherElements into a constant table. Each converts through
:func:`converters.pipeline.convert_model` (calibration, held-out evaluation, the report); the selected ids stay
int32 in the written .tflite. References: onnxruntime on the float source model (SQNR of LiteRT and of the QDQ
.onnx on onnxruntime), tflite-micro (micro must equal it, ``np.array_equal``). Integer arithmetic on the selected
ids (Add, Mul, Where, Less) is refused in one line naming the node and the tensor it reads.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto as TP  # noqa: E402
from onnx import helper as h  # noqa: E402
from onnx import numpy_helper as nh  # noqa: E402

from converters.calibration_data import CalibrationDataError  # noqa: E402
from converters.importers.onnx import import_onnx  # noqa: E402
from converters.ir import index_limits, integer_tensors  # noqa: E402
from converters.pipeline import convert_model  # noqa: E402
from converters.quality.metrics import sqnr_db  # noqa: E402
from converters.report import OnnxRunner, TFLiteRunner  # noqa: E402
from edge_runtime.errors import UnsupportedModelError  # noqa: E402
from test_import_ops_common import save_model  # noqa: E402

PROFILE = "rpi4-4gb"
ROWS = 30  # embedding rows


def _save(path: Path, nodes: list, seq: int, inits: list, out_dim: int = 5) -> Path:
    return save_model(path, nodes, [h.make_tensor_value_info("ids", TP.INT64, [1, seq])],
                      [h.make_tensor_value_info("y", TP.FLOAT, [1, out_dim])], inits)


def _arr(name: str, v) -> object:  # type: ignore[no-untyped-def]
    return nh.from_array(np.asarray(v), name)


def _w(rng: np.random.Generator, name: str, shape: tuple[int, ...], std: float) -> object:
    return nh.from_array(rng.normal(0, std, shape).astype(np.float32), name)


def last_token(path: Path) -> Path:
    """``emb[ids[:, -1]] @ W``: Gather with the constant scalar index -1, then the embedding Gather."""
    rng = np.random.default_rng(0)
    nodes = [h.make_node("Gather", ["ids", "minus_one"], ["last"], axis=1),
             h.make_node("Gather", ["emb", "last"], ["e"], axis=0), h.make_node("MatMul", ["e", "W"], ["y"])]
    return _save(path, nodes, 8, [_arr("minus_one", np.array(-1, np.int64)), _w(rng, "emb", (ROWS, 16), 1.0),
                                  _w(rng, "W", (16, 5), 0.3)])


def sliced(path: Path) -> Path:
    """``mean(emb[ids[:, 2:6]]) @ W``: Slice with constant bounds."""
    rng = np.random.default_rng(1)
    nodes = [h.make_node("Slice", ["ids", "st", "en", "ax"], ["mid"]),
             h.make_node("Gather", ["emb", "mid"], ["e"], axis=0),
             h.make_node("ReduceMean", ["e"], ["p"], axes=[1], keepdims=0), h.make_node("MatMul", ["p", "W"], ["y"])]
    return _save(path, nodes, 8, [_arr("st", np.array([2], np.int64)), _arr("en", np.array([6], np.int64)),
                                  _arr("ax", np.array([1], np.int64)), _w(rng, "emb", (ROWS, 16), 1.0),
                                  _w(rng, "W", (16, 5), 0.3)])


def bos(path: Path, token: int = 1) -> Path:
    """``flatten(emb[concat([BOS], ids)]) @ W``: Concat with a constant begin-of-sequence token."""
    rng = np.random.default_rng(2)
    nodes = [h.make_node("Concat", ["bos", "ids"], ["full"], axis=1),
             h.make_node("Gather", ["emb", "full"], ["e"], axis=0), h.make_node("Flatten", ["e"], ["f"], axis=1),
             h.make_node("MatMul", ["f", "W"], ["y"])]
    return _save(path, nodes, 7, [_arr("bos", np.array([[token]], np.int64)), _w(rng, "emb", (ROWS, 16), 1.0),
                                  _w(rng, "W", (128, 5), 0.1)])


def chain(path: Path) -> Path:
    """Unsqueeze -> Reshape [2, 4] -> Gather at the constant positions [3, 0, 2] (axis 1) -> Cast int32 ->
    embedding -> mean -> Reshape -> MatMul."""
    rng = np.random.default_rng(3)
    nodes = [h.make_node("Unsqueeze", ["ids", "ax2"], ["u"]), h.make_node("Reshape", ["u", "shp"], ["r"]),
             h.make_node("Gather", ["r", "rows"], ["picked"], axis=1),
             h.make_node("Cast", ["picked"], ["c"], to=TP.INT32), h.make_node("Gather", ["emb", "c"], ["e"], axis=0),
             h.make_node("ReduceMean", ["e"], ["p"], axes=[1], keepdims=0),
             h.make_node("Reshape", ["p", "flat"], ["f"]), h.make_node("MatMul", ["f", "W"], ["y"])]
    return _save(path, nodes, 8, [_arr("ax2", np.array([2], np.int64)), _arr("shp", np.array([2, 4], np.int64)),
                                  _arr("rows", np.array([3, 0, 2], np.int64)), _w(rng, "emb", (ROWS, 16), 1.0),
                                  _arr("flat", np.array([1, 32], np.int64)), _w(rng, "W", (32, 5), 0.3)])


def split_tile_expand(path: Path) -> Path:
    """``concat(tile(split(ids)[1], 2), expand(ids[:, -1:], 3))`` (11 ids) -> embedding -> flatten -> MatMul."""
    rng = np.random.default_rng(7)
    nodes = [h.make_node("Split", ["ids", "sizes"], ["a", "b"], axis=1), h.make_node("Tile", ["b", "reps"], ["t"]),
             h.make_node("Slice", ["ids", "st", "en", "ax"], ["lastk"]),
             h.make_node("Expand", ["lastk", "eshape"], ["ex"]), h.make_node("Concat", ["t", "ex"], ["all"], axis=1),
             h.make_node("Gather", ["emb", "all"], ["e"], axis=0), h.make_node("Flatten", ["e"], ["f"], axis=1),
             h.make_node("MatMul", ["f", "W"], ["y"])]
    return _save(path, nodes, 8, [_arr("sizes", np.array([4, 4], np.int64)), _arr("reps", np.array([1, 2], np.int64)),
                                  _arr("st", np.array([-1], np.int64)), _arr("en", np.array([8], np.int64)),
                                  _arr("ax", np.array([1], np.int64)), _arr("eshape", np.array([1, 3], np.int64)),
                                  _w(rng, "emb", (ROWS, 16), 1.0), _w(rng, "W", (176, 5), 0.1)])


def nd_positions(path: Path) -> Path:
    """``emb[ids[:, [[0, 1], [7, -5]]]]``: Gather at a constant 2-D block of positions (one negative)."""
    rng = np.random.default_rng(9)
    nodes = [h.make_node("Gather", ["ids", "pos"], ["pk"], axis=1), h.make_node("Gather", ["emb", "pk"], ["e"], axis=0),
             h.make_node("Reshape", ["e", "flat"], ["f"]), h.make_node("MatMul", ["f", "W"], ["y"])]
    return _save(path, nodes, 8, [_arr("pos", np.array([[0, 1], [7, -5]], np.int64)), _w(rng, "emb", (ROWS, 16), 1.0),
                                  _arr("flat", np.array([1, 64], np.int64)), _w(rng, "W", (64, 5), 0.1)])


def gather_nd(path: Path) -> Path:
    """The ids reshaped to four (row, column) pairs index a [10, 6, 4] table through GatherND."""
    rng = np.random.default_rng(4)
    nodes = [h.make_node("Reshape", ["ids", "shp"], ["pairs"]), h.make_node("GatherND", ["table", "pairs"], ["e"]),
             h.make_node("Flatten", ["e"], ["f"], axis=1), h.make_node("MatMul", ["f", "W"], ["y"])]
    return _save(path, nodes, 8, [_arr("shp", np.array([1, 4, 2], np.int64)), _w(rng, "table", (10, 6, 4), 1.0),
                                  _w(rng, "W", (16, 5), 0.3)])


def gather_elements(path: Path) -> Path:
    """The ids reshaped to [4, 2] pick two columns per row of a [4, 6] table (GatherElements, axis 1)."""
    rng = np.random.default_rng(5)
    nodes = [h.make_node("Reshape", ["ids", "shp"], ["r"]),
             h.make_node("GatherElements", ["table", "r"], ["e"], axis=1),
             h.make_node("Reshape", ["e", "shp2"], ["f"]), h.make_node("MatMul", ["f", "W"], ["y"])]
    return _save(path, nodes, 8, [_arr("shp", np.array([4, 2], np.int64)), _arr("shp2", np.array([1, 8], np.int64)),
                                  _w(rng, "table", (4, 6), 1.0), _w(rng, "W", (8, 5), 0.3)])


#: model builder, ids length, index bound (the table rows the ids index), IR op kinds expected
CASES: dict[str, tuple[Callable[[Path], Path], int, int, set[str]]] = {
    "last_token": (last_token, 8, ROWS, {"STRIDED_SLICE", "GATHER"}),
    "slice": (sliced, 8, ROWS, {"STRIDED_SLICE", "GATHER"}),
    "bos_concat": (bos, 7, ROWS, {"CONCATENATION", "GATHER"}),
    "unsqueeze_reshape_chain": (chain, 8, ROWS, {"STRIDED_SLICE", "CONCATENATION", "GATHER"}),
    "nd_positions": (nd_positions, 8, ROWS, {"STRIDED_SLICE", "CONCATENATION", "GATHER"}),
    "split_tile_expand": (split_tile_expand, 8, ROWS, {"STRIDED_SLICE", "CONCATENATION", "GATHER"}),
    "gather_nd": (gather_nd, 8, 6, {"GATHER_ND"}),
    "gather_elements": (gather_elements, 8, 6, {"CONCATENATION", "GATHER_ND"}),
}


def _ids(rng: np.random.Generator, n: int, seq: int, bound: int) -> np.ndarray:
    return rng.integers(0, bound, (n, 1, seq)).astype(np.int64)


@pytest.mark.parametrize("case", list(CASES))
def test_selected_ids_convert(tmp_path: Path, case: str) -> None:
    pytest.importorskip("tflite_micro.python.tflite_micro.runtime")
    from tflite_builder import run_micro, run_tflm

    build, seq, bound, kinds = CASES[case]
    model = build(tmp_path / f"{case}.onnx")
    rng = np.random.default_rng(11)
    calib, held, test = _ids(rng, 96, seq, bound), _ids(rng, 32, seq, bound), _ids(rng, 32, seq, bound)
    res = convert_model(model, PROFILE, calib, tmp_path / "out", plot=False, held_out=held)
    graph = res.graph
    assert kinds <= {op.kind for op in graph.ops}
    selected = integer_tensors(graph) - set(graph.inputs)
    assert case == "gather_nd" or selected, "the selected ids are int32 tensors of the IR"
    assert all(res.plan.tensor_dtype(t) == "int32" for t in integer_tensors(graph))  # never quantized
    assert index_limits(graph) == {"ids": bound}
    assert res.report["input"]["index_limit"] == bound and res.report["input"]["scale"] is None
    for fmt in ("tflite", "onnx"):  # held-out evaluation of both written models (32 samples)
        assert res.report["held_out"][fmt]["output_sqnr_db"] > 20
    lite = TFLiteRunner(res.tflite_path)
    assert lite.inps[0]["dtype"] == np.int32
    from converters.report import litert_interpreter

    it = litert_interpreter(res.tflite_path)
    types = {d["name"]: d["dtype"] for d in it.get_tensor_details()}
    assert all(types[t] == np.int32 for t in selected if t in types)
    qdq_model = onnx.shape_inference.infer_shapes(onnx.load(res.onnx_path))  # the QDQ .onnx: ids stay int32
    qdq_types = {vi.name: vi.type.tensor_type.elem_type for vi in qdq_model.graph.value_info}
    assert all(qdq_types[f"{t}/float"] == TP.INT32 for t in selected)
    assert not any(n.op_type == "QuantizeLinear" and n.input[0].removesuffix("/float") in selected
                   for n in qdq_model.graph.node)
    qdq = OnnxRunner(res.onnx_path, res.plan, graph)
    src = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    sig = err_lite = err_qdq = 0.0
    sets = []
    for x in test:
        ref = src.run(None, {"ids": x})[0].astype(np.float64)
        got_lite = lite.run([x.astype(np.int32)])[0].reshape(ref.shape)
        got_qdq = qdq.run(x)[0].reshape(ref.shape)
        sig += float(np.sum(ref ** 2))
        err_lite += float(np.sum((ref - got_lite) ** 2))
        err_qdq += float(np.sum((ref - got_qdq) ** 2))
        sets.append([x.astype(np.int32)])
    assert sqnr_db(sig, err_lite) > 22, f"LiteRT int8 vs onnxruntime float: {sqnr_db(sig, err_lite):.1f} dB"
    assert sqnr_db(sig, err_qdq) > 22, f"QDQ .onnx vs onnxruntime float: {sqnr_db(sig, err_qdq):.1f} dB"
    want = run_tflm(Path(res.tflite_path), sets)  # reference: tflite-micro
    got = run_micro(Path(res.tflite_path), sets)
    assert all(len(w) == len(g) and all(a.dtype == b.dtype and np.array_equal(a, b) for a, b in zip(w, g))
               for w, g in zip(want, got))


def test_gather_elements_limit_is_the_gathered_axis(tmp_path: Path) -> None:
    """The ids index axis 1 (6 columns) of the [4, 6] table, not its 4 rows: 5 is accepted, 6 refused."""
    model = gather_elements(tmp_path / "ge.onnx")
    ok = np.full((4, 1, 8), 5, np.int64)
    convert_model(model, PROFILE, ok, tmp_path / "ok", plot=False, formats=("tflite",))
    with pytest.raises(CalibrationDataError, match="input 'ids' holds the index 6.*6 rows"):
        convert_model(model, PROFILE, ok + 1, tmp_path / "bad", plot=False, formats=("tflite",))


def _arith(path: Path, op: str) -> Path:
    """``emb[op(ids[:, -1], 2)]``: integer arithmetic on the selected last token."""
    rng = np.random.default_rng(6)
    if op == "Where":
        mid = [h.make_node("Less", ["last", "two"], ["small"]),
               h.make_node("Where", ["small", "last", "two"], ["shifted"])]
    else:
        mid = [h.make_node(op, ["last", "two"], ["shifted"])]
    nodes = ([h.make_node("Gather", ["ids", "minus_one"], ["last"], axis=1)] + mid
             + [h.make_node("Gather", ["emb", "shifted"], ["e"], axis=0), h.make_node("MatMul", ["e", "W"], ["y"])])
    return _save(path, nodes, 8, [_arr("minus_one", np.array(-1, np.int64)), _arr("two", np.array([2], np.int64)),
                                  _w(rng, "emb", (ROWS, 16), 1.0), _w(rng, "W", (16, 5), 0.3)])


@pytest.mark.parametrize("op, node, kind", [("Add", "shifted", "Add"), ("Mul", "shifted", "Mul"),
                                            ("Sub", "shifted", "Sub"), ("Where", "small", "Less")])
def test_integer_arithmetic_is_refused_in_one_line(tmp_path: Path, op: str, node: str, kind: str) -> None:
    model = _arith(tmp_path / "arith.onnx", op)
    with pytest.raises(UnsupportedModelError) as e:
        import_onnx(str(model))
    msg = str(e.value)
    assert "\n" not in msg
    assert f"input 'ids' is int64 data of shape 1x8 read (through 'last', selected from it) by node '{node}' " \
           f"({kind})" in msg and "integer arithmetic is not supported" in msg


def test_constant_token_outside_the_table_is_refused(tmp_path: Path) -> None:
    """A BOS token beyond the embedding rows would make every runtime fail: refused at import, in one line."""
    with pytest.raises(UnsupportedModelError) as e:
        import_onnx(str(bos(tmp_path / "bos.onnx", token=ROWS)))
    msg = str(e.value)
    assert "\n" not in msg and f"the constant index {ROWS} joined with input 'ids' is outside the {ROWS} rows" in msg


def _greedy(path: Path, rows: int = 10) -> Path:
    """A greedy decoding step: ``emb[argmax(logits, -1)[:, -1]] @ W`` (the integer tensor is computed in the graph)."""
    rng = np.random.default_rng(8)
    nodes = [h.make_node("ArgMax", ["logits"], ["tok"], axis=2, keepdims=0),
             h.make_node("Gather", ["tok", "minus_one"], ["last"], axis=1),
             h.make_node("Gather", ["emb", "last"], ["e"], axis=0), h.make_node("MatMul", ["e", "W"], ["y"])]
    g = h.make_graph(nodes, "greedy", [h.make_tensor_value_info("logits", TP.FLOAT, [1, 4, 10])],
                     [h.make_tensor_value_info("y", TP.FLOAT, [1, 5])],
                     [_arr("minus_one", np.array(-1, np.int64)), _w(rng, "emb", (rows, 16), 1.0),
                      _w(rng, "W", (16, 5), 0.3)])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


def test_argmax_token_selected_then_embedded(tmp_path: Path) -> None:
    """ArgMax -> last position -> embedding: int32 all the way; LiteRT equals onnxruntime where the maximum is
    clear, and micro equals tflite-micro."""
    pytest.importorskip("tflite_micro.python.tflite_micro.runtime")
    from tflite_builder import run_micro, run_tflm

    model = _greedy(tmp_path / "greedy.onnx")
    rng = np.random.default_rng(9)

    def logits(n: int) -> np.ndarray:  # one clear maximum per position (no near-ties for int8 to flip)
        x = rng.normal(0, 0.3, (n, 1, 4, 10)).astype(np.float32)
        x[np.arange(n)[:, None], 0, np.arange(4)[None, :], rng.integers(0, 10, (n, 4))] += 3.0
        return x

    res = convert_model(model, PROFILE, logits(24), tmp_path / "out", plot=False, formats=("tflite",))
    assert [op.kind for op in res.graph.ops][:2] == ["ARG_MAX", "STRIDED_SLICE"]
    assert all(res.plan.tensor_dtype(t) == "int32" for t in integer_tensors(res.graph))
    lite = TFLiteRunner(res.tflite_path)
    src = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    test = logits(6)
    sig = err = 0.0
    sets = []
    for x in test:
        ref = src.run(None, {"logits": x})[0].astype(np.float64)
        got = lite.run([x])[0].reshape(ref.shape)
        sig += float(np.sum(ref ** 2))
        err += float(np.sum((ref - got) ** 2))
        sets.append([TFLiteRunner._q(x, lite.inps[0]).reshape(lite.inps[0]["shape"])])
    assert sqnr_db(sig, err) > 20, f"LiteRT int8 vs onnxruntime float: {sqnr_db(sig, err):.1f} dB"
    want, got = run_tflm(Path(res.tflite_path), sets), run_micro(Path(res.tflite_path), sets)  # ref: tflite-micro
    assert all(np.array_equal(a, b) for w, g in zip(want, got) for a, b in zip(w, g))


def test_argmax_over_more_positions_than_table_rows_is_refused(tmp_path: Path) -> None:
    """ArgMax over 10 logits indexing an 8-row table: positions 8 and 9 have no row; one line naming the op."""
    with pytest.raises(UnsupportedModelError) as e:
        import_onnx(str(_greedy(tmp_path / "greedy.onnx", rows=8)))
    msg = str(e.value)
    assert "\n" not in msg
    assert "op 'e' (GATHER) looks up an ARG_MAX/ARG_MIN position among 10 in a table of 8 rows" in msg


def test_int16_activations_keep_the_selected_ids_int32(tmp_path: Path) -> None:
    """With int16 activations the ops that only move ids (slices, concatenations) keep no int16 precision: the ids
    stay int32 in the .tflite, which micro runs exactly as tflite-micro."""
    pytest.importorskip("tflite_micro.python.tflite_micro.runtime")
    from tflite_builder import run_micro, run_tflm

    model = split_tile_expand(tmp_path / "ste.onnx")
    rng = np.random.default_rng(12)
    res = convert_model(model, PROFILE, _ids(rng, 24, 8, ROWS), tmp_path / "out", plot=False, formats=("tflite",),
                        activations="int16")
    ints = integer_tensors(res.graph)
    id_ops = [op for op in res.graph.ops if all(o in ints for o in op.outputs)]
    assert id_ops and all(res.plan.op_dtype(op) == "int8" and res.plan.tensor_dtype(op.outputs[0]) == "int32"
                          for op in id_ops)
    assert res.plan.tensor_dtype(res.graph.outputs[0]) == "int16"
    sets = [[x.astype(np.int32)] for x in _ids(rng, 3, 8, ROWS)]
    want, got = run_tflm(Path(res.tflite_path), sets), run_micro(Path(res.tflite_path), sets)  # ref: tflite-micro
    assert all(np.array_equal(a, b) for w, g in zip(want, got) for a, b in zip(w, g))
