"""ONNX TopK and TFLite TOPK_V2 through the converter: import, int8 TFLite and QDQ ONNX, micro.

References: onnxruntime on the float ONNX model (values ``allclose``, indices ``np.array_equal`` for the
float IR; SQNR and exact-match rates for the int8 models), LiteRT on the float .tflite, and LiteRT's
reference kernels for micro on the int8 .tflite (``np.array_equal`` on values and indices: tflite-micro
has no TOPK_V2). k = 1 is written as REDUCE_MAX + ARG_MAX (TFLite Micro ops); k > 1 as TOPK_V2, refused
on TFLite Micro profiles in one line.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

from converters.calibrate import calibrate, float_session, run_float
from converters.calibration_data import open_calibration
from converters.importers.onnx import import_onnx
from converters.importers.tflite import import_tflite
from converters.ir import unquantized_tensors
from converters.quantize import plan_quantization
from converters.report import OnnxRunner, TFLiteRunner
from converters.writers.onnx import write_onnx
from converters.writers.tflite import write_tflite
from edge_runtime.errors import UnsupportedModelError
from tflite_builder import ModelFolder, T, build, litert, opts, run_micro

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

CALIB, HELD_OUT = 24, 12
FOLDER = ModelFolder("import_topk_")


@pytest.fixture(scope="module", autouse=True)
def _folder():  # type: ignore[no-untyped-def]
    yield
    FOLDER.remove()


def conv_model(nodes: list, outs: dict[str, tuple[int, list[int]]], path: str, opset: int = 13,
               inits: list | None = None) -> str:
    """x [1, 3, 8, 10] -> Conv (6 channels, 'c') -> ``nodes``; ``outs``: name -> (ONNX type, shape)."""
    rng = np.random.default_rng(4)
    w = numpy_helper.from_array((rng.standard_normal((6, 3, 3, 3)) * 0.4).astype(np.float32), "w")
    conv = helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1])
    g = helper.make_graph([conv] + nodes, "topk", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 10])],
                          [helper.make_tensor_value_info(k, t, s) for k, (t, s) in outs.items()], [w] + (inits or []))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, path)
    return path


def k_const(name: str, k: int) -> Any:
    return helper.make_tensor(name, TensorProto.INT64, [1], [k])


def run_litert_ref(path: str, qs: list[np.ndarray]) -> list[list[np.ndarray]]:
    """LiteRT's reference kernels (BUILTIN_REF, one thread) on already-quantized inputs: every output."""
    it = litert.Interpreter(model_path=path, num_threads=1,
                            experimental_op_resolver_type=litert.OpResolverType.BUILTIN_REF)
    it.allocate_tensors()
    out = []
    for q in qs:
        it.set_tensor(it.get_input_details()[0]["index"], q)
        it.invoke()
        out.append([np.array(it.get_tensor(d["index"])) for d in it.get_output_details()])
    return out


def sqnr(ref: np.ndarray, got: np.ndarray) -> float:
    noise = float(np.mean((ref.astype(np.float64) - got) ** 2))
    return 99.0 if noise == 0 else 10 * np.log10(float(np.mean(ref.astype(np.float64) ** 2)) / noise)


