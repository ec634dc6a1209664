"""Gather / GatherElements / GatherND whose indices are computed in the graph (TopK indices, ArgMax) on run-time
data: detector post-processing (``TopK(scores) -> GatherElements(boxes)``, ``ArgMax -> Gather``, ``TopK ->
GatherND``).

Hand-built ONNX models (``onnx.helper``) convert through :func:`converters.pipeline.convert_model` for rpi4-4gb
(TopK k > 1 is TOPK_V2, which only LiteRT runs) and for stm32h743 (TopK k = 1 and ArgMax: ARG_MAX, which TFLite
Micro runs). References: onnxruntime on the float source model (the gathered indices must agree exactly; the
gathered int8 values are the dequantized data, within one data scale step), tflite-micro (micro must equal it,
``np.array_equal``). Float indices, and indices from a TopK over more positions than the gathered axis, are refused
in one line; an out-of-range run-time index makes micro refuse the run in one line.
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
from edge_runtime.errors import InputError, UnsupportedModelError  # noqa: E402
from test_import_ops_common import save_model  # noqa: E402

N, K = 16, 5  # candidates, kept boxes




def _i64(name: str, v) -> object:  # type: ignore[no-untyped-def]
    return nh.from_array(np.asarray(v, np.int64), name)


def _io(k: int) -> tuple[list, list]:
    """Inputs boxes [1, N, 4] and scores [1, N]; outputs: the gathered boxes [1, k, 4] and the TopK values."""
    ins = [h.make_tensor_value_info("boxes", TP.FLOAT, [1, N, 4]), h.make_tensor_value_info("scores", TP.FLOAT, [1, N])]
    outs = [h.make_tensor_value_info("picked", TP.FLOAT, [1, k, 4]), h.make_tensor_value_info("top", TP.FLOAT, [1, k])]
    return ins, outs


def topk_gather_elements(path: Path, k: int = K) -> Path:
    """YOLO/DETR post-processing: ``TopK(scores) -> Unsqueeze -> Cast -> Expand [1, k, 4] -> GatherElements(boxes,
    axis=1)``."""
    ins, outs = _io(k)
    nodes = [h.make_node("TopK", ["scores", "k"], ["top", "idx"], axis=1),
             h.make_node("Unsqueeze", ["idx", "ax2"], ["idx3"]), h.make_node("Cast", ["idx3"], ["idx32"], to=TP.INT32),
             h.make_node("Expand", ["idx32", "shape"], ["idx_b"]),
             h.make_node("GatherElements", ["boxes", "idx_b"], ["picked"], axis=1)]
    return save_model(path, nodes, ins, outs, [_i64("k", [k]), _i64("ax2", [2]), _i64("shape", [1, k, 4])])


def topk_gather_nd(path: Path, k: int = K) -> Path:
    """``TopK(scores) -> Reshape [1, k, 1] -> GatherND(boxes reshaped to [N, 4])`` (batch_dims 0)."""
    ins, outs = _io(k)
    nodes = [h.make_node("TopK", ["scores", "k"], ["top", "idx"], axis=1),
             h.make_node("Reshape", ["idx", "ishape"], ["tuples"]), h.make_node("Reshape", ["boxes", "bshape"], ["b2"]),
             h.make_node("GatherND", ["b2", "tuples"], ["picked"])]
    return save_model(path, nodes, ins, outs, [_i64("k", [k]), _i64("ishape", [1, k, 1]), _i64("bshape", [N, 4])])


def argmax_gather(path: Path) -> Path:
    """``boxes[:, argmax(scores)]``: ArgMax (keepdims 0) -> Gather(boxes, axis=1) -> [1, 1, 4]; a second output
    gathers the 4-D view ``boxes[1, 4, N, 1]`` along axis 2 by the kept-dims ArgMax (a 4-D NHWC output)."""
    ins = [h.make_tensor_value_info("boxes", TP.FLOAT, [1, N, 4]), h.make_tensor_value_info("scores", TP.FLOAT, [1, N])]
    outs = [h.make_tensor_value_info("picked", TP.FLOAT, [1, 1, 4]),
            h.make_tensor_value_info("picked4", TP.FLOAT, [1, 4, 1, 1])]
    nodes = [h.make_node("ArgMax", ["scores"], ["best"], axis=1, keepdims=0),
             h.make_node("Gather", ["boxes", "best"], ["picked"], axis=1),
             h.make_node("Transpose", ["boxes"], ["bt"], perm=[0, 2, 1]),
             h.make_node("Reshape", ["bt", "s4"], ["b4"]),
             h.make_node("Gather", ["b4", "best"], ["picked4"], axis=2)]
    return save_model(path, nodes, ins, outs, [_i64("s4", [1, 4, N, 1])])


def _data(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Boxes and scores in [0, 1), one value per step of 1/N along the candidates (a permutation, jittered within
    the step): no two candidates within int8 rounding, so the gathered positions are exact."""
    boxes = np.stack([np.stack([rng.permutation(N) for _ in range(4)], -1) for _ in range(n)])[:, None]
    boxes = (boxes + rng.uniform(0.25, 0.75, boxes.shape)).astype(np.float32) / N
    scores = np.stack([rng.permutation(N) for _ in range(n)])[:, None, :].astype(np.float32) / N
    return boxes, scores


