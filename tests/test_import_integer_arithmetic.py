"""Integer arithmetic on run-time indices (TopK/ArgMax positions): Add/Sub/Mul -> int32 ADD/SUB/MUL, Div of a
non-negative position by a positive constant -> FLOOR_DIV, Mod -> FLOOR_MOD (isbnx's ``idx // nc``, ``idx % nc``).

Hand-built ONNX models (``onnx.helper``) convert through :func:`converters.pipeline.convert_model`; the int32
outputs must equal onnxruntime's on the float source model exactly (``np.array_equal``) on LiteRT, and on micro
equal tflite-micro (ADD/SUB/MUL int32; TFLite Micro has no int32 FLOOR_DIV/FLOOR_MOD, so those are refused on its
profiles in one line). Div of a possibly negative integer is refused in one line. Positions gathered by positions
stay int32 (GATHER; refused on TFLite Micro profiles); positions cast to float are a CAST whose output is quantized
and may join float values; float math on positions that are not cast is refused in one line.
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

from converters.importers.onnx import import_onnx  # noqa: E402
from converters.ir import integer_tensors  # noqa: E402
from converters.pipeline import convert_model  # noqa: E402
from converters.report import TFLiteRunner  # noqa: E402
from edge_runtime.errors import UnsupportedModelError  # noqa: E402

N, K, NC = 12, 4, 3  # scores, kept, "classes" (positions // NC index N // NC boxes)


def _i64(name: str, v) -> object:  # type: ignore[no-untyped-def]
    return nh.from_array(np.asarray(v, np.int64), name)


def _model(nodes: list, outs: list, inits: list, path: Path) -> Path:
    ins = [h.make_tensor_value_info("boxes", TP.FLOAT, [1, N // NC, 4]),
           h.make_tensor_value_info("scores", TP.FLOAT, [1, N])]
    m = h.make_model(h.make_graph(nodes, path.stem, ins, outs, inits), opset_imports=[h.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    return path


def topk_div_mod(path: Path) -> Path:
    """isbnx's head: ``TopK(scores)`` positions ``p``; ``p // NC`` gathers boxes, ``p % NC`` and ``2 * (p // NC) +
    p % NC - 1`` are int64 outputs."""
    outs = [h.make_tensor_value_info("picked", TP.FLOAT, [1, K, 4]), h.make_tensor_value_info("cls", TP.INT64, [1, K]),
            h.make_tensor_value_info("mix", TP.INT64, [1, K])]
    nodes = [h.make_node("TopK", ["scores", "k"], ["top", "p"], axis=1),
             h.make_node("Div", ["p", "nc"], ["q"]), h.make_node("Mod", ["p", "nc"], ["cls"], fmod=0),
             h.make_node("Add", ["q", "zero"], ["q0"]),  # isbnx adds a batch offset of 0
             h.make_node("Squeeze", ["q0", "ax0"], ["qs"]),
             h.make_node("Gather", ["boxes", "qs"], ["picked"], axis=1),
             h.make_node("Mul", ["q", "two"], ["q2"]), h.make_node("Add", ["q2", "cls"], ["s"]),
             h.make_node("Sub", ["s", "one"], ["mix"])]
    return _model(nodes, outs, [_i64("k", [K]), _i64("nc", NC), _i64("zero", [[0]]), _i64("ax0", [0]),
                                _i64("two", 2), _i64("one", [1])], path)


def argmax_add_mul(path: Path) -> Path:
    """ArgMax (TFLite Micro's ARG_MAX) then int32 MUL, ADD, SUB: ``3 * a + 5 - a`` and ``a - 7`` as outputs."""
    outs = [h.make_tensor_value_info("y", TP.INT64, [1]), h.make_tensor_value_info("z", TP.INT64, [1]),
            h.make_tensor_value_info("unused", TP.FLOAT, [1, N // NC, 4])]
    nodes = [h.make_node("ArgMax", ["scores"], ["a"], axis=1, keepdims=0),
             h.make_node("Mul", ["a", "three"], ["m"]), h.make_node("Add", ["m", "five"], ["s"]),
             h.make_node("Sub", ["s", "a"], ["y"]), h.make_node("Sub", ["a", "seven"], ["z"]),
             h.make_node("Relu", ["boxes"], ["unused"])]
    return _model(nodes, outs, [_i64("three", 3), _i64("five", [5]), _i64("seven", 7)], path)


def _data(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Scores a permutation of N steps (no ties within int8 rounding) and boxes in [0, 1)."""
    scores = np.stack([rng.permutation(N) for _ in range(n)])[:, None, :].astype(np.float32) / N
    boxes = (np.arange(N // NC * 4).reshape(1, N // NC, 4) / (N // NC * 4) + 0 * rng.random()).astype(np.float32)
    return {"scores": scores, "boxes": np.repeat(boxes[None], n, 0)}


def _convert(model: Path, profile: str, out: Path):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    res = convert_model(model, profile, _data(rng, 16), out, plot=False)
    ints = integer_tensors(res.graph)
    assert ints and all(res.plan.tensor_dtype(t) == "int32" for t in ints)  # never quantized
    return res


def _runs(res, model: Path, n: int = 6):  # type: ignore[no-untyped-def]
    """(onnxruntime outputs, LiteRT outputs by name, the quantized input sets) for ``n`` samples."""
    lite = TFLiteRunner(res.tflite_path)
    src = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    names = [o.name for o in src.get_outputs()]
    order = [i["name"] for i in lite.inps]
    x = _data(np.random.default_rng(1), n)
    for j in range(n):
        feeds = {k: v[j] for k, v in x.items()}
        ref = dict(zip(names, src.run(None, feeds)))
        got = dict(zip([o["name"] for o in lite.outs], lite.run([feeds[k] for k in order])))
        yield ref, got, [TFLiteRunner._q(feeds[k], i).reshape(i["shape"]) for k, i in zip(order, lite.inps)]


def test_topk_div_mod_on_litert_equals_onnxruntime(tmp_path: Path) -> None:
    """rpi4-4gb: FLOOR_DIV, FLOOR_MOD, int32 ADD/MUL/SUB; LiteRT's int32 outputs equal onnxruntime's exactly and
    the gathered boxes are the same rows (the boxes differ by 1/16 per row, far above int8's step)."""
    model = topk_div_mod(tmp_path / "m.onnx")
    res = _convert(model, "rpi4-4gb", tmp_path / "out")
    kinds = {op.kind for op in res.graph.ops}
    assert {"FLOOR_DIV", "FLOOR_MOD", "MUL", "ADD", "GATHER"} <= kinds, kinds
    for ref, got, _ in _runs(res, model):
        for name in ("cls", "mix"):
            g = got[name]
            assert np.array_equal(g.reshape(ref[name].shape), ref[name]), (name, g, ref[name])
        assert np.abs(got["picked"].reshape(ref["picked"].shape) - ref["picked"]).max() < 1 / 64
    from converters.report import litert_interpreter

    types = {d["name"]: d["dtype"] for d in litert_interpreter(res.tflite_path).get_output_details()}
    assert all(types[n] == np.int32 for n in ("cls", "mix")), types  # written int32, not quantized


def test_argmax_arithmetic_micro_equals_tflite_micro(tmp_path: Path) -> None:
    """stm32h743: ARG_MAX then int32 MUL/ADD/SUB; LiteRT equals onnxruntime exactly, micro equals tflite-micro."""
    pytest.importorskip("tflite_micro.python.tflite_micro.runtime")
    from tflite_builder import run_micro, run_tflm

    model = argmax_add_mul(tmp_path / "a.onnx")
    res = _convert(model, "stm32h743", tmp_path / "out")
    sets = []
    for ref, got, qin in _runs(res, model):
        for name in ("y", "z"):
            assert np.array_equal(got[name].reshape(ref[name].shape), ref[name]), (name, got[name], ref[name])
        sets.append(qin)
    want, mine = run_tflm(Path(res.tflite_path), sets), run_micro(Path(res.tflite_path), sets)  # ref: tflite-micro
    assert all(a.dtype == b.dtype and np.array_equal(a, b) for w, g in zip(want, mine) for a, b in zip(w, g))


def test_floor_div_is_refused_on_tflite_micro_profiles(tmp_path: Path) -> None:
    """TFLite Micro's FLOOR_DIV is float32 only: one line naming the node on stm32h743."""
    nodes = [h.make_node("ArgMax", ["scores"], ["a"], axis=1, keepdims=0), h.make_node("Div", ["a", "nc"], ["y"])]
    model = _model(nodes + [h.make_node("Relu", ["boxes"], ["r"])], [h.make_tensor_value_info("y", TP.INT64, [1]),
                   h.make_tensor_value_info("r", TP.FLOAT, [1, N // NC, 4])], [_i64("nc", NC)], tmp_path / "d.onnx")
    with pytest.raises(UnsupportedModelError) as e:
        convert_model(model, "stm32h743", _data(np.random.default_rng(0), 8), tmp_path / "out", plot=False)
    assert "\n" not in str(e.value) and "(FLOOR_DIV) has no TFLite Micro kernel" in str(e.value)


def _refusal(nodes: list, inits: list, out_type: int = TP.INT64, tmp: Path = Path("."), width: int = K) -> str:
    model = _model(nodes + [h.make_node("Relu", ["boxes"], ["r"])], [h.make_tensor_value_info("y", out_type,
                                                                                              [1, width])],
                   inits, tmp / "r.onnx")
    with pytest.raises(UnsupportedModelError) as e:
        import_onnx(str(model))
    assert "\n" not in str(e.value)
    return str(e.value)


def test_inexact_integer_arithmetic_is_refused_in_one_line(tmp_path: Path) -> None:
    """Div of ``p - 5`` (possibly negative: ONNX truncates, FLOOR_DIV floors) and Div by a run-time integer are
    refused in one line each."""
    top = h.make_node("TopK", ["scores", "k"], ["top", "p"], axis=1)
    inits = [_i64("k", [K]), _i64("five", 5), _i64("nc", NC)]
    msg = _refusal([top, h.make_node("Sub", ["p", "five"], ["d"]), h.make_node("Div", ["d", "nc"], ["y"])], inits,
                   tmp=tmp_path)
    assert "ONNX node 'y' (Div): integer Div of 'd' by 'nc': ONNX's Div truncates toward zero" in msg
    msg = _refusal([top, h.make_node("Div", ["p", "p"], ["y"])], inits, tmp=tmp_path)
    assert "integer Div of 'p' by 'p'" in msg


def test_float_reads_of_uncast_positions_are_refused(tmp_path: Path) -> None:
    """A Cast of positions to float is a CAST that float math may read; an IR op reading the int32 positions
    themselves as floats (the CAST bypassed) is still refused in one line by the importer's check."""
    from converters.importers.onnx_ops.int_arith import check_integer_reads

    nodes = [h.make_node("ArgMax", ["scores"], ["a"], axis=1, keepdims=1),
             h.make_node("Cast", ["a"], ["af"], to=TP.FLOAT), h.make_node("Add", ["af", "scores"], ["y"]),
             h.make_node("Relu", ["boxes"], ["r"])]
    model = _model(nodes, [h.make_tensor_value_info("y", TP.FLOAT, [1, N]),
                           h.make_tensor_value_info("r", TP.FLOAT, [1, N // NC, 4])], [], tmp_path / "c.onnx")
    graph = import_onnx(str(model))
    cast = next(op for op in graph.ops if op.kind == "CAST")
    add = next(op for op in graph.ops if cast.outputs[0] in op.inputs)
    assert add.kind == "ADD" and cast.inputs[0] in integer_tensors(graph)
    add.inputs = [cast.inputs[0] if i == cast.outputs[0] else i for i in add.inputs]  # read positions as floats
    with pytest.raises(UnsupportedModelError) as e:
        check_integer_reads(graph, "m.onnx")
    assert "\n" not in str(e.value) and "(ADD) reads the int32 indices" in str(e.value)
    assert "without a Cast to float" in str(e.value)


def topk_gather_positions(path: Path) -> Path:
    """isbnx's ``Gather(Flatten(topk_idx), positions)``: TopK positions ``p`` (among N) picked by the positions
    ``q`` of a second TopK (among K): by Gather (axis 0 of ``[K, 1]``), and by GatherElements of ``[2, K]`` (``p``
    and ``p // NC``) by ``[q; r]`` (two different rows: one GATHER on the flattened data)."""
    outs = [h.make_tensor_value_info("g", TP.INT64, [1, K, 1]), h.make_tensor_value_info("e", TP.INT64, [2, K]),
            h.make_tensor_value_info("r", TP.FLOAT, [1, N // NC, 4])]
    nodes = [h.make_node("Relu", ["boxes"], ["r"]), h.make_node("TopK", ["scores", "k"], ["top", "p"], axis=1),
             h.make_node("Neg", ["top"], ["neg"]), h.make_node("TopK", ["neg", "k"], ["_", "q"], axis=1),
             h.make_node("TopK", ["top", "k"], ["__", "rr"], axis=1),
             h.make_node("Unsqueeze", ["p", "ax2"], ["p3"]), h.make_node("Flatten", ["p3"], ["pf"], axis=2),
             h.make_node("Gather", ["pf", "q"], ["g"], axis=0),
             h.make_node("Div", ["p", "nc"], ["pd"]), h.make_node("Concat", ["p", "pd"], ["data"], axis=0),
             h.make_node("Concat", ["q", "rr"], ["ind"], axis=0),
             h.make_node("GatherElements", ["data", "ind"], ["e"], axis=1)]
    return _model(nodes, outs, [_i64("k", [K]), _i64("ax2", [2]), _i64("nc", NC)], path)


def argmax_gather_positions(path: Path) -> Path:
    """ArgMax positions (among NC) picked by other ArgMax positions (among N // NC): a GATHER of int32 values."""
    outs = [h.make_tensor_value_info("g", TP.INT64, [1, NC])]
    nodes = [h.make_node("Reshape", ["scores", "s43"], ["s"]),
             h.make_node("ArgMax", ["s"], ["a"], axis=2, keepdims=0),
             h.make_node("ArgMax", ["s"], ["b"], axis=1, keepdims=0),
             h.make_node("Gather", ["a", "b"], ["g"], axis=1), h.make_node("Relu", ["boxes"], ["r"])]
    outs.append(h.make_tensor_value_info("r", TP.FLOAT, [1, N // NC, 4]))
    return _model(nodes, outs, [_i64("s43", [1, N // NC, NC])], path)


def test_gather_of_positions_on_litert_equals_onnxruntime(tmp_path: Path) -> None:
    """rpi4-4gb: int32 GATHERs of TopK positions (Gather, GatherElements) stay int32 and LiteRT's values equal
    onnxruntime's exactly."""
    model = topk_gather_positions(tmp_path / "g.onnx")
    res = _convert(model, "rpi4-4gb", tmp_path / "out")
    ints = integer_tensors(res.graph)
    gathers = [op for op in res.graph.ops if op.kind == "GATHER" and op.inputs[0] in ints]
    assert len(gathers) == 2 and all(op.outputs[0] in ints for op in gathers), res.graph.ops
    for ref, got, _ in _runs(res, model):
        for name in ("g", "e"):
            assert np.array_equal(got[name].reshape(ref[name].shape), ref[name]), (name, got[name], ref[name])
    from converters.report import litert_interpreter

    types = {d["name"]: d["dtype"] for d in litert_interpreter(res.tflite_path).get_output_details()}
    assert types["g"] == types["e"] == np.int32, types  # written int32, not quantized


def test_gather_of_positions_is_refused_on_tflite_micro_profiles(tmp_path: Path) -> None:
    """TFLite Micro's GATHER takes float32/int8 data only: an int32 gather is refused in one line on stm32h743."""
    model = argmax_gather_positions(tmp_path / "a.onnx")
    with pytest.raises(UnsupportedModelError) as e:
        convert_model(model, "stm32h743", _data(np.random.default_rng(0), 8), tmp_path / "out", plot=False)
    assert "\n" not in str(e.value) and "(GATHER) gathers int32 values" in str(e.value), str(e.value)


def test_gather_nd_of_positions_is_refused_in_one_line(tmp_path: Path) -> None:
    """GatherND of int32 positions would need an int32 GATHER_ND, which neither TFLite Micro nor micro runs:
    refused at import in one line naming the node."""
    top = h.make_node("TopK", ["scores", "k"], ["top", "p"], axis=1)
    nodes = [top, h.make_node("TopK", ["top", "k"], ["_", "q"], axis=1),
             h.make_node("Unsqueeze", ["p", "ax2"], ["p3"]), h.make_node("Flatten", ["p3"], ["pf"], axis=2),
             h.make_node("Unsqueeze", ["q", "ax2"], ["q3"]), h.make_node("GatherND", ["pf", "q3"], ["y"])]
    msg = _refusal(nodes, [_i64("k", [K]), _i64("ax2", [2])], tmp=tmp_path, width=K)
    assert "ONNX node 'y' (GatherND): GatherND of integer values ('pf')" in msg
    assert "Gather and GatherElements only" in msg


def test_micro_int32_gather_equals_litert(tmp_path: Path) -> None:
    """micro's GATHER of int32 data equals LiteRT's exactly (tflite-micro has no int32 GATHER)."""
    from tflite_builder import T, build, opts, run_litert, run_micro

    p = tmp_path / "g.tflite"
    build(p, "GATHER", [T((3, 5), "int32"), T((4,), "int32")], [T((3, 4), "int32")], opts("GatherOptions", axis=1))
    rng = np.random.default_rng(3)
    sets = [[rng.integers(-2 ** 31, 2 ** 31 - 1, (3, 5)).astype(np.int32), rng.integers(0, 5, 4).astype(np.int32)]
            for _ in range(4)]
    want, got = run_litert(p, sets), run_micro(p, sets)
    assert all(a.dtype == b.dtype == np.int32 and np.array_equal(a, b) for w, g in zip(want, got) for a, b in zip(w, g))


def cast_concat(path: Path, topk: bool) -> Path:
    """isbnx's tail: class positions (TopK ``p % NC``, or an ArgMax over NC scores per box) cast to float and
    joined with float boxes (and TopK's scores): ``[1, rows, 4 (+1) + 1]``."""
    if topk:
        outs = [h.make_tensor_value_info("det", TP.FLOAT, [1, K, 6])]
        nodes = [h.make_node("TopK", ["scores", "k"], ["top", "p"], axis=1),
                 h.make_node("Div", ["p", "nc"], ["q"]), h.make_node("Mod", ["p", "nc"], ["c"], fmod=0),
                 h.make_node("Squeeze", ["q", "ax0"], ["qs"]),
                 h.make_node("Gather", ["boxes", "qs"], ["picked"], axis=1),
                 h.make_node("Unsqueeze", ["top", "ax2"], ["t3"]), h.make_node("Unsqueeze", ["c", "ax2"], ["c3"]),
                 h.make_node("Cast", ["c3"], ["cf"], to=TP.FLOAT),
                 h.make_node("Concat", ["picked", "t3", "cf"], ["det"], axis=-1)]
        inits = [_i64("k", [K]), _i64("nc", NC), _i64("ax0", [0]), _i64("ax2", [2])]
    else:
        outs = [h.make_tensor_value_info("det", TP.FLOAT, [1, N // NC, 5])]
        nodes = [h.make_node("Reshape", ["scores", "s43"], ["s"]),
                 h.make_node("ArgMax", ["s"], ["a"], axis=2, keepdims=1),
                 h.make_node("Cast", ["a"], ["cf"], to=TP.FLOAT),
                 h.make_node("Concat", ["boxes", "cf"], ["det"], axis=-1)]
        inits = [_i64("s43", [1, N // NC, NC])]
    return _model(nodes, outs, inits, path)


def _sqnr(ref: np.ndarray, got: np.ndarray) -> float:
    err = float(np.sum((ref.astype(np.float64) - got) ** 2))
    return float("inf") if err == 0 else 10 * np.log10(float(np.sum(ref.astype(np.float64) ** 2)) / err)


@pytest.mark.parametrize("topk", [True, False])
def test_cast_positions_to_float_then_concat(tmp_path: Path, topk: bool) -> None:
    """Positions cast to float are a CAST (int32 -> float32, then QUANTIZE) joined with the float boxes: LiteRT
    (rpi4-4gb) is within 30 dB SQNR of onnxruntime; on stm32h743 (ArgMax) micro equals tflite-micro exactly."""
    model = cast_concat(tmp_path / "c.onnx", topk)
    res = _convert(model, "rpi4-4gb", tmp_path / "out")
    assert "CAST" in {op.kind for op in res.graph.ops}
    for ref, got, _ in _runs(res, model):
        assert _sqnr(ref["det"], got["det"].reshape(ref["det"].shape)) > 30, (ref["det"], got["det"])
    if topk:
        return
    pytest.importorskip("tflite_micro.python.tflite_micro.runtime")
    from tflite_builder import run_micro, run_tflm

    res = _convert(model, "stm32h743", tmp_path / "mcu")
    sets = [qin for _, _, qin in _runs(res, model)]
    want, mine = run_tflm(Path(res.tflite_path), sets), run_micro(Path(res.tflite_path), sets)  # ref: tflite-micro
    assert all(a.dtype == b.dtype and np.array_equal(a, b) for w, g in zip(want, mine) for a, b in zip(w, g))


@pytest.mark.parametrize("op", ["FLOOR_DIV", "FLOOR_MOD"])
def test_micro_int32_floor_ops_equal_litert(tmp_path: Path, op: str) -> None:
    """micro's int32 FLOOR_DIV / FLOOR_MOD (broadcast, negative operands) equal LiteRT's exactly (tflite-micro has
    no int32 form: it refuses them); a zero divisor is refused by micro in one line."""
    from tflite_builder import T, build, run_litert, run_micro

    from edge_runtime.errors import InputError

    p = tmp_path / f"{op}.tflite"
    build(p, op, [T((3, 4), "int32"), T((4,), "int32")], [T((3, 4), "int32")])
    rng = np.random.default_rng(2)
    sets = [[rng.integers(-1000, 1000, (3, 4)).astype(np.int32), np.array([7, -7, 3, -2], np.int32)]
            for _ in range(4)] + [[np.array([[2 ** 31 - 1, -(2 ** 31), 0, -1]] * 3, np.int32),
                                   np.array([2, 3, -5, 4], np.int32)]]
    want, got = run_litert(p, sets), run_micro(p, sets)
    assert all(a.dtype == b.dtype == np.int32 and np.array_equal(a, b) for w, g in zip(want, got) for a, b in zip(w, g))
    with pytest.raises(InputError) as e:
        run_micro(p, [[sets[0][0], np.array([1, 0, 1, 1], np.int32)]])
    assert op in str(e.value) and "\n" not in str(e.value)
