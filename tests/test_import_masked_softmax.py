"""Masked softmax ``Softmax(scores + M)`` with a constant attention mask: :mod:`converters.masked_softmax`.

The ADD (or SUB) of the mask, the RESHAPE/TRANSPOSE after it and the SOFTMAX are a float island on every
profile (the scores keep their own int8 range, the mask stays a float constant, the SOFTMAX output is int8
(1/256, -128)); calibration accepts ``-inf`` in the masked sum and names a fully masked row's NaN in one line.

References: onnxruntime running the float model (SQNR of our int8 .tflite run by LiteRT) and tflite-micro
(micro's outputs ``np.array_equal`` with it).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper
from tflite_builder import run_micro, run_tflm

from converters.calibrate import FloatRuns, calibrate, float_session
from converters.calibration_data import CalibrationDataError
from converters.importers.onnx import import_onnx
from converters.ir import ir_feed
from converters.masked_softmax import (
    is_mask,
    mask_constants,
    masked_softmax_chains,
    masked_sums,
)
from converters.pipeline import convert_model
from converters.quantize import plan_quantization
from converters.report import TFLiteRunner
from converters.writers.tflite import build_tflite
from edge_runtime.errors import UnsupportedModelError

F32_MIN = float(np.finfo(np.float32).min)
MIN_SQNR = 20.0  # as tests/test_import_function_ops.py's attention blocks: single samples measure 19-36 dB here,
#                  as they do with the mask all zeros (no island: the int8 projections and MatMuls)


def _sqnr(ref: np.ndarray, got: np.ndarray) -> float:
    ref = np.asarray(ref, np.float64)
    got = np.asarray(got, np.float64).reshape(ref.shape)
    return float(10 * np.log10(np.sum(ref ** 2) / max(np.sum((got - ref) ** 2), 1e-30)))


def _mask(t: int, fill: float, kind: str, rng: np.random.Generator) -> np.ndarray:
    """A [t, t] additive mask: causal (upper triangle masked) or padding (the last columns masked)."""
    if kind == "causal":
        hide = np.triu(np.ones((t, t), bool), 1)
    else:
        hide = np.zeros((t, t), bool)
        hide[:, t - int(rng.integers(1, t)):] = True
    return np.where(hide, np.float32(fill), np.float32(0)).astype(np.float32)


def _attention(t: int, d: int, heads: int, mask: np.ndarray, seed: int, sub: bool = False,
               mask_first: bool = False, opset: int = 17) -> onnx.ModelProto:
    """x [1, t, d] -> q, k, v projections -> (heads: Reshape [1, t, h, d/h] + Transpose) -> q @ k^T * scale
    -> Add mask (or Sub of -mask) -> Softmax(-1) -> @ v -> (heads: Transpose + Reshape back) -> y."""
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array((rng.standard_normal((d, d)) * 0.4).astype(np.float32), w)
             for w in ("wq", "wk", "wv")]
    nodes = [helper.make_node("MatMul", ["x", w], [w[1]]) for w in ("wq", "wk", "wv")]
    q, k, v = "q", "k", "v"
    if heads > 1:
        inits.append(numpy_helper.from_array(np.array([1, t, heads, d // heads], np.int64), "hshape"))
        for name in (q, k, v):
            nodes += [helper.make_node("Reshape", [name, "hshape"], [name + "4"]),
                      helper.make_node("Transpose", [name + "4"], [name + "h"], perm=[0, 2, 1, 3])]
        q, k, v = "qh", "kh", "vh"
    perm = [0, 1, 3, 2] if heads > 1 else [0, 2, 1]
    inits.append(numpy_helper.from_array(np.array((d // heads) ** -0.5, np.float32), "scale"))
    inits.append(numpy_helper.from_array(-mask if sub else mask, "mask"))
    add = (helper.make_node("Sub", ["s", "mask"], ["sm"]) if sub else
           helper.make_node("Add", ["mask", "s"] if mask_first else ["s", "mask"], ["sm"]))
    nodes += [helper.make_node("Transpose", [k], ["kt"], perm=perm),
              helper.make_node("MatMul", [q, "kt"], ["s0"]),
              helper.make_node("Mul", ["s0", "scale"], ["s"]), add,
              helper.make_node("Softmax", ["sm"], ["p"], axis=-1),
              helper.make_node("MatMul", ["p", v], ["o" if heads > 1 else "y"])]
    if heads > 1:
        inits.append(numpy_helper.from_array(np.array([1, t, d], np.int64), "oshape"))
        nodes += [helper.make_node("Transpose", ["o"], ["ot"], perm=[0, 2, 1, 3]),
                  helper.make_node("Reshape", ["ot", "oshape"], ["y"])]
    g = helper.make_graph(nodes, "attn", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, t, d])],
                          [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, t, d])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(m)
    return m


def _check_converted(m: onnx.ModelProto, tmp_path: Path, t: int, d: int, profile: str = "rpi4-4gb") -> None:
    src = tmp_path / "m.onnx"
    onnx.save(m, src)
    rng = np.random.default_rng(1)
    calib = rng.standard_normal((32, 1, t, d)).astype(np.float32)
    xs = rng.standard_normal((4, 1, t, d)).astype(np.float32)
    res = convert_model(src, profile, calib, tmp_path / "out", formats=("tflite",), plot=False, report_samples=2)
    kinds = {op.kind for op in res.graph.ops}
    chain = masked_softmax_chains(res.graph)
    assert len(chain) == 1 and chain[0][0].kind in ("ADD", "SUB") and chain[0][-1].kind == "SOFTMAX", kinds
    islands = set(res.plan.float_islands)
    assert {op.name or op.outputs[0] for op in chain[0]} <= islands, islands
    scores = next(i for i in chain[0][0].inputs if not res.graph.tensors[i].is_constant)
    assert res.plan.activations[scores].scale < 0.1  # the scores' own range, not the mask's
    sess = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    runner = TFLiteRunner(res.tflite_path)
    ref = np.stack([sess.run(None, {"x": x})[0] for x in xs])
    got = np.stack([runner.run([x])[0] for x in xs])
    assert _sqnr(ref, got) >= MIN_SQNR, _sqnr(ref, got)  # over the held-out samples together
    qx = [[runner._q(x, runner.inps[0]).reshape(runner.inps[0]["shape"])] for x in xs]
    for a, b in zip(run_micro(Path(res.tflite_path), qx), run_tflm(Path(res.tflite_path), qx)):
        assert all(np.array_equal(p, q) for p, q in zip(a, b)), "micro differs from tflite-micro"


@pytest.mark.parametrize("fill,kind,heads,t,variant", [
    (F32_MIN, "causal", 1, 6, ""),          # torch's finfo(float32).min
    (-1e9, "padding", 2, 5, "mask_first"),  # Add(mask, scores)
    (-1e4, "causal", 2, 7, "sub"),          # Sub(scores, -mask)
    (F32_MIN, "padding", 1, 4, ""),
])
def test_masked_softmax_converts_as_float_island(fill, kind, heads, t, variant, tmp_path):
    d = 8
    mask = _mask(t, fill, kind, np.random.default_rng(t))
    m = _attention(t, d, heads, mask, seed=t, sub=variant == "sub", mask_first=variant == "mask_first")
    _check_converted(m, tmp_path, t, d)


def test_masked_softmax_on_a_microcontroller(tmp_path):
    """tflite-micro has float ADD and SOFTMAX: the island is written for a microcontroller profile too."""
    t, d = 5, 8
    _check_converted(_attention(t, d, 1, _mask(t, F32_MIN, "causal", np.random.default_rng(0)), seed=3),
                     tmp_path, t, d, profile="stm32h743")


@pytest.mark.parametrize("data,expected", [
    (np.array([0, -np.inf], np.float32), True),
    (np.array([[0, F32_MIN], [0, 0]], np.float32), True),
    (np.array([0.5, -1e4], np.float32), True),
    (np.array([-np.inf, -np.inf], np.float32), True),
    (np.array([0.5, -1e3], np.float32), False),   # nothing masked
    (np.array([5e3, -1e9], np.float32), False),   # a kept entry that large: not a mask
    (np.array([0, np.nan], np.float32), False),
    (np.array([0, np.inf], np.float32), False),
    (np.array([0, -5], np.int64), False),
])
def test_is_mask(data, expected):
    assert is_mask(data) is expected


def test_an_ordinary_bias_before_softmax_stays_int8(tmp_path):
    """A constant of ordinary values added to the scores (a relative position bias) is no mask."""
    t, d = 5, 8
    bias = np.random.default_rng(0).standard_normal((t, t)).astype(np.float32)
    g = import_onnx(_attention(t, d, 1, bias, seed=0))
    assert masked_softmax_chains(g) == []
    ranges = {a: (-1.0, 1.0) for a in g.activations()}
    plan = plan_quantization(g, ranges)
    assert not any(op.kind in ("ADD", "SOFTMAX") and (op.name or op.outputs[0]) in plan.float_islands
                   for op in g.ops)


def _attention_op(t: int, is_causal: int = 1, mode: int = 0) -> onnx.ModelProto:
    """ONNX Attention (opset 23) on q = x, k = x @ wk, v = x @ wv; ``is_causal`` adds a -inf mask."""
    rng = np.random.default_rng(t)
    inits = [numpy_helper.from_array((rng.standard_normal((8, 8)) * 0.4).astype(np.float32), w) for w in ("wk", "wv")]
    outs = ["y"] + (["pk", "pv", "qk"] if mode else [])
    nodes = [helper.make_node("MatMul", ["x", "wk"], ["k"]), helper.make_node("MatMul", ["x", "wv"], ["v"]),
             helper.make_node("Attention", ["x", "k", "v"], outs, name="self_attn", is_causal=is_causal,
                              **({"qk_matmul_output_mode": mode} if mode else {}))]
    shape = [1, 2, t, 8]
    vis = [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, shape)]
    if mode:
        vis += [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in ("pk", "pv", "qk")]
    g = helper.make_graph(nodes, "a", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, shape)], vis, inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 23)])


def _convert_in_memory(g, calib: list[np.ndarray]):  # type: ignore[no-untyped-def]
    """calibrate -> plan -> .tflite bytes (the pipeline's steps, without its checks on constants)."""
    ranges = calibrate(g, calib, "minmax", runs=FloatRuns(g, float_session(g)))
    plan = plan_quantization(g, ranges)
    return ranges, plan, build_tflite(g, plan)


def test_attention_is_causal_infinite_mask(tmp_path):
    """Attention(is_causal=1) expands to an Add of a -inf mask: no longer refused; calibration accepts the -inf
    of the masked sum, whose range is the scores' own; the written model matches onnxruntime and micro ==
    tflite-micro. (The pipeline's check of constants for NaN/inf is upstream of this.)"""
    t = 6
    m = _attention_op(t)
    g = import_onnx(m)
    chains = masked_softmax_chains(g)
    assert len(chains) == 1 and mask_constants(g)
    assert np.isneginf(g.tensors[next(iter(mask_constants(g)))].data).any()
    rng = np.random.default_rng(0)
    calib = [rng.standard_normal((1, 2, t, 8)).astype(np.float32) for _ in range(8)]
    ranges, _, data = _convert_in_memory(g, calib)
    assert all(np.isfinite(ranges[s]).all() for s in masked_sums(g))
    path = tmp_path / "a.tflite"
    path.write_bytes(data)
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    runner = TFLiteRunner(str(path))
    x = rng.standard_normal((1, 2, t, 8)).astype(np.float32)
    got = runner.run(list(ir_feed(g, (x,)).values()))[0]
    ref = sess.run(None, {"x": x})[0]
    assert _sqnr(ref, got.transpose(0, 3, 1, 2) if got.shape != ref.shape else got) >= MIN_SQNR
    qx = [[runner._q(v, runner.inps[0]).reshape(runner.inps[0]["shape"])] for v in ir_feed(g, (x,)).values()]
    a, b = run_micro(path, qx)[0], run_tflm(path, qx)[0]
    assert all(np.array_equal(p, q) for p, q in zip(a, b))


def test_masked_sum_as_output_is_still_refused():
    """An Attention whose masked scores are also an output (qk_matmul_output_mode=2 in onnx 1.2x) cannot be int8: one line."""
    with pytest.raises(UnsupportedModelError) as e:
        import_onnx(_attention_op(4, mode=2))
    msg = str(e.value)
    assert "\n" not in msg and "'self_attn' (Attention)" in msg and "mask" in msg, msg


def _fully_masked(t: int) -> np.ndarray:
    mask = _mask(t, -np.inf, "causal", np.random.default_rng(0))
    mask[1] = -np.inf  # row 1 hides every position: its float softmax is 0/0 = NaN
    return mask


def test_fully_masked_row_is_refused_at_calibration_in_one_line():
    t = 4
    g = import_onnx(_attention(t, 8, 1, _fully_masked(t), seed=0))
    calib = [np.random.default_rng(0).standard_normal((1, t, 8)).astype(np.float32)]
    with pytest.raises(CalibrationDataError) as e:
        calibrate(g, calib, "minmax", runs=FloatRuns(g, float_session(g)))
    msg = str(e.value)
    assert "\n" not in msg and "(SOFTMAX) NaN" in msg and "every position" in msg, msg


def test_nan_elsewhere_still_fails_calibration():
    """-inf is accepted in the masked sums only: an input with NaN still fails."""
    t = 4
    g = import_onnx(_attention(t, 8, 1, _mask(t, -np.inf, "causal", np.random.default_rng(0)), seed=0))
    x = np.random.default_rng(0).standard_normal((1, t, 8)).astype(np.float32)
    x[0, 0, 0] = np.nan
    with pytest.raises(CalibrationDataError):
        calibrate(g, [x], "minmax", runs=FloatRuns(g, float_session(g)))


def test_fully_masked_row_in_int8_is_no_crash(tmp_path):
    """A written model whose mask hides a whole row (calibrated on a mask that does not): the island's float
    SOFTMAX gives NaN there and QUANTIZE turns it into some int8 code (C leaves the cast undefined; x86 gives
    INT32_MIN, clamped to 127); micro and tflite-micro both run without a crash and agree (micro copies x86)."""
    t, d = 4, 8
    g = import_onnx(_attention(t, d, 1, _mask(t, -np.inf, "causal", np.random.default_rng(0)), seed=0))
    rng = np.random.default_rng(0)
    calib = [rng.standard_normal((1, t, d)).astype(np.float32) for _ in range(4)]
    mask = next(iter(mask_constants(g)))
    ranges = calibrate(g, calib, "minmax", runs=FloatRuns(g, float_session(g)))
    g.tensors[mask].data = _fully_masked(t).reshape(g.tensors[mask].data.shape)
    path = tmp_path / "full.tflite"
    path.write_bytes(build_tflite(g, plan_quantization(g, ranges)))
    runner = TFLiteRunner(str(path))
    qx = [[runner._q(calib[0], runner.inps[0]).reshape(runner.inps[0]["shape"])]]
    with np.errstate(invalid="ignore"):
        a = run_micro(path, qx)[0][0]
    b = run_tflm(path, qx)[0][0]
    assert a.dtype == b.dtype == np.int8 and a.shape == b.shape
    assert np.array_equal(a, b)