def convert_and_check(path: str, tmp: Any) -> dict[str, float]:
    """Import ``path``; float IR == onnxruntime; int8 .tflite and QDQ .onnx scored against onnxruntime;
    micro == LiteRT reference kernels on the int8 .tflite. Returns {output: SQNR dB or exact-match rate}."""
    graph = import_onnx(path)
    ints = set(unquantized_tensors(graph))
    data = np.random.default_rng(0).random((CALIB + HELD_OUT, 1, 3, 8, 10), dtype=np.float32) * 2 - 1
    sess, ref_sess = float_session(graph), ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    refs: dict[str, list] = {o: [] for o in graph.outputs}
    for x in data[CALIB:]:
        got = run_float(sess, graph, graph.to_ir_layout("x", x))
        for o, want in zip(graph.outputs, ref_sess.run(None, {"x": x})):
            want = want.transpose(0, 2, 3, 1) if want.ndim == 4 else want
            if o in ints:
                assert np.array_equal(got[o].reshape(want.shape), want), f"float IR indices {o} differ from onnxruntime"
            else:
                np.testing.assert_allclose(got[o].reshape(want.shape), want, rtol=1e-5, atol=1e-5)
            refs[o].append(want.reshape(-1))
    plan = plan_quantization(graph, calibrate(graph, open_calibration(data[:CALIB], (1, 3, 8, 10), "x"), "minmax",
                                              session=sess))
    tfl, qdq = os.path.join(str(tmp), "m_int8.tflite"), os.path.join(str(tmp), "m_int8.onnx")
    write_tflite(graph, plan, tfl)
    write_onnx(graph, plan, qdq)
    lite, ort_q = TFLiteRunner(tfl), OnnxRunner(qdq, plan, graph)
    scores: dict[str, float] = {}
    runs = {"tflite": [lite.run(graph.to_ir_layout("x", x)) for x in data[CALIB:]],
            "onnx": [ort_q.run(x) for x in data[CALIB:]]}
    for k, o in enumerate(graph.outputs):
        ref = np.stack(refs[o])
        for where, outs in runs.items():
            got = np.stack([r[k].reshape(-1) for r in outs])
            if o in ints:
                score = float(np.mean(got == ref))
                assert score >= 0.8, f"{where} indices {o}: {score:.1%} exact"
            else:
                score = sqnr(ref, got)
                assert score >= 30.0, f"{where} values {o}: {score:.1f} dB"
            scores[f"{where}:{o}"] = score
    qs = [TFLiteRunner._q(graph.to_ir_layout("x", x), lite.inp) for x in data[CALIB:CALIB + 4]]
    expect = run_litert_ref(tfl, qs)
    got = run_micro(tfl, [[q] for q in qs])
    for s, (g, e) in enumerate(zip(got, expect)):
        for a, b in zip(g, e):
            assert a.dtype == b.dtype and np.array_equal(a, b), f"micro != LiteRT on sample {s}"
    return scores


def test_topk_k_gt_1_last_axis_channel_axis_and_k1(tmp_path):
    """k=5 on the last axis of a 3-D tensor, k=3 over the channels of the 4-D conv output (the IR's last
    axis), k=1 (REDUCE_MAX + ARG_MAX): values and int64 indices, int8 end to end."""
    nodes = [helper.make_node("Reshape", ["c", "shape3"], ["r3"], name="to3d"),
             helper.make_node("TopK", ["r3", "k5"], ["v5", "i5"], name="top5", axis=-1),
             helper.make_node("TopK", ["c", "k3"], ["v3", "i3"], name="top3_channels", axis=1),
             helper.make_node("TopK", ["r3", "k1"], ["v1", "i1"], name="top1", axis=2)]
    inits = [helper.make_tensor("shape3", TensorProto.INT64, [3], [1, 6, 80]), k_const("k5", 5), k_const("k3", 3),
             k_const("k1", 1)]
    outs = {"v5": (TensorProto.FLOAT, [1, 6, 5]), "i5": (TensorProto.INT64, [1, 6, 5]),
            "v3": (TensorProto.FLOAT, [1, 3, 8, 10]), "i3": (TensorProto.INT64, [1, 3, 8, 10]),
            "v1": (TensorProto.FLOAT, [1, 6, 1]), "i1": (TensorProto.INT64, [1, 6, 1])}
    path = conv_model(nodes, outs, str(tmp_path / "topk.onnx"), inits=inits)
    counts = import_onnx(path).op_counts()
    assert counts.get("TOPK_V2") == 2 and counts.get("ARG_MAX") == 1
    scores = convert_and_check(path, tmp_path)
    assert set(scores) == {f"{w}:{o}" for w in ("tflite", "onnx") for o in outs}


def test_topk_attribute_k_and_moved_axis_values_only(tmp_path):
    """Opset 9 (k an attribute) over an axis that is not last: the values are transposed around TOPK_V2
    (the unused indices need no transpose)."""
    nodes = [helper.make_node("Reshape", ["c", "shape3"], ["r3"], name="to3d"),
             helper.make_node("TopK", ["r3"], ["v", "i"], name="top_rows", axis=1, k=4),
             helper.make_node("Relu", ["v"], ["y"], name="relu")]
    inits = [helper.make_tensor("shape3", TensorProto.INT64, [3], [1, 6, 80])]
    path = conv_model(nodes, {"y": (TensorProto.FLOAT, [1, 4, 80])}, str(tmp_path / "topk9.onnx"), opset=9, inits=inits)
    assert import_onnx(path).op_counts().get("TOPK_V2") == 1
    convert_and_check(path, tmp_path)


