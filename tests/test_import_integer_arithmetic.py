"""Integer arithmetic on run-time indices (TopK/ArgMax positions): Add/Sub/Mul -> int32 ADD/SUB/MUL, Div of a
non-negative position by a positive constant -> FLOOR_DIV, Mod -> FLOOR_MOD (isbnx's ``idx // nc``, ``idx % nc``).

Hand-built ONNX models (``onnx.helper``) convert through :func:`converters.pipeline.convert_model`; the int32
outputs must equal onnxruntime's on the float source model exactly (``np.array_equal``) on LiteRT, and on micro
equal tflite-micro (ADD/SUB/MUL int32; TFLite Micro has no int32 FLOOR_DIV/FLOOR_MOD, so those are refused on its
profiles in one line). Div of a possibly negative integer, and float math on a Cast of positions, are refused in
one line.
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
    """Div of ``p - 5`` (possibly negative: ONNX truncates, FLOOR_DIV floors), Div by a run-time integer, and
    float math on a Cast of the positions are refused in one line each."""
    top = h.make_node("TopK", ["scores", "k"], ["top", "p"], axis=1)
    inits = [_i64("k", [K]), _i64("five", 5), _i64("nc", NC)]
    msg = _refusal([top, h.make_node("Sub", ["p", "five"], ["d"]), h.make_node("Div", ["d", "nc"], ["y"])], inits,
                   tmp=tmp_path)
    assert "ONNX node 'y' (Div): integer Div of 'd' by 'nc': ONNX's Div truncates toward zero" in msg
    msg = _refusal([top, h.make_node("Div", ["p", "p"], ["y"])], inits, tmp=tmp_path)
    assert "integer Div of 'p' by 'p'" in msg
    cast = [top, h.make_node("Cast", ["p"], ["pf"], to=TP.FLOAT), h.make_node("Add", ["pf", "top"], ["y"])]
    assert "(Add): Add of integer indices with the non-integer activation 'top'" in _refusal(cast, inits, TP.FLOAT,
                                                                                            tmp=tmp_path)
    joined = [top, h.make_node("Cast", ["p"], ["pf"], to=TP.FLOAT), h.make_node("Concat", ["top", "pf"], ["y"], axis=1)]
    msg = _refusal(joined, inits, TP.FLOAT, tmp=tmp_path, width=2 * K)
    assert "(Concat): Concat of integer indices with the float tensor 'top' is not supported" in msg


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
