"""Float models with several inputs: calibration data forms, conversion to int8 .tflite + QDQ .onnx, the report,
micro == tflite-micro on the result, and the one-line refusals of bad multi-input data.

The models are built in memory with ``onnx.helper``: two convs concatenated (two NCHW image inputs), an Add of
two inputs of different shapes (broadcast), an image + vector + vector net (MatMul/Add), and a float input next
to an integer index input (Gather). References: onnxruntime on the source model (float), tflite-micro (int8).
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

from converters.calibration_data import CalibrationDataError, open_calibration_inputs  # noqa: E402
from converters.cli import main as edge_convert  # noqa: E402
from converters.pipeline import convert_model  # noqa: E402
from converters.quality.metrics import sqnr_db  # noqa: E402
from converters.report import TFLiteRunner  # noqa: E402
from edge_runtime.errors import ConfigError  # noqa: E402

PROFILE = "rpi4-4gb"


def _save(tmp: Path, name: str, nodes: list, inputs: list, outputs: list, inits: list) -> Path:
    g = h.make_graph(nodes, name, inputs, outputs, inits)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 13)])
    m.ir_version = 8
    path = tmp / f"{name}.onnx"
    onnx.save(m, str(path))
    return path


def _w(rng: np.random.Generator, name: str, shape: tuple[int, ...], std: float = 0.3):
    return nh.from_array(rng.normal(0, std, shape).astype(np.float32), name)


def two_convs(tmp: Path, seed: int = 0) -> Path:
    """a [1,3,8,8] -> Conv -> Relu, b [1,2,8,8] -> Conv; Concat on channels -> 1x1 Conv."""
    rng = np.random.default_rng(seed)
    nodes = [h.make_node("Conv", ["a", "w1"], ["c1"], pads=[1, 1, 1, 1]), h.make_node("Relu", ["c1"], ["r1"]),
             h.make_node("Conv", ["b", "w2"], ["c2"], pads=[1, 1, 1, 1]),
             h.make_node("Concat", ["r1", "c2"], ["cat"], axis=1), h.make_node("Conv", ["cat", "w3"], ["y"])]
    return _save(tmp, "two_convs", nodes,
                 [h.make_tensor_value_info("a", TP.FLOAT, [1, 3, 8, 8]), h.make_tensor_value_info("b", TP.FLOAT, [1, 2, 8, 8])],
                 [h.make_tensor_value_info("y", TP.FLOAT, None)],
                 [_w(rng, "w1", (4, 3, 3, 3)), _w(rng, "w2", (4, 2, 3, 3)), _w(rng, "w3", (5, 8, 1, 1))])


def broadcast_add(tmp: Path, seed: int = 1) -> Path:
    """p [1,4,6] + q [1,1,6] (broadcast) -> Relu -> MatMul [6,3]; two outputs (the sum and the product)."""
    rng = np.random.default_rng(seed)
    nodes = [h.make_node("Add", ["p", "q"], ["s"]), h.make_node("Relu", ["s"], ["r"]),
             h.make_node("MatMul", ["r", "w"], ["y"])]
    return _save(tmp, "broadcast_add", nodes,
                 [h.make_tensor_value_info("p", TP.FLOAT, [1, 4, 6]), h.make_tensor_value_info("q", TP.FLOAT, [1, 1, 6])],
                 [h.make_tensor_value_info("y", TP.FLOAT, None), h.make_tensor_value_info("s", TP.FLOAT, None)],
                 [_w(rng, "w", (6, 3))])


def image_and_vectors(tmp: Path, seed: int = 2) -> Path:
    """img [1,1,6,6] -> Conv -> Flatten -> MatMul; vec [1,5] -> MatMul; their sum + bias [1,3] (a third input)."""
    rng = np.random.default_rng(seed)
    nodes = [h.make_node("Conv", ["img", "wc"], ["c"], pads=[1, 1, 1, 1]), h.make_node("Relu", ["c"], ["rc"]),
             h.make_node("Flatten", ["rc"], ["f"]), h.make_node("MatMul", ["f", "wf"], ["m1"]),
             h.make_node("MatMul", ["vec", "wv"], ["m2"]), h.make_node("Add", ["m1", "m2"], ["s"]),
             h.make_node("Add", ["s", "bias"], ["y"])]
    return _save(tmp, "image_and_vectors", nodes,
                 [h.make_tensor_value_info("img", TP.FLOAT, [1, 1, 6, 6]), h.make_tensor_value_info("vec", TP.FLOAT, [1, 5]),
                  h.make_tensor_value_info("bias", TP.FLOAT, [1, 3])],
                 [h.make_tensor_value_info("y", TP.FLOAT, None)],
                 [_w(rng, "wc", (2, 1, 3, 3)), _w(rng, "wf", (72, 3), 0.1), _w(rng, "wv", (5, 3))])


def ids_and_features(tmp: Path, seed: int = 3) -> Path:
    """ids int64 [1,4] -> Gather (table [10,6]) + feat [1,4,6] -> Relu."""
    rng = np.random.default_rng(seed)
    nodes = [h.make_node("Gather", ["table", "ids"], ["e"], axis=0), h.make_node("Add", ["e", "feat"], ["s"]),
             h.make_node("Relu", ["s"], ["y"])]
    return _save(tmp, "ids_and_features", nodes,
                 [h.make_tensor_value_info("ids", TP.INT64, [1, 4]), h.make_tensor_value_info("feat", TP.FLOAT, [1, 4, 6])],
                 [h.make_tensor_value_info("y", TP.FLOAT, None)], [_w(rng, "table", (10, 6), 1.0)])


def _calib(shapes: dict[str, tuple[int, ...]], n: int = 24, seed: int = 5) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: rng.normal(0, 1, (n,) + s).astype(np.float32) for k, s in shapes.items()}


def _check_converted(res, model: Path, calib: dict[str, np.ndarray], n_check: int = 4) -> None:
    """Every input int8 with a sane scale; micro == tflite-micro; int8 close to float (onnxruntime, source model)."""
    from tflite_builder import run_micro, run_tflm

    runner = TFLiteRunner(res.tflite_path)
    graph = res.graph
    assert [d["dtype"] for d in runner.inps] == [np.int8 if n not in graph.input_dtypes else np.int32
                                                  for n in graph.inputs]
    for d, name in zip(runner.inps, graph.inputs):
        s, zp = d["quantization"]
        if name in graph.input_dtypes:
            continue
        lo, hi = float(calib[name].min()), float(calib[name].max())
        assert 0 < s < 1 and abs((hi - lo) / 255 - s) < 0.02 * s + 1e-6, (name, s, lo, hi)  # the observed range
        assert -128 <= zp <= 127
    assert len(res.report["inputs"]) == len(graph.inputs)
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    sig = err = 0.0
    sets = []
    for i in range(n_check):
        src = [calib[n][i] for n in graph.inputs]
        ref = sess.run(None, {n: x.astype(np.int64) if n in graph.input_dtypes else x for n, x in zip(graph.inputs, src)})
        x_ir = [graph.to_ir_layout(n, x) for n, x in zip(graph.inputs, src)]
        got = runner.run(x_ir)
        for r, g in zip(ref, got):
            if r.ndim == 4:
                g = g.transpose(0, 3, 1, 2)  # our 4-D activations are NHWC
            sig += float(np.sum(r.astype(np.float64) ** 2))
            err += float(np.sum((r.astype(np.float64) - g.reshape(r.shape)) ** 2))
        sets.append([TFLiteRunner._q(x, d).reshape(d["shape"]) for x, d in zip(x_ir, runner.inps)])
    assert sqnr_db(sig, err) > 25, sqnr_db(sig, err)  # int8 (LiteRT) vs float (onnxruntime)
    expect = run_tflm(Path(res.tflite_path), sets)
    got = run_micro(Path(res.tflite_path), sets)
    for e, g in zip(expect, got):
        assert len(e) == len(g) and all(a.dtype == b.dtype and np.array_equal(a, b) for a, b in zip(e, g))


def test_two_convs_api_dict_and_cli_npz(tmp_path, capsys):
    pytest.importorskip("tflite_micro.python.tflite_micro.runtime")
    model = two_convs(tmp_path)
    calib = _calib({"a": (1, 3, 8, 8), "b": (1, 2, 8, 8)})
    res = convert_model(model, PROFILE, calib, tmp_path / "api", plot=False,
                        held_out={k: v[:6] for k, v in calib.items()})
    assert res.report["calibration"]["samples"] == 24
    assert [r["tensor"] for r in res.report["layers"] if r["op"] == "INPUT"] == ["a", "b"]
    assert res.report["held_out"]["samples"] == 6 and set(res.report["held_out"]) >= {"tflite", "onnx"}
    assert min(r["sqnr_db"] for r in res.report["held_out"]["onnx"]["outputs"]) > 25  # QDQ .onnx on ORT
    _check_converted(res, model, calib)
    # the CLI with one .npz (without the batch dim here): the same .tflite as the API from the same data
    np.savez(tmp_path / "calib.npz", a=calib["a"][:, 0], b=calib["b"][:, 0], y=np.zeros(24))
    assert edge_convert(["convert", str(model), "--profile", PROFILE, "--calib", str(tmp_path / "calib.npz"),
                         "-o", str(tmp_path / "cli")]) == 0
    assert (tmp_path / "cli" / "two_convs_int8.tflite").read_bytes() == Path(res.tflite_path).read_bytes()


def test_broadcast_add_from_a_folder_of_npz(tmp_path):
    pytest.importorskip("tflite_micro.python.tflite_micro.runtime")
    model = broadcast_add(tmp_path)
    calib = _calib({"p": (1, 4, 6), "q": (1, 1, 6)}, n=20)
    folder = tmp_path / "calib"
    folder.mkdir()
    for i in range(0, 20, 5):  # stacks of 5 samples
        np.savez(folder / f"part{i:02d}.npz", p=calib["p"][i:i + 5], q=calib["q"][i:i + 5])
    np.savez(folder / "one.npz", p=calib["p"][0, 0], q=calib["q"][0, 0])  # one sample without the batch dim
    res = convert_model(model, PROFILE, folder, tmp_path / "out", plot=False, formats=("tflite",))
    assert res.report["calibration"]["samples"] == 21
    assert [o["name"] for o in res.report["calibration_outputs"]["outputs"]] == res.graph.outputs
    _check_converted(res, model, calib)


def test_three_inputs_image_and_vectors(tmp_path):
    pytest.importorskip("tflite_micro.python.tflite_micro.runtime")
    model = image_and_vectors(tmp_path)
    calib = _calib({"img": (1, 1, 6, 6), "vec": (1, 5), "bias": (1, 3)}, n=32)
    res = convert_model(model, PROFILE, calib, tmp_path / "out", plot=False, formats=("tflite",))
    assert [i["name"] for i in res.report["inputs"]] == ["img", "vec", "bias"]
    assert res.report["inputs"][0]["layout"] == "NCHW" and res.report["inputs"][1]["shape"] == [1, 5]
    _check_converted(res, model, calib)


def test_integer_index_input_next_to_a_float_input(tmp_path):
    pytest.importorskip("tflite_micro.python.tflite_micro.runtime")
    model = ids_and_features(tmp_path)
    rng = np.random.default_rng(7)
    calib = {"ids": rng.integers(0, 10, (16, 1, 4)), "feat": rng.normal(0, 1, (16, 1, 4, 6)).astype(np.float32)}
    res = convert_model(model, PROFILE, calib, tmp_path / "out", plot=False, formats=("tflite",))
    ids = next(i for i in res.report["inputs"] if i["name"] == "ids")
    assert ids["scale"] is None and ids["index_limit"] == 10
    _check_converted(res, model, calib)
    bad = dict(calib, ids=calib["ids"] + 5)  # indices beyond the table
    with pytest.raises(CalibrationDataError, match="input 'ids' holds the index 14.*10 rows"):
        convert_model(model, PROFILE, bad, tmp_path / "bad", plot=False, formats=("tflite",))


SPECS = [("a", (1, 3, 4, 4), None), ("b", (1, 5), None)]


@pytest.mark.parametrize("arrays, pattern", [
    ({"a": np.zeros((4, 1, 3, 4, 4))}, r"no array for input\(s\) \['b'\].*inputs are \['a', 'b'\]"),
    ({"a": np.zeros((4, 1, 3, 4, 4)), "b": np.zeros((4, 1, 5)), "c": np.zeros(3)}, r"unexpected array\(s\) \['c'\]"),
    ({"a": np.zeros((4, 1, 3, 4, 4)), "b": np.zeros((3, 1, 5))}, r"different numbers of samples \('a' 4, 'b' 3\)"),
    ({"a": np.zeros((4, 1, 3, 4, 4)), "b": np.zeros((4, 1, 6))},
     r"input 'b': calibration data has shape \(4, 1, 6\), but the model input expects \(1, 5\)"),
])
def test_bad_multi_input_data_is_one_line(tmp_path, arrays, pattern):
    with pytest.raises(CalibrationDataError, match=pattern) as e:
        open_calibration_inputs(arrays, SPECS)
    assert "\n" not in str(e.value)
    np.savez(tmp_path / "c.npz", **arrays)
    with pytest.raises(CalibrationDataError, match=pattern):
        open_calibration_inputs(tmp_path / "c.npz", SPECS)


def test_multi_input_data_forms(tmp_path):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(3, 1, 3, 4, 4)), rng.normal(size=(3, 5))  # b without the batch dim
    cs = open_calibration_inputs({"a": a, "b": b}, SPECS, limit=2)
    got = list(cs)
    assert len(cs) == 2 and all(isinstance(s, tuple) and len(s) == 2 for s in got)
    assert got[1][0].shape == (1, 3, 4, 4) and got[1][1].shape == (1, 5) and got[1][1].dtype == np.float32
    np.testing.assert_array_equal(got[1][1][0], b[1].astype(np.float32))
    one = list(open_calibration_inputs({"a": a[0], "b": b[0]}, SPECS))  # one sample, no stack
    assert len(one) == 1 and one[0][0].shape == (1, 3, 4, 4)
    with pytest.raises(CalibrationDataError, match=r"takes calibration data as a .npz holding one array per input"):
        np.save(tmp_path / "x.npy", a)
        open_calibration_inputs(tmp_path / "x.npy", SPECS)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CalibrationDataError, match="holds no samples"):
        open_calibration_inputs(tmp_path / "empty", SPECS)


def test_cli_errors_and_single_input_only_features(tmp_path, capsys):
    model = broadcast_add(tmp_path)
    np.savez(tmp_path / "missing.npz", p=np.zeros((4, 1, 4, 6), np.float32))
    code = edge_convert(["convert", str(model), "--profile", PROFILE, "--calib", str(tmp_path / "missing.npz"),
                         "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and "no array for input(s) ['q']" in err, err
    calib = _calib({"p": (1, 4, 6), "q": (1, 1, 6)}, n=4)
    for kw, name in [({"adaround": True}, "--adaround"), ({"target_sqnr": 30.0}, "--target-sqnr"),
                     ({"activations": "int16"}, "--activations int16"), ({"analyze": True}, "--analyze")]:
        with pytest.raises(ConfigError, match=f"{name} supports single-input models only; this model has 2 inputs"):
            convert_model(model, PROFILE, calib, tmp_path / "o", plot=False, **kw)


def test_float_tflite_with_two_inputs(tmp_path):
    pytest.importorskip("tflite_micro.python.tflite_micro.runtime")
    from tflite_builder import T, build, opts

    path = build(tmp_path / "mul2.tflite", "MUL", [T([1, 4, 4, 3], "float32", name="u"), T([1, 1, 1, 3], "float32", name="v")],
                 [T([1, 4, 4, 3], "float32", name="w")], opts("MulOptions"))
    rng = np.random.default_rng(3)
    calib = {"u": rng.normal(size=(16, 1, 4, 4, 3)).astype(np.float32),
             "v": rng.uniform(0.5, 2, (16, 1, 1, 1, 3)).astype(np.float32)}
    res = convert_model(path, PROFILE, calib, tmp_path / "out", plot=False, formats=("tflite",))
    assert res.graph.inputs == ["u", "v"] and len(res.report["inputs"]) == 2
    runner = TFLiteRunner(res.tflite_path)
    got = runner.run([calib["u"][0], calib["v"][0]])[0]
    want = calib["u"][0] * calib["v"][0]  # the float model's MUL, by numpy
    assert sqnr_db(float(np.sum(want ** 2)), float(np.sum((want - got) ** 2))) > 25
    assert res.report["calibration_outputs"]["outputs"][0]["sqnr_db"] > 25


def test_default_precision_policy_on_two_inputs(tmp_path):
    """LayerNormalization over the sum of two inputs: the default policy (float-island statistics on an OS
    profile) runs on multi-input calibration samples."""
    rng = np.random.default_rng(4)
    nodes = [h.make_node("Add", ["p", "q"], ["s"]),
             h.make_node("LayerNormalization", ["s", "g", "b"], ["y"], axis=-1, epsilon=1e-5)]
    g = h.make_graph(nodes, "ln2", [h.make_tensor_value_info("p", TP.FLOAT, [1, 4, 16]),
                                    h.make_tensor_value_info("q", TP.FLOAT, [1, 4, 16])],
                     [h.make_tensor_value_info("y", TP.FLOAT, None)],
                     [_w(rng, "g", (16,), 1.0), _w(rng, "b", (16,), 0.1)])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(tmp_path / "ln2.onnx"))
    calib = {"p": rng.normal(3, 2, (16, 1, 4, 16)).astype(np.float32), "q": rng.normal(0, 1, (16, 1, 4, 16)).astype(np.float32)}
    res = convert_model(tmp_path / "ln2.onnx", PROFILE, calib, tmp_path / "out", plot=False, formats=("tflite",))
    policy = res.report["quantization"]["precision"].get("default_policy")
    assert policy and any(e["precision"] == "float" for e in policy.values()), policy
    assert res.report["calibration_outputs"]["outputs"][0]["sqnr_db"] > 25