def topk_tuples(path: Path, k: int = K) -> Path:
    """GatherElements whose positions differ across the last axis (index tuples built at run time): columns 0-1
    of the top-k boxes in score order, columns 2-3 in reverse order (Slice step -1, Concat of the positions)."""
    ins, outs = _io(k)
    nodes = [h.make_node("TopK", ["scores", "k"], ["top", "idx"], axis=1),
             h.make_node("Unsqueeze", ["idx", "ax2"], ["u"]),
             h.make_node("Slice", ["u", "st", "en", "ax1", "step"], ["r"]),
             h.make_node("Concat", ["u", "u", "r", "r"], ["idx_b"], axis=2),
             h.make_node("GatherElements", ["boxes", "idx_b"], ["picked"], axis=1)]
    return save_model(path, nodes, ins, outs, [_i64("k", [k]), _i64("ax2", [2]), _i64("st", [-1]), _i64("en", [-k - 1]),
                                          _i64("ax1", [1]), _i64("step", [-1])])


def topk_tile(path: Path, k: int = K) -> Path:
    """isbnx's form: ``TopK -> Unsqueeze -> Tile [1, 1, 4] -> GatherElements(boxes, axis=1)``."""
    ins, outs = _io(k)
    nodes = [h.make_node("TopK", ["scores", "k"], ["top", "idx"], axis=1),
             h.make_node("Unsqueeze", ["idx", "ax2"], ["u"]), h.make_node("Tile", ["u", "reps"], ["idx_b"]),
             h.make_node("GatherElements", ["boxes", "idx_b"], ["picked"], axis=1)]
    return save_model(path, nodes, ins, outs, [_i64("k", [k]), _i64("ax2", [2]), _i64("reps", [1, 1, 4])])


