"""Where an int8 SOFTMAX stops working, and what the converter writes instead.

- tflite-micro's int8 SOFTMAX aborts the process when a row's sum of exps (in units of the row maximum's
  exp) reaches 512, i.e. 512 or more values at the row's maximum: the converter writes a SOFTMAX over 512 or
  more values as a float island (DEQUANTIZE, float SOFTMAX, QUANTIZE to int8 (1/256, -128)); see
  ``converters.quantize.WIDE_SOFTMAX`` for the int16 forms measured and why not them.
  Checked: tflite-micro (run in a subprocess, so an abort fails the test) on flat and random logits, micro
  bit-exact with it, the model loads through edge_runtime.load, SQNR against onnxruntime on the float
  model; narrower softmaxes are written as before.
- Logits so large that the SOFTMAX input scale is refused by the runtimes' checks: one line at conversion.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import edge_runtime
from converters import quantize
from converters.pipeline import convert_model
from edge_runtime.errors import UnsupportedModelError
from edge_runtime.formats.tflite import TFLiteModel

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from tflite_builder import run_micro  # noqa: E402

TESTS = Path(__file__).resolve().parent
K = 16  # features into the Gemm

# tflite-micro in a child process: an abort (SIGABRT) is a return code, not a dead pytest
TFLM_CHILD = r"""
import sys
import numpy as np
sys.path.insert(0, sys.argv[3])
from tflite_builder import run_tflm
xs = np.load(sys.argv[2])
outs = run_tflm(sys.argv[1], [[x] for x in xs])
np.save(sys.argv[2] + ".out.npy", np.stack([o[0] for o in outs]))
"""


def _softmax_onnx(path: Path, classes: int, rows: int = 1, scale: float = 1.0, seed: int = 0) -> Path:
    """x [1, K] -> Gemm (no bias) -> [1, rows * classes] -> (Reshape [1, rows, classes]) -> Softmax(-1).

    A zero input gives all-equal (flat) logits."""
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((rows * classes, K)) * scale).astype(np.float32)
    b = np.zeros(rows * classes, np.float32)
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["logits"], transB=1)]
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")]
    src, shape = "logits", [1, rows * classes]
    if rows > 1:
        inits.append(numpy_helper.from_array(np.array([1, rows, classes], np.int64), "shape"))
        nodes.append(helper.make_node("Reshape", ["logits", "shape"], ["logits3"]))
        src, shape = "logits3", [1, rows, classes]
    nodes.append(helper.make_node("Softmax", [src], ["probs"], axis=-1))
    g = helper.make_graph(nodes, "softmax", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, K])],
                          [helper.make_tensor_value_info("probs", TensorProto.FLOAT, shape)], inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def _calib(n: int = 16) -> np.ndarray:
    return np.random.default_rng(1).standard_normal((n, 1, K)).astype(np.float32)


def _convert(tmp_path: Path, classes: int, rows: int = 1, name: str = "m", **kw) -> Path:
    src = _softmax_onnx(tmp_path / f"{name}.onnx", classes, rows)
    convert_model(src, "rpi4-4gb", _calib(), tmp_path / f"{name}_out", plot=False, **kw)
    return tmp_path / f"{name}_out" / f"{name}_int8.tflite"


def _tflm(path: Path, xs: np.ndarray, tmp_path: Path) -> np.ndarray:
    """tflite-micro's output for each input, from a child process (fails the test if it aborts)."""
    f = tmp_path / f"{path.stem}_in.npy"
    np.save(f, xs)
    r = subprocess.run([sys.executable, "-c", TFLM_CHILD, str(path), str(f), str(TESTS)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"tflite-micro exited with {r.returncode} on {path.name}: {r.stderr[-2000:]}"
    return np.load(str(f) + ".out.npy")


def _inputs(path: Path, n: int) -> np.ndarray:
    """The int8 input giving real 0 (flat logits) first, then ``n`` random int8 inputs."""
    q = TFLiteModel.open(str(path)).main.tensors[TFLiteModel.open(str(path)).main.inputs[0]].quantization
    zero = np.full((1, K), int(q.zero_point[0]), np.int8)
    rand = np.random.default_rng(2).integers(-128, 128, (n, 1, K)).astype(np.int8)
    return np.concatenate([zero[None], rand])


def _ops(path: Path) -> list[tuple[str, list[str], list[str]]]:
    sg = TFLiteModel.open(str(path)).main
    return [(op.name, [sg.tensors[i].type_name for i in op.inputs], [sg.tensors[i].type_name for i in op.outputs])
            for op in sg.operators]


@pytest.mark.parametrize("classes,rows", [(520, 1), (1000, 1), (600, 2)])
def test_wide_softmax_runs_on_tflite_micro_and_micro_matches_it(tmp_path, classes, rows):
    path = _convert(tmp_path, classes, rows)
    ops = _ops(path)
    assert [o for o in ops if o[0] != "FULLY_CONNECTED" and o[0] != "RESHAPE"] == [
        ("DEQUANTIZE", ["INT8"], ["FLOAT32"]), ("SOFTMAX", ["FLOAT32"], ["FLOAT32"]),
        ("QUANTIZE", ["FLOAT32"], ["INT8"])]
    sg = TFLiteModel.open(str(path)).main
    edge_runtime.load(str(path))  # the .tflite checks accept it
    final = sg.tensors[sg.outputs[0]]
    assert final.type_name == "INT8"
    assert (float(final.quantization.scale[0]), int(final.quantization.zero_point[0])) == (1.0 / 256, -128)

    xs = _inputs(path, 6)
    want = _tflm(path, xs, tmp_path)  # the flat row (xs[0]) aborted tflite-micro before
    got = np.stack([run_micro(path, [[x]])[0][0] for x in xs])
    assert got.dtype == want.dtype == np.int8 and np.array_equal(got, want)  # micro == tflite-micro
    # flat logits: every probability 1/classes, which rounds to the same code everywhere in the row
    assert np.all(want[0] == want[0].reshape(-1)[0])
    assert abs((int(want[0].reshape(-1)[0]) + 128) / 256 - 1 / classes) <= 1 / 512


def _sqnr_vs_onnxruntime(src: Path, path: Path) -> tuple[float, float]:
    """(SQNR of the int8 model's probabilities on micro, SQNR of the float probabilities rounded to the
    int8 output's 1/256 steps), both against onnxruntime on the float model, over random inputs."""
    sess = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    sg = TFLiteModel.open(str(path)).main
    qin = sg.tensors[sg.inputs[0]].quantization
    s_in, z_in = float(qin.scale[0]), int(qin.zero_point[0])
    xs = np.random.default_rng(7).standard_normal((8, 1, K)).astype(np.float32)
    sig = err = ceil = 0.0
    for x in xs:
        f = sess.run(None, {"x": x})[0].astype(np.float64)
        xq = np.clip(np.round(x / s_in) + z_in, -128, 127).astype(np.int8)
        y = (run_micro(path, [[xq]])[0][0].astype(np.float64) + 128) / 256
        sig += float(np.sum(f ** 2))
        err += float(np.sum((f - y) ** 2))
        ceil += float(np.sum((f - np.round(f * 256) / 256) ** 2))
    return 10 * np.log10(sig / err), 10 * np.log10(sig / ceil)


def test_wide_softmax_keeps_quality_against_onnxruntime(tmp_path, monkeypatch):
    """The float SOFTMAX loses nothing against the int8 one (written here with the wide-softmax rule
    switched off)."""
    src = _softmax_onnx(tmp_path / "q.onnx", 1000)
    convert_model(src, "rpi4-4gb", _calib(), tmp_path / "wide", plot=False)
    monkeypatch.setattr(quantize, "wide_softmax_keys", lambda *a, **k: [])
    convert_model(src, "rpi4-4gb", _calib(), tmp_path / "int8", plot=False)
    wide, ceiling = _sqnr_vs_onnxruntime(src, tmp_path / "wide" / "q_int8.tflite")
    narrow, _ = _sqnr_vs_onnxruntime(src, tmp_path / "int8" / "q_int8.tflite")
    assert wide >= narrow - 0.5, f"int8->int16 softmax {wide:.2f} dB vs int8->int8 {narrow:.2f} dB (onnxruntime)"
    # most of the loss is the logits' int8 step (0.12 here: 12 % in exp), not the output's rounding
    assert 15.0 < wide < ceiling, f"{wide:.2f} dB; the rounded float probabilities give {ceiling:.2f} dB"


def test_softmax_under_512_values_is_written_as_before(tmp_path, monkeypatch):
    """511 values cannot sum to 512: int8 -> int8 SOFTMAX, no QUANTIZE; a 10-class model's bytes are the
    ones written without the wide-softmax rule at all; 512 values already take the float SOFTMAX."""
    assert [o for o in _ops(_convert(tmp_path, 511, name="n511")) if o[0] != "FULLY_CONNECTED"] == \
        [("SOFTMAX", ["INT8"], ["INT8"])]
    assert ("SOFTMAX", ["FLOAT32"], ["FLOAT32"]) in _ops(_convert(tmp_path, 512, name="n512"))
    src = _softmax_onnx(tmp_path / "c10.onnx", 10)
    convert_model(src, "rpi4-4gb", _calib(), tmp_path / "with", plot=False)
    monkeypatch.setattr(quantize, "wide_softmax_keys", lambda *a, **k: [])
    convert_model(src, "rpi4-4gb", _calib(), tmp_path / "without", plot=False)
    for f in ("c10_int8.tflite", "c10_int8.onnx"):
        assert (tmp_path / "with" / f).read_bytes() == (tmp_path / "without" / f).read_bytes()


def test_wide_softmax_qdq_onnx_runs_on_onnxruntime(tmp_path):
    src = _softmax_onnx(tmp_path / "w.onnx", 520)
    convert_model(src, "rpi4-4gb", _calib(), tmp_path / "w_out", plot=False)
    q = ort.InferenceSession(str(tmp_path / "w_out" / "w_int8.onnx"), providers=["CPUExecutionProvider"])
    sg = TFLiteModel.open(str(tmp_path / "w_out" / "w_int8.tflite")).main
    z_in = int(sg.tensors[sg.inputs[0]].quantization.zero_point[0])
    y = q.run(None, {q.get_inputs()[0].name: np.full((1, K), z_in, np.int8)})[0]
    assert y.dtype == np.int8 and y.shape == (1, 520)
    assert np.all(y == y[0, 0])  # flat logits, flat probabilities


def test_c_export_refuses_wide_softmax_in_one_line(tmp_path):
    path = _convert(tmp_path, 520)
    r = subprocess.run([sys.executable, "-m", "converters.cli", "export", str(path), "--profile", "nrf52840",
                        "--format", "c", "-o", str(tmp_path / "c")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if "error:" in ln]
    assert len(lines) == 1 and "DEQUANTIZE" in lines[0], r.stderr


@pytest.mark.parametrize("scale", [1e5, 1e10, 1e30])
def test_softmax_logits_beyond_any_int8_softmax_are_refused_at_conversion(tmp_path, scale):
    src = _softmax_onnx(tmp_path / "big.onnx", 10, scale=scale)
    with pytest.raises(UnsupportedModelError) as e:
        convert_model(src, "rpi4-4gb", _calib(), tmp_path / "o", plot=False)
    msg = str(e.value)
    assert "\n" not in msg and "softmax input 'logits' spans" in msg and "int8 softmax" in msg
    lo, hi = (float(v) for v in msg.split("spans ")[1].split(":")[0].split(".."))
    assert lo < -scale and hi > scale  # the calibrated range, as the float model gives it
    assert not (tmp_path / "o" / "big_int8.tflite").exists()


def test_largest_accepted_softmax_logits_load_in_the_runtime(tmp_path):
    """Just inside the limit the written model passes the loader's checks (edge_runtime.load)."""
    import edge_runtime

    src = _softmax_onnx(tmp_path / "edge.onnx", 10, scale=1e4)
    convert_model(src, "rpi4-4gb", _calib(), tmp_path / "o", plot=False)
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report
    m = edge_runtime.load(str(tmp_path / "o" / "edge_int8.tflite"))
    assert m is not None


def test_refusal_is_one_cli_line(tmp_path):
    src = _softmax_onnx(tmp_path / "big.onnx", 10, scale=1e30)
    np.save(tmp_path / "c.npy", _calib())
    r = subprocess.run([sys.executable, "-m", "converters.cli", "convert", str(src), "--profile", "rpi4-4gb",
                        "--calib", str(tmp_path / "c.npy"), "-o", str(tmp_path / "o")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if "error:" in ln]
    assert len(lines) == 1 and "softmax input 'logits' spans" in lines[0], r.stderr


def test_wide_softmax_takes_any_logits_in_float(tmp_path):
    """The float island has no input-scale limit: logits of 1e30 convert, load, and put all probability on
    the maximum."""
    path = tmp_path / "o" / "wide_big_int8.tflite"
    convert_model(_softmax_onnx(tmp_path / "wide_big.onnx", 600, scale=1e30), "rpi4-4gb", _calib(),
                  tmp_path / "o", plot=False)
    edge_runtime.load(str(path))
    xs = _inputs(path, 3)[1:]
    want = _tflm(path, xs, tmp_path)
    got = np.stack([run_micro(path, [[x]])[0][0] for x in xs])
    assert np.array_equal(got, want)
    for row in want.reshape(len(xs), -1):  # the classes tied at the (coarsely quantized) maximum share 1
        top = row[row > -128]
        assert top.size and np.all(top == top[0])
        assert abs(top.size * (int(top[0]) + 128) / 256 - 1.0) <= top.size / 512 + 1 / 256  # 127 is 255/256
