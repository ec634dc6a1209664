"""``edge-convert convert --outputs``: keep chosen outputs (in the given order) or cut the graph at an inner tensor.

Models built in memory: an ONNX MLP with a boolean mask input whose third output only echoes the mask (as the
arabic-name-romanizer encoder's ``src_mask_out``: refused once the mask is frozen, converted once that output is
left out), and a float TFLite FULLY_CONNECTED with two activations after it. References: onnxruntime / numpy on
the float model (SQNR of the int8 .tflite run by LiteRT), tflite-micro for micro (``np.array_equal``).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto as TP  # noqa: E402
from onnx import helper as h  # noqa: E402
from onnx import numpy_helper as nh  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tflite_builder import T, ModelBuilder, assert_exact, opts  # noqa: E402

from converters.cli import main as edge_convert  # noqa: E402
from converters.pipeline import convert_model  # noqa: E402
from converters.quality.metrics import sqnr_db  # noqa: E402
from converters.report import TFLiteRunner  # noqa: E402
from edge_runtime.errors import ConfigError, UnsupportedModelError  # noqa: E402

PROFILE = "rpi4-4gb"
MASK_ON = {"mask": np.array(1)}


def masked_mlp(tmp: Path) -> Path:
    """x [1,8] * float(mask) -> MatMul -> h -> Relu -> y1 -> MatMul -> Sigmoid -> y2; outputs y1, mask_out
    (Identity of the bool mask input), y2."""
    rng = np.random.default_rng(0)
    nodes = [h.make_node("Cast", ["mask"], ["maskf"], to=TP.FLOAT), h.make_node("Mul", ["x", "maskf"], ["xm"]),
             h.make_node("MatMul", ["xm", "w1"], ["h"]), h.make_node("Relu", ["h"], ["y1"]),
             h.make_node("MatMul", ["y1", "w2"], ["z"]), h.make_node("Sigmoid", ["z"], ["y2"]),
             h.make_node("Identity", ["mask"], ["mask_out"])]
    g = h.make_graph(nodes, "masked_mlp",
                     [h.make_tensor_value_info("x", TP.FLOAT, [1, 8]), h.make_tensor_value_info("mask", TP.BOOL, [1, 8])],
                     [h.make_tensor_value_info("y1", TP.FLOAT, [1, 6]), h.make_tensor_value_info("mask_out", TP.BOOL, [1, 8]),
                      h.make_tensor_value_info("y2", TP.FLOAT, [1, 4])],
                     [nh.from_array(rng.normal(0, 0.5, (8, 6)).astype(np.float32), "w1"),
                      nh.from_array(rng.normal(0, 0.5, (6, 4)).astype(np.float32), "w2")])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 13)])
    m.ir_version = 8
    path = tmp / "masked_mlp.onnx"
    onnx.save(m, str(path))
    return path


def _calib(n: int = 32, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 1, (n, 1, 8)).astype(np.float32)


def _ort(path: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, {"x": x, "mask": np.ones((1, 8), bool)})))


def _db(want: np.ndarray, got: np.ndarray) -> float:
    want, got = np.asarray(want, np.float64).reshape(-1), np.asarray(got, np.float64).reshape(-1)
    return float(sqnr_db(float(np.sum(want ** 2)), float(np.sum((want - got) ** 2))))


def test_echo_output_refused_unless_left_out(tmp_path: Path) -> None:
    model = masked_mlp(tmp_path)
    with pytest.raises(UnsupportedModelError, match="mask_out"):
        convert_model(model, PROFILE, _calib(), tmp_path / "all", plot=False, input_values=MASK_ON, report_samples=4)
    res = convert_model(model, PROFILE, _calib(), tmp_path / "two", plot=False, input_values=MASK_ON,
                        report_samples=4, outputs=["y2", "y1"], formats=("tflite",))
    assert res.graph.outputs == ["y2", "y1"]
    assert res.report["selected_outputs"] == ["y2", "y1"]
    assert [o["name"] for o in res.report["output"]] == ["y2", "y1"]
    x = _calib(4, seed=7)
    runner = TFLiteRunner(res.tflite_path)
    for xi in x:
        ref = _ort(model, xi)
        got = runner.run(xi)
        assert len(got) == 2
        assert _db(ref["y2"], got[0]) > 25 and _db(ref["y1"], got[1]) > 20  # int8 LiteRT vs float onnxruntime
    assert_exact(Path(res.tflite_path), n=3)  # micro == tflite-micro


def test_cut_at_an_inner_tensor(tmp_path: Path) -> None:
    model = masked_mlp(tmp_path)
    res = convert_model(model, PROFILE, _calib(), tmp_path / "cut", plot=False, input_values=MASK_ON,
                        report_samples=4, outputs=["h"], formats=("tflite",))
    assert res.graph.outputs == ["h"] and res.report["selected_outputs"] == ["h"]
    assert not {"RELU", "LOGISTIC"} & set(res.report["ops"])  # nothing after the cut is converted
    w1 = nh.to_array(onnx.load(str(model)).graph.initializer[0])
    runner = TFLiteRunner(res.tflite_path)
    for xi in _calib(4, seed=8):
        got = runner.run(xi)
        assert len(got) == 1 and _db(xi @ w1, got[0]) > 30  # vs the float MatMul by numpy
    assert_exact(Path(res.tflite_path), n=3)


def test_an_output_and_an_inner_tensor_together(tmp_path: Path) -> None:
    """y2 and the inner h: y1, a dropped output still computed on the way to y2, keeps its shape."""
    model = masked_mlp(tmp_path)
    res = convert_model(model, PROFILE, _calib(), tmp_path / "mix", plot=False, input_values=MASK_ON,
                        report_samples=4, outputs=["y2", "h"], formats=("tflite",))
    assert res.graph.outputs == ["y2", "h"]
    w1 = nh.to_array(onnx.load(str(model)).graph.initializer[0])
    runner = TFLiteRunner(res.tflite_path)
    for xi in _calib(4, seed=9):
        got = runner.run(xi)
        assert _db(_ort(model, xi)["y2"], got[0]) > 25 and _db(xi @ w1, got[1]) > 25
    assert_exact(Path(res.tflite_path), n=3)


def test_unknown_and_input_names_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    model = masked_mlp(tmp_path)
    np.save(tmp_path / "calib.npy", _calib())
    base = ["convert", str(model), "--profile", PROFILE, "--calib", str(tmp_path / "calib.npy"),
            "--input-value", "mask=1", "-o", str(tmp_path / "o")]
    for bad, why in (("y2,nope", "no tensor named 'nope'"), ("x", "a model input cannot be an output"),
                     ("y1,y1", "y1 more than once")):
        code = edge_convert(base + ["--outputs", bad])
        err = capsys.readouterr().err.strip()
        assert code != 0 and len(err.splitlines()) == 1, err
        assert why in err and "the model's outputs are: y1, mask_out, y2" in err or "more than once" in err, err
    with pytest.raises(ConfigError, match="no tensor named 'w9'"):
        convert_model(model, PROFILE, _calib(), tmp_path / "o", plot=False, input_values=MASK_ON, outputs=["w9"])


def test_cli_json_report_records_the_choice(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    model = masked_mlp(tmp_path)
    np.save(tmp_path / "calib.npy", _calib())
    out = tmp_path / "cli"
    code = edge_convert(["convert", str(model), "--profile", PROFILE, "--calib", str(tmp_path / "calib.npy"),
                         "--input-value", "mask=1", "--outputs", "y2", "--outputs", "y1", "--json", "-o", str(out)])
    printed = json.loads(capsys.readouterr().out)
    assert code == 0
    on_disk = json.loads((out / "report.json").read_text())
    for rep in (printed, on_disk):
        assert rep["selected_outputs"] == ["y2", "y1"]
        assert [o["name"] for o in rep["output"]] == ["y2", "y1"]


def float_fc_tflite(tmp: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """x [1,6] -> FULLY_CONNECTED -> h [1,4] -> LOGISTIC -> y1, TANH -> y2 (float32)."""
    rng = np.random.default_rng(2)
    w = rng.normal(0, 0.5, (4, 6)).astype(np.float32)
    b = rng.normal(0, 0.1, 4).astype(np.float32)
    mb = ModelBuilder()
    sg = mb.subgraph("main")
    x = sg.tensor(T((1, 6), "float32", name="x"))
    wt, bt = sg.tensor(T((4, 6), "float32", data=w, name="w")), sg.tensor(T((4,), "float32", data=b, name="b"))
    hid, y1, y2 = (sg.tensor(T((1, 4), "float32", name=n)) for n in ("h", "y1", "y2"))
    sg.op("FULLY_CONNECTED", [x, wt, bt], [hid], opts("FullyConnectedOptions", fusedActivationFunction=0))
    sg.op("LOGISTIC", [hid], [y1])
    sg.op("TANH", [hid], [y2])
    sg.io([x], [y1, y2])
    return mb.write(tmp / "fc2.tflite"), w, b


@pytest.mark.parametrize("chosen", [["y2"], ["h"], ["y2", "y1"]])
def test_float_tflite_outputs(tmp_path: Path, chosen: list[str]) -> None:
    path, w, b = float_fc_tflite(tmp_path)
    calib = np.random.default_rng(3).normal(0, 1, (32, 1, 6)).astype(np.float32)
    res = convert_model(path, PROFILE, calib, tmp_path / "out", plot=False, report_samples=4, outputs=chosen,
                        formats=("tflite",))
    assert res.graph.outputs == chosen
    runner = TFLiteRunner(res.tflite_path)
    for xi in calib[:4]:
        hv = xi @ w.T + b  # the float model by numpy
        ref = {"h": hv, "y1": 1 / (1 + np.exp(-hv)), "y2": np.tanh(hv)}
        got = runner.run(xi)
        assert len(got) == len(chosen)
        for name, g in zip(chosen, got):
            assert _db(ref[name], g) > 30, name
    assert_exact(Path(res.tflite_path), n=3)
    with pytest.raises(ConfigError, match="the model's outputs are: y1, y2"):
        convert_model(path, PROFILE, calib, tmp_path / "bad", plot=False, outputs=["q"])