def _check(model: Path, profile: str, out: Path, micro: bool, kind: str = "") -> None:
    """Convert for ``profile``; LiteRT's gathered indices equal onnxruntime's and its values are onnxruntime's
    within one data scale step; micro equals tflite-micro (``np.array_equal``) when ``micro``."""
    from converters.report import litert_interpreter

    rng = np.random.default_rng(0)
    calib = dict(zip(("boxes", "scores"), _data(rng, 32)))
    held = dict(zip(("boxes", "scores"), _data(rng, 8)))
    res = convert_model(model, profile, calib, out, plot=False, held_out=held)
    for fmt in ("tflite", "onnx"):  # held-out: the written .tflite on LiteRT, the QDQ .onnx on onnxruntime
        assert res.report["held_out"][fmt]["output_sqnr_db"] > 40, (fmt, res.report["held_out"][fmt])
    kinds = {op.kind for op in res.graph.ops}
    assert {"GATHER", "GATHER_ND"} & kinds and (not kind or kind in kinds), kinds
    ints = integer_tensors(res.graph)
    assert ints and all(res.plan.tensor_dtype(t) == "int32" for t in ints)  # indices are never quantized
    lite = TFLiteRunner(res.tflite_path)
    it = litert_interpreter(res.tflite_path)
    box_scale = next(d["quantization"][0] for d in it.get_input_details() if "boxes" in d["name"])
    src = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    names = [o.name for o in src.get_outputs()]
    order = [i["name"] for i in lite.inps]
    boxes, scores = _data(rng, 8)
    sets = []
    for b, s in zip(boxes, scores):
        ref = dict(zip(names, src.run(None, {"boxes": b, "scores": s})))
        feeds = {"boxes": b, "scores": s}
        got = dict(zip([o["name"] for o in lite.outs], lite.run([feeds[n] for n in order])))
        for name in names:
            if name == "top":
                continue
            g = got[name].reshape(ref[name].shape)
            # the gathered boxes are the same candidates (exact index agreement) within one step of int8 data
            assert np.abs(g - ref[name]).max() <= box_scale * 1.01, (name, np.abs(g - ref[name]).max(), box_scale)
            cols = b.reshape(N, 4)  # which candidate each gathered value is, per box coordinate
            rows = np.abs(cols[:, None, :] - ref[name].reshape(-1, 4)[None]).argmin(0)
            rows_got = np.abs(cols[:, None, :] - g.reshape(-1, 4)[None]).argmin(0)
            assert np.array_equal(rows, rows_got), (name, rows, rows_got)  # exact index agreement
        sets.append([TFLiteRunner._q(feeds[n], i).reshape(i["shape"]) for n, i in zip(order, lite.inps)])
    if micro:
        pytest.importorskip("tflite_micro.python.tflite_micro.runtime")
        from tflite_builder import run_micro, run_tflm

        want, got = run_tflm(Path(res.tflite_path), sets), run_micro(Path(res.tflite_path), sets)  # ref: tflite-micro
        assert all(len(w) == len(g) and all(a.dtype == b.dtype and np.array_equal(a, b) for a, b in zip(w, g))
                   for w, g in zip(want, got))


@pytest.mark.parametrize("build, kind", [(topk_gather_elements, "GATHER"), (topk_tile, "GATHER"),
                                         (topk_tuples, "GATHER_ND"), (topk_gather_nd, "GATHER_ND"),
                                         (argmax_gather, "GATHER")])
def test_litert_profile(tmp_path: Path, build, kind) -> None:  # type: ignore[no-untyped-def]
    """TopK k=5 (TOPK_V2) on rpi4-4gb: an expanded/tiled position is one GATHER, differing positions GATHER_ND
    of run-time index tuples."""
    _check(build(tmp_path / f"{build.__name__}.onnx"), "rpi4-4gb", tmp_path / "out", micro=False, kind=kind)


@pytest.mark.parametrize("build, k", [(topk_gather_elements, 1), (topk_tuples, 1), (topk_gather_nd, 1),
                                      (argmax_gather, None)])
def test_mcu_profile_micro_equals_tflite_micro(tmp_path: Path, build, k) -> None:  # type: ignore[no-untyped-def]
    """TopK k=1 (REDUCE_MAX + ARG_MAX) and ArgMax feed GATHER / GATHER_ND of int8 data on stm32h743."""
    model = build(tmp_path / "m.onnx", k) if k else build(tmp_path / "m.onnx")
    _check(model, "stm32h743", tmp_path / "out", micro=True)


def _post(nodes: list, inits: list) -> object:
    """A model boxes [1, N, 4], scores [1, N] -> picked [1, K, 4] made of ``nodes``."""
    ins = [h.make_tensor_value_info("boxes", TP.FLOAT, [1, N, 4]), h.make_tensor_value_info("scores", TP.FLOAT, [1, N])]
    m = h.make_model(h.make_graph(nodes, "post", ins, [h.make_tensor_value_info("picked", TP.FLOAT, [1, K, 4])], inits),
                     opset_imports=[h.make_opsetid("", 13)])
    m.ir_version = 8
    return m


