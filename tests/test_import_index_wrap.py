"""tf2onnx's negative-index wrap ``where(ids < 0, ids + N, ids)`` before an embedding Gather of N rows converts.

Hand-built ONNX models (``onnx.helper``) reproducing what tf2onnx writes for a Keras Embedding: the Mul/Add
select (slovorez's form: ``Cast(ids) -> Less(., 0) -> Not -> Cast``, ``Mul``, ``Add``) and the Where form, each
before ``Gather(table[N])``. They convert through :func:`converters.pipeline.convert_model`; references:
onnxruntime on the float source model (SQNR of LiteRT), tflite-micro (micro must equal it, ``np.array_equal``).
Near misses (a wrap by another N than the table's rows, an Add of another constant, a wrap that also feeds
something else) keep being refused in one line.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto as TP  # noqa: E402
from onnx import helper as h  # noqa: E402
from onnx import numpy_helper as nh  # noqa: E402

from converters.importers.index_wrap import remove_index_wraps  # noqa: E402
from converters.importers.onnx import import_onnx  # noqa: E402
from converters.pipeline import convert_model  # noqa: E402
from converters.quality.metrics import sqnr_db  # noqa: E402
from converters.report import TFLiteRunner  # noqa: E402
from edge_runtime.errors import UnsupportedModelError  # noqa: E402

PROFILE = "rpi4-4gb"
ROWS = 24
SEQ = 20  # slovorez's padded word length: more ids than a setting


def _wrap_nodes(form: str, plus: str = "n") -> list:
    """tf2onnx's wrap of ``ids`` into ``wrapped``; ``plus`` names the constant added to the ids."""
    cond = [h.make_node("Cast", ["ids"], ["ids_f"], to=TP.FLOAT), h.make_node("Less", ["ids_f", "zero"], ["neg"])]
    add = [h.make_node("Add", ["ids", plus], ["plus"])]
    if form == "where":
        return add + cond + [h.make_node("Where", ["neg", "plus", "ids"], ["wrapped"])]
    return add + cond + [
        h.make_node("Not", ["neg"], ["pos"]), h.make_node("Cast", ["pos"], ["pos_i"], to=TP.INT32),
        h.make_node("Mul", ["ids", "pos_i"], ["keep"]), h.make_node("Cast", ["neg"], ["neg_i"], to=TP.INT32),
        h.make_node("Mul", ["neg_i", "plus"], ["shift"]), h.make_node("Add", ["shift", "keep"], ["wrapped"])]


def _model(path: Path, form: str, n: int = ROWS, plus: str = "n", extra_use: bool = False) -> Path:
    """``relu(flatten(emb[wrap(ids)]) @ W1) @ W2`` with int32 ids ``[1, SEQ]`` (slovorez's input type)."""
    rng = np.random.default_rng(3)
    nodes = _wrap_nodes(form, plus) + [
        h.make_node("Gather", ["emb", "wrapped"], ["e"], axis=0),
        h.make_node("Reshape", ["e", "flat"], ["f"]), h.make_node("MatMul", ["f", "W1"], ["z"]),
        h.make_node("Relu", ["z"], ["r"]), h.make_node("MatMul", ["r", "W2"], ["y"])]
    outputs = [h.make_tensor_value_info("y", TP.FLOAT, [1, 4])]
    if extra_use:  # the float ids also feed the output: the Cast is not only part of the wrap
        nodes += [h.make_node("ReduceSum", ["ids_f"], ["s"], keepdims=0)]
        outputs.append(h.make_tensor_value_info("s", TP.FLOAT, []))
    inits = [nh.from_array(np.array(n, np.int32), "n"), nh.from_array(np.array(3, np.int32), "three"),
             nh.from_array(np.array(0.0, np.float32), "zero"),
             nh.from_array(rng.normal(0, 1, (ROWS, 8)).astype(np.float32), "emb"),
             nh.from_array(np.array([1, SEQ * 8], np.int64), "flat"),
             nh.from_array(rng.normal(0, 0.3, (SEQ * 8, 16)).astype(np.float32), "W1"),
             nh.from_array(rng.normal(0, 0.3, (16, 4)).astype(np.float32), "W2")]
    g = h.make_graph(nodes, path.stem, [h.make_tensor_value_info("ids", TP.INT32, [1, SEQ])], outputs, inits)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    return path