def test_topk_sorted0_gives_the_sorted_graph(tmp_path):
    """sorted=0 lets ONNX return any order (onnxruntime then returns another one): the import is TOPK_V2's
    sorted order, the same graph as sorted=1."""
    graphs = []
    for flag in (0, 1):
        node = helper.make_node("TopK", ["c", "k"], ["v", "i"], name="the_topk", axis=1, sorted=flag)
        out = [1, 3, 8, 10]
        path = conv_model([node], {"v": (TensorProto.FLOAT, out), "i": (TensorProto.INT64, out)},
                          str(tmp_path / f"sorted{flag}.onnx"), inits=[k_const("k", 3)])
        graphs.append([(op.kind, op.attrs) for op in import_onnx(path).ops])
    assert graphs[0] == graphs[1] and ("TOPK_V2", {"k": 3}) in graphs[0]


@pytest.mark.parametrize("attrs, k, needle", [
    ({"axis": -1, "largest": 0}, 2, "largest=0"),
    ({"axis": 2}, 2, "needs a transpose of its int32 indices")])
def test_topk_refusals_are_one_line(tmp_path, attrs: dict, k: int, needle: str):
    node = helper.make_node("TopK", ["c", "k"], ["v", "i"], name="the_topk", **attrs)
    out = [1, 6, 8, 10]
    path = conv_model([node], {"v": (TensorProto.FLOAT, out), "i": (TensorProto.INT64, out)},
                      str(tmp_path / "bad.onnx"), inits=[k_const("k", k)])
    with pytest.raises(UnsupportedModelError) as e:
        import_onnx(path)
    msg = str(e.value)
    assert needle in msg and "the_topk" in msg and "\n" not in msg


def test_tflite_topk_v2_import_and_mcu_refusal(tmp_path):
    """A float .tflite with TOPK_V2 (k=3) imports as TOPK_V2 and equals LiteRT's float run; profiles that
    run TFLite Micro refuse it in one line, LiteRT profiles keep it."""
    from converters.pipeline import _refuse_litert_only_ops
    from device_profiles import load_profile

    path = build(FOLDER.path("TOPK_V2"), "TOPK_V2", [T([2, 9], "float32"), T([], "int32", data=np.array(3, np.int32))],
                 [T([2, 3], "float32"), T([2, 3], "int32")], opts("TopKV2Options"))
    graph = import_tflite(str(path))
    assert [op.kind for op in graph.ops] == ["TOPK_V2"] and unquantized_tensors(graph)[graph.outputs[1]] == "int32"
    x = np.random.default_rng(5).standard_normal((2, 9)).astype(np.float32)
    got = run_float(float_session(graph), graph, x)
    it = litert.Interpreter(model_path=str(path))
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    want = [it.get_tensor(d["index"]) for d in it.get_output_details()]
    assert np.array_equal(got[graph.outputs[0]], want[0]) and np.array_equal(got[graph.outputs[1]], want[1])
    _refuse_litert_only_ops(path, graph, load_profile("rpi4-4gb"))
    with pytest.raises(UnsupportedModelError) as e:
        _refuse_litert_only_ops(path, graph, load_profile("stm32h743"))
    assert "TOPK_V2" in str(e.value) and "TFLite Micro" in str(e.value) and "\n" not in str(e.value)


def test_topk_stays_int8_when_float_is_asked(tmp_path):
    """TOPK_V2 copies values (its writer has no float-island form): a float precision asked for it is
    dropped, and the written model still runs on LiteRT with two outputs."""
    from converters.quantize import op_key

    nodes = [helper.make_node("Reshape", ["c", "shape3"], ["r3"], name="to3d"),
             helper.make_node("TopK", ["r3", "k5"], ["v5", "i5"], name="top5", axis=-1)]
    inits = [helper.make_tensor("shape3", TensorProto.INT64, [3], [1, 6, 80]), k_const("k5", 5)]
    path = conv_model(nodes, {"v5": (TensorProto.FLOAT, [1, 6, 5]), "i5": (TensorProto.INT64, [1, 6, 5])},
                      str(tmp_path / "f.onnx"), inits=inits)
    graph = import_onnx(path)
    top = next(op for op in graph.ops if op.kind == "TOPK_V2")
    data = np.random.default_rng(1).random((8, 1, 3, 8, 10), dtype=np.float32)
    ranges = calibrate(graph, open_calibration(data, (1, 3, 8, 10), "x"), "minmax")
    plan = plan_quantization(graph, ranges, precision={op_key(top): "float"})
    assert plan.op_dtype(top) == "int8"
    tfl = os.path.join(str(tmp_path), "f_int8.tflite")
    write_tflite(graph, plan, tfl)
    outs = TFLiteRunner(tfl).run(graph.to_ir_layout("x", data[0]))
    assert [o.shape for o in outs] == [(1, 6, 5), (1, 6, 5)]