def _refusal(model: object) -> str:
    with pytest.raises(UnsupportedModelError) as e:
        import_onnx(model)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_float_and_arithmetic_indices_are_refused_in_one_line() -> None:
    """Indices cast from float values (TopK's values, a Floor of the boxes) are refused at the Cast; indices from
    integer arithmetic on TopK's positions that can leave the axis (``idx + 1``: 1..16 on 16 positions) are refused
    at the gather, naming the range."""
    tail = [h.make_node("Unsqueeze", ["idx1", "ax2"], ["idx3"]), h.make_node("Expand", ["idx3", "shape"], ["idx_b"]),
            h.make_node("GatherElements", ["boxes", "idx_b"], ["picked"], axis=1)]
    inits = [_i64("k", [K]), _i64("one", [1]), _i64("ax2", [2]), _i64("shape", [1, K, 4])]
    values = [h.make_node("TopK", ["scores", "k"], ["top", "idx"], axis=1),
              h.make_node("Cast", ["top"], ["idx1"], to=TP.INT64)]
    assert "ONNX node 'idx1' (Cast): Cast of an activation to INT64 is not supported" in _refusal(_post(values + tail,
                                                                                                       inits))
    added = [h.make_node("TopK", ["scores", "k"], ["top", "idx"], axis=1), h.make_node("Add", ["idx", "one"], ["idx1"])]
    msg = _refusal(_post(added + tail, inits))
    assert "indices 'idx_b' (integer arithmetic on TopK/ArgMax positions) range over 1..16 but axis 1 of 'boxes' " \
           "has positions 0..15" in msg
    floor = [h.make_node("Floor", ["boxes"], ["f"]), h.make_node("Cast", ["f"], ["idx"], to=TP.INT64),
             h.make_node("Slice", ["idx", "st", "en", "ax"], ["s"]),
             h.make_node("GatherElements", ["boxes", "s"], ["picked"], axis=1)]
    assert "(Cast): Cast of an activation to INT64" in _refusal(_post(floor, [_i64("st", [0]), _i64("en", [K]),
                                                                             _i64("ax", [1])]))


def test_topk_over_more_positions_than_the_axis_is_refused(tmp_path: Path) -> None:
    """TopK over 16 scores gathering from 12 boxes: positions 12..15 have no box; refused at import in one line."""
    ins = [h.make_tensor_value_info("boxes", TP.FLOAT, [1, 12, 4]),
           h.make_tensor_value_info("scores", TP.FLOAT, [1, N])]
    outs = [h.make_tensor_value_info("picked", TP.FLOAT, [1, K, 4])]
    nodes = [h.make_node("TopK", ["scores", "k"], ["top", "idx"], axis=1),
             h.make_node("Unsqueeze", ["idx", "ax2"], ["idx3"]), h.make_node("Expand", ["idx3", "shape"], ["idx_b"]),
             h.make_node("GatherElements", ["boxes", "idx_b"], ["picked"], axis=1)]
    g = h.make_graph(nodes, "short", ins, outs, [_i64("k", [K]), _i64("ax2", [2]), _i64("shape", [1, K, 4])])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 13)])
    m.ir_version = 8
    with pytest.raises(UnsupportedModelError) as e:
        import_onnx(m)
    msg = str(e.value)
    assert "\n" not in msg and "positions among 16 (a TopK/ArgMax result)" in msg and "positions 12..15" in msg


def test_out_of_range_index_is_refused_by_micro_in_one_line(tmp_path: Path) -> None:
    """The GATHER written for ArgMax -> Gather, with its int32 positions fed as a graph input (so a position can
    be out of range): micro refuses the run in one line naming GATHER; tflite-micro also fails."""
    pytest.importorskip("tflite_micro.python.tflite_micro.runtime")
    from tflite_builder import T, build, opts, run_micro, run_tflm

    p = tmp_path / "g.tflite"
    build(p, "GATHER", [T((1, N, 4), "int8", scale=1 / 255, zp=-128), T((1,), "int32")],
          [T((1, 1, 4), "int8", scale=1 / 255, zp=-128)], opts("GatherOptions", axis=1))
    x = np.arange(N * 4, dtype=np.int8).reshape(1, N, 4)
    ok = [[x, np.array([N - 1], np.int32)]]
    assert all(np.array_equal(a, b) for w, g in zip(run_tflm(p, ok), run_micro(p, ok)) for a, b in zip(w, g))
    for bad in (N, -1):
        with pytest.raises(InputError) as e:
            run_micro(p, [[x, np.array([bad], np.int32)]])
        assert "GATHER" in str(e.value) and "\n" not in str(e.value)
        with pytest.raises(RuntimeError):  # reference: tflite-micro fails too
            run_tflm(p, [[x, np.array([bad], np.int32)]])