@pytest.mark.parametrize("form", ["mul_add", "where"])
def test_wrap_is_removed_and_model_converts(tmp_path: Path, form: str) -> None:
    pytest.importorskip("tflite_micro.python.tflite_micro.runtime")
    from tflite_builder import run_micro, run_tflm

    model = _model(tmp_path / f"{form}.onnx", form)
    src = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(5)
    # onnxruntime on the source model: the wrap changes nothing for ids in [-N, N) (Gather wraps them the same)
    neg = rng.integers(-ROWS, 0, (1, SEQ)).astype(np.int32)
    proto = onnx.load(str(model))
    assert remove_index_wraps(proto) == 1
    assert not {"Less", "Where", "Not", "Mul", "Add", "Cast"} & {n.op_type for n in proto.graph.node}
    assert next(n for n in proto.graph.node if n.op_type == "Gather").input[1] == "ids"
    bare = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    assert np.array_equal(src.run(None, {"ids": neg})[0], bare.run(None, {"ids": neg})[0])

    ids = lambda n: rng.integers(0, ROWS, (n, 1, SEQ)).astype(np.int32)  # noqa: E731
    res = convert_model(model, PROFILE, ids(64), tmp_path / "out", plot=False, held_out=ids(16),
                        formats=("tflite",))
    assert {op.kind for op in res.graph.ops} >= {"GATHER", "FULLY_CONNECTED"}
    assert not {"ADD", "MUL", "LESS", "SELECT_V2", "CAST"} & {op.kind for op in res.graph.ops}
    lite = TFLiteRunner(res.tflite_path)
    sig = err = 0.0
    sets = []
    for x in ids(24):
        ref = src.run(None, {"ids": x})[0].astype(np.float64)
        got = lite.run([x])[0].reshape(ref.shape)
        sig += float(np.sum(ref ** 2))
        err += float(np.sum((ref - got) ** 2))
        sets.append([x])
    assert sqnr_db(sig, err) > 25, f"LiteRT int8 vs onnxruntime float: {sqnr_db(sig, err):.1f} dB"
    want = run_tflm(Path(res.tflite_path), sets)  # reference: tflite-micro
    got = run_micro(Path(res.tflite_path), sets)
    assert all(len(w) == len(g) and all(a.dtype == b.dtype and np.array_equal(a, b) for a, b in zip(w, g))
               for w, g in zip(want, got))


@pytest.mark.parametrize("form", ["mul_add", "where"])
@pytest.mark.parametrize("case", ["other_rows", "other_constant", "extra_use"])
def test_near_miss_stays_refused_in_one_line(tmp_path: Path, form: str, case: str) -> None:
    """A wrap by N + 1 for a table of N rows, ``ids + 3`` in place of ``ids + N``, or a wrap whose float ids
    also feed an output is not the no-op wrap: the integer arithmetic is refused, naming its first node."""
    kw = {"other_rows": {"n": ROWS + 1}, "other_constant": {"plus": "three"}, "extra_use": {"extra_use": True}}
    model = _model(tmp_path / f"{case}.onnx", form, **kw[case])
    proto = onnx.load(str(model))
    assert remove_index_wraps(proto) == 0
    with pytest.raises(UnsupportedModelError) as e:
        import_onnx(str(model))
    msg = str(e.value)
    assert "\n" not in msg
    assert f"input 'ids' is int32 data of shape 1x{SEQ} read by node 'plus' (Add)" in msg
    assert "integer arithmetic is not supported" in msg


def test_negative_calibration_ids_are_refused_in_one_line(tmp_path: Path) -> None:
    """The wrap is gone, but negative ids in the calibration data are still refused (one line)."""
    model = _model(tmp_path / "mul_add.onnx", "mul_add")
    calib = np.random.default_rng(1).integers(0, ROWS, (16, 1, SEQ)).astype(np.int32)
    calib[3, 0, 2] = -2
    with pytest.raises(Exception) as e:
        convert_model(model, PROFILE, calib, tmp_path / "out", plot=False, formats=("tflite",))
    assert "\n" not in str(e.value) and "negative index" in str(e.value)