def token_positions(path: Path) -> Path:
    """``flatten(relu(hidden)[:, pos]) @ W``: an int64 model input ``pos`` gathers rows of run-time float data (the
    masked-token / CLS read of a text model)."""
    rng = np.random.default_rng(3)
    ins = [h.make_tensor_value_info("hidden", TP.FLOAT, [1, N, 4]), h.make_tensor_value_info("pos", TP.INT64, [1, 3])]
    nodes = [h.make_node("Relu", ["hidden"], ["r"]), h.make_node("Gather", ["r", "pos"], ["g"], axis=1),
             h.make_node("Flatten", ["g"], ["f"], axis=1), h.make_node("MatMul", ["f", "W"], ["y"])]
    return save_model(path, nodes, ins, [h.make_tensor_value_info("y", TP.FLOAT, [1, 5])],
                 [nh.from_array(rng.normal(0, 0.5, (12, 5)).astype(np.float32), "W")])


def test_integer_input_positions_in_runtime_data(tmp_path: Path) -> None:
    """An integer model input indexing run-time data converts on stm32h743 (held-out SQNR of both written models
    vs onnxruntime float), its index limit is the gathered axis, micro equals tflite-micro, and an out-of-range
    position fed at run time is refused by micro in one line naming GATHER (tflite-micro fails too)."""
    pytest.importorskip("tflite_micro.python.tflite_micro.runtime")
    from tflite_builder import run_micro, run_tflm

    from converters.ir import index_limits

    model = token_positions(tmp_path / "tok.onnx")
    rng = np.random.default_rng(5)

    def data(n: int) -> dict[str, np.ndarray]:
        return {"hidden": rng.normal(0, 1, (n, 1, N, 4)).astype(np.float32),
                "pos": rng.integers(0, N, (n, 1, 3)).astype(np.int64)}

    res = convert_model(model, "stm32h743", data(48), tmp_path / "out", plot=False, held_out=data(16))
    for fmt in ("tflite", "onnx"):
        assert res.report["held_out"][fmt]["output_sqnr_db"] > 25, (fmt, res.report["held_out"][fmt])
    assert index_limits(res.graph) == {"pos": N}
    lite = TFLiteRunner(res.tflite_path)
    order = [i["name"] for i in lite.inps]
    x = data(3)
    sets = [[TFLiteRunner._q(x["hidden"][j], i).reshape(i["shape"]) if n == "hidden" else
             x["pos"][j].astype(np.int32) for n, i in zip(order, lite.inps)] for j in range(3)]
    want, got = run_tflm(Path(res.tflite_path), sets), run_micro(Path(res.tflite_path), sets)  # ref: tflite-micro
    assert all(np.array_equal(a, b) for w, g in zip(want, got) for a, b in zip(w, g))
    bad = [[s if n == "hidden" else np.array([[0, N, 1]], np.int32) for n, s in zip(order, sets[0])]]
    with pytest.raises(InputError) as e:
        run_micro(Path(res.tflite_path), bad)
    assert "GATHER" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(RuntimeError):
        run_tflm(Path(res.tflite_path), bad)


def test_topk_over_more_positions_than_table_rows_is_refused() -> None:
    """TopK k=5 over 16 scores looking up rows of a 12-row constant table: one line naming the GATHER."""
    ins = [h.make_tensor_value_info("scores", TP.FLOAT, [1, N])]
    nodes = [h.make_node("TopK", ["scores", "k"], ["top", "idx"], axis=1),
             h.make_node("Gather", ["emb", "idx"], ["picked"], axis=0)]
    emb = nh.from_array(np.random.default_rng(0).normal(0, 1, (12, 4)).astype(np.float32), "emb")
    g = h.make_graph(nodes, "emb", ins, [h.make_tensor_value_info("picked", TP.FLOAT, [1, K, 4])],
                     [_i64("k", [K]), emb])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 13)])
    m.ir_version = 8
    msg = _refusal(m)
    assert "op 'picked' (GATHER) looks up a TOPK_V2 position among 16 in a table of 12 rows; positions 12..15" in msg
