"""The cheaper arena planning of ``edge-convert`` (fit phase) gives the same plans and kernel constants.

- ``plan_arena``'s default traits reuse the kernels its coverage check built; planning with an
  explicit ``op_memory`` that builds every kernel again (the former path) must give the same
  plan, in place and not, on the MLPerf Tiny models and on built CONV/DEPTHWISE/FC models;
- each CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED kernel is built once per plan;
- the vectorised output-stage constants (``quantize_multipliers``, ``per_channel_multipliers``,
  ``FloatRequantizer``, ``weight_sums``) equal their per-value Python forms, written out here,
  for random and edge values, and raise the same errors;
- ``profiles_that_fit`` opens the model once and plans it at most twice, with the same answer.
"""
from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from tflite_builder import T, build, opts

from edge_runtime.arena import plan as plan_mod
from edge_runtime.arena.op_memory import KERNEL_TRAITS_SOURCE
from edge_runtime.arena.plan import ArenaPlan, plan_arena
from edge_runtime.backends.micro import fixedpoint as fp
from edge_runtime.backends.micro import memory_traits
from edge_runtime.backends.micro.kernels import conv as conv_mod
from edge_runtime.backends.micro.kernels import fully_connected as fc_mod
from edge_runtime.backends.micro.kernels import fully_connected_float as fcf_mod
from edge_runtime.formats.tflite import TFLiteModel

MLPERF = ["kws_ref_model", "kws_ref_model_float32", "vww_96_int8", "vww_96_float", "pretrainedResnet_quant",
          "pretrainedResnet", "ad01_int8", "ad01_fp32", "str_ww_ref_model"]
KERNELS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


# ----------------------------------------------------------------------------- plans

def _plan_fields(p: ArenaPlan) -> dict:
    """Every field of a plan except the label naming the traits function."""
    d = {k: v for k, v in asdict(p).items() if not k.startswith("_") and k != "op_memory_source"}
    d["json"] = {k: v for k, v in p.to_dict().items() if k != "op_memory"}
    return d


def _built_models(tmp: Path) -> list[Path]:
    """Small int8 / float / hybrid CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED models (one op each)."""
    rng = np.random.default_rng(7)
    out = []
    conv = opts("Conv2DOptions", padding=0, strideW=1, strideH=1, fusedActivationFunction=1)
    w = rng.integers(-127, 128, (6, 3, 3, 4)).astype(np.int8)
    out.append(build(tmp / "conv_int8.tflite", "CONV_2D", [
        T((1, 9, 7, 4), scale=0.03, zp=-5), T(w.shape, scale=rng.uniform(0.002, 0.02, 6), data=w),
        T((6,), "int32", scale=0.03 * 0.01, data=rng.integers(-900, 900, 6).astype(np.int32))],
        [T((1, 9, 7, 6), scale=0.2, zp=3)], conv, version=3))
    wf = rng.standard_normal((5, 3, 3, 4)).astype(np.float32)
    out.append(build(tmp / "conv_f32.tflite", "CONV_2D", [
        T((1, 8, 8, 4), "float32"), T(wf.shape, "float32", data=wf),
        T((5,), "float32", data=rng.standard_normal(5).astype(np.float32))],
        [T((1, 8, 8, 5), "float32")], conv, version=1))
    dw = opts("DepthwiseConv2DOptions", padding=0, strideW=1, strideH=1, depthMultiplier=1, fusedActivationFunction=3)
    wd = rng.integers(-127, 128, (1, 3, 3, 8)).astype(np.int8)
    out.append(build(tmp / "dw_int8.tflite", "DEPTHWISE_CONV_2D", [
        T((1, 10, 6, 8), scale=0.05, zp=7), T(wd.shape, scale=rng.uniform(0.002, 0.02, 8), data=wd, axis=3),
        T((8,), "int32", scale=0.05 * 0.01, data=rng.integers(-900, 900, 8).astype(np.int32))],
        [T((1, 10, 6, 8), scale=0.1, zp=-2)], dw, version=3))
    fc = opts("FullyConnectedOptions", fusedActivationFunction=0)
    wfc = rng.integers(-127, 128, (12, 20)).astype(np.int8)
    out.append(build(tmp / "fc_int8.tflite", "FULLY_CONNECTED", [
        T((3, 20), scale=0.04, zp=11), T(wfc.shape, scale=rng.uniform(0.002, 0.02, 12), data=wfc),
        T((12,), "int32", scale=0.04 * 0.01, data=rng.integers(-900, 900, 12).astype(np.int32))],
        [T((3, 12), scale=0.3, zp=-9)], fc, version=5))
    out.append(build(tmp / "fc_hybrid.tflite", "FULLY_CONNECTED", [
        T((2, 20), "float32"), T(wfc.shape, scale=0.01, data=wfc),
        T((12,), "float32", data=rng.standard_normal(12).astype(np.float32))],
        [T((2, 12), "float32")], fc, version=1))
    return out


def _assert_same_plans(path: Path) -> None:
    model = TFLiteModel.open(path)
    for in_place in (True, False):
        new = plan_arena(model, in_place=in_place)
        old = plan_arena(model, in_place=in_place, op_memory=memory_traits.op_memory)  # builds every kernel again
        assert new.op_memory_source == KERNEL_TRAITS_SOURCE
        assert _plan_fields(new) == _plan_fields(old), (path.name, in_place)


@pytest.mark.parametrize("name", MLPERF)
def test_default_traits_plan_equals_rebuilding_every_kernel(mlperf_models, name):
    _assert_same_plans(mlperf_models / f"{name}.tflite")


def test_built_models_plan_the_same(tmp_path):
    for path in _built_models(tmp_path):
        _assert_same_plans(path)


@pytest.mark.parametrize("limit", [memory_traits.DEFAULT_WORKSPACE_LIMIT, 16 * 1024])
def test_interpreter_plan_reuses_its_kernels_and_equals_the_rebuilt_plan(mlperf_models, tmp_path, limit, monkeypatch):
    """The micro interpreter plans with the kernels it has just built (each CONV/DEPTHWISE/FC built once):
    the same plan as building them again with ``make_op_memory``, in place and not, at two workspace limits."""
    from edge_runtime.backends.micro import interpreter as interp_mod
    from edge_runtime.formats.tflite_fold import fold_weight_decoders

    built: list[str] = []
    for cls in (conv_mod.Conv2D, conv_mod.DepthwiseConv2D, fc_mod.FullyConnected, fcf_mod.FullyConnectedFloat):
        def counting(self, ctx, _init=cls.__init__, _name=cls.__name__):  # type: ignore[no-untyped-def]
            built.append(_name)
            _init(self, ctx)

        monkeypatch.setattr(cls, "__init__", counting)
    paths = [mlperf_models / f"{n}.tflite" for n in MLPERF] + _built_models(tmp_path)
    for path in paths:
        for in_place in (True, False):
            built.clear()
            it = interp_mod.Interpreter(TFLiteModel.open(path), in_place=in_place, workspace_limit=limit)
            model = fold_weight_decoders(TFLiteModel.open(path))
            weighted = sum(op.name in KERNELS for op in model.main.operators)
            assert len(built) == weighted, (path.name, built)
            ref = plan_arena(model, in_place=in_place, op_memory=memory_traits.make_op_memory(limit))
            assert _plan_fields(it.plan) == _plan_fields(ref), (path.name, in_place, limit)


def test_reused_kernels_answer_what_a_fresh_kernel_answers(mlperf_models, tmp_path):
    paths = [mlperf_models / f"{n}.tflite" for n in ("kws_ref_model", "ad01_int8", "kws_ref_model_float32")]
    for path in paths + _built_models(tmp_path):
        model = TFLiteModel.open(path)
        kernels = plan_mod._require_known_ops(model, [0])
        assert kernels is not None and set(kernels) == {(0, op.index) for op in model.main.operators}
        reuse = memory_traits.op_memory_with_kernels(kernels)
        for op in model.main.operators:
            assert reuse(model, model.main, op) == memory_traits.op_memory(model, model.main, op), (path.name, op.index)


def test_each_kernel_is_built_once_per_plan(mlperf_models, monkeypatch):
    built: list[str] = []
    for cls in (conv_mod.Conv2D, conv_mod.DepthwiseConv2D, fc_mod.FullyConnected):
        init = cls.__init__

        def counting(self, ctx, _init=init, _name=cls.__name__):  # type: ignore[no-untyped-def]
            built.append(_name)
            _init(self, ctx)

        monkeypatch.setattr(cls, "__init__", counting)
    model = TFLiteModel.open(mlperf_models / "kws_ref_model.tflite")
    plan_arena(model, in_place=True)
    assert len(built) == sum(op.name in KERNELS for op in model.main.operators) == 10


# ----------------------------------------------------------------------------- multipliers

def _edge_reals(rng: np.random.Generator) -> np.ndarray:
    ties = [(k + 0.5) / 2 ** 31 for k in range(2 ** 30, 2 ** 30 + 300)]  # q * 2**31 exactly halfway
    tops = [(2 ** 31 - 0.5) / 2 ** 31 * 2.0 ** e for e in range(-40, 40)]  # rounds up to 2**31
    fixed = [0.0, -0.0, 5e-324, -5e-324, 2.2250738585072014e-308, 1e-310, 1.0, 0.5, -1.0, 1.7976931348623157e308,
             2.0 ** -31, 2.0 ** -32, 2.0 ** -33, np.nextafter(2.0 ** -32, 0), np.nextafter(1.0, 0)]
    spread = rng.standard_normal(4000) * 10.0 ** rng.integers(-45, 45, 4000)
    return np.concatenate([ties, np.negative(ties), tops, fixed, spread])


def test_quantize_multipliers_equal_the_scalar_form():
    reals = _edge_reals(np.random.default_rng(1))
    m, s = fp.quantize_multipliers(reals)
    assert m.dtype == s.dtype == np.int64
    assert list(zip(m.tolist(), s.tolist())) == [fp.quantize_multiplier(float(r)) for r in reals]


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan])
def test_quantize_multipliers_raise_as_the_scalar_form(bad):
    with pytest.raises(Exception) as scalar:
        fp.quantize_multiplier(bad)
    with pytest.raises(type(scalar.value), match=str(scalar.value)):
        fp.quantize_multipliers(np.array([0.5, bad]))


class _Ctx:
    def fail(self, why: str) -> ValueError:
        return ValueError(why)


def _ref_per_channel(in_scale, filter_scales, out_scale, channels):  # type: ignore[no-untyped-def]
    pairs = []
    for c in range(channels):
        fs = float(filter_scales[c if filter_scales.size > 1 else 0])
        pairs.append(fp.quantize_multiplier(float(np.float32(in_scale)) * fs / float(np.float32(out_scale))))
    return pairs


def test_per_channel_multipliers_equal_the_per_channel_loop():
    rng = np.random.default_rng(2)
    for trial in range(300):
        channels = int(rng.integers(1, 70))
        size = channels if trial % 3 else 1
        scales = (rng.uniform(0, 1, size) * 10.0 ** rng.integers(-12, 3, size)).astype(np.float32)
        if trial % 7 == 0:
            scales[0] = 0.0
        in_scale, out_scale = float(rng.uniform(1e-4, 1)), float(rng.uniform(1e-5, 10) * 10.0 ** rng.integers(-6, 3))
        m, s = conv_mod.per_channel_multipliers(_Ctx(), in_scale, scales, out_scale, channels)
        assert list(zip(m.tolist(), s.tolist())) == _ref_per_channel(in_scale, scales, out_scale, channels)


@pytest.mark.parametrize("in_scale,fs,out_scale,error", [
    (0.1, 0.01, 0.0, ZeroDivisionError), (np.inf, 0.01, 0.1, OverflowError), (0.1, np.nan, 0.1, ValueError)])
def test_per_channel_multipliers_keep_the_load_errors(in_scale, fs, out_scale, error):
    with pytest.raises(error):
        conv_mod.per_channel_multipliers(_Ctx(), in_scale, np.array([0.01, fs], np.float32), out_scale, 2)
    with pytest.raises(ValueError, match="3 scales for 2"):
        conv_mod.per_channel_multipliers(_Ctx(), 0.1, np.ones(3, np.float32), 0.1, 2)


# ----------------------------------------------------------------------------- float requantizer

def _ref_float_form(mc: int, sc: int, bc: int, zp: int) -> tuple[float, float, float]:
    left, right = max(sc, 0), max(-sc, 0)
    f = mc << left
    shift = 31 + right
    num = bc * f + (1 << 30) + ((1 << (30 + right)) if right > 0 else 0) + zp * (1 << shift)
    return math.ldexp(float(f), -shift), math.ldexp(float(num), -shift), math.ldexp(1.0, -right) if right else 0.0


def _ref_exact(mc: int, sc: int, bc: int, ac: int, zp: int) -> bool:
    left, right = max(sc, 0), max(-sc, 0)
    total = ((ac + abs(bc)) * (mc << left) + (1 << 30) + (1 << (30 + right)) + (1 << 31)
             + abs(zp) * (1 << (31 + right)))
    return total < (1 << 53) and mc >= 0


def _ref_create(ms, ss, zp, lo, hi, bias, bound):  # type: ignore[no-untyped-def]
    """FloatRequantizer.create per channel with Python ints: None, or (g, h, d, constant channels)."""
    n = ms.size
    constant = {}
    for c in range(n):
        mc, sc, bc, ac = int(ms[c]), int(ss[c]), int(bias[c]), int(bound[c])
        if _ref_exact(mc, sc, bc, ac, zp):
            continue
        ends = fp.multiply_by_quantized_multiplier(np.array([bc - ac, bc + ac], np.int64), mc, sc) + zp
        lo_out, hi_out = (min(hi, max(lo, int(v))) for v in ends)
        if lo_out != hi_out:
            return None
        constant[c] = lo_out
    g, h, d = zip(*(_ref_float_form(int(ms[c]), int(ss[c]), int(bias[c]), zp) for c in range(n)))
    g, h, d = list(g), list(h), list(d)
    for c, v in constant.items():
        g[c], h[c], d[c] = 0.0, v + 0.5, 0.0
    return np.array(g), np.array(h), np.array(d), len(constant)


def test_float_requantizer_equals_the_per_channel_python_form():
    rng = np.random.default_rng(3)
    outcomes = {"none": 0, "constant": 0, "exact": 0}
    for trial in range(1500):
        n = int(rng.choice([1, 3, 16, 64]))
        ms, ss = fp.quantize_multipliers(np.abs(rng.standard_normal(n)) * 10.0 ** rng.uniform(-12, 2, n))
        if trial % 10 == 0:  # unusual multipliers and shifts
            ms, ss = rng.integers(-(2 ** 40), 2 ** 40, n), rng.integers(-70, 70, n)
        zp = int(rng.choice([0, -128, 127, 5, int(rng.integers(-2 ** 20, 2 ** 20))]))
        lo, hi = (-128, 127) if trial % 2 else (max(-128, zp), 127)
        bias = rng.integers(-(2 ** int(rng.integers(1, 45))), 2 ** int(rng.integers(1, 45)), n)
        bound = rng.integers(0, 2 ** int(rng.integers(1, 45)), n)
        try:
            ref = _ref_create(ms, ss, zp, lo, hi, bias, bound)
        except OverflowError:  # (huge shifts: the int64 end-point check overflows, for both forms)
            with pytest.raises(OverflowError):
                fp.FloatRequantizer.create(ms, ss, zp, lo, hi, bias, bound)
            outcomes["raise"] = outcomes.get("raise", 0) + 1
            continue
        got = fp.FloatRequantizer.create(ms, ss, zp, lo, hi, bias, bound)
        assert (got is None) == (ref is None)
        if ref is None:
            outcomes["none"] += 1
            continue
        outcomes["constant" if ref[3] else "exact"] += 1
        for a, b in zip((got.g, got.h, got.d), ref[:3]):
            assert a.dtype == np.float64 and a.tobytes() == b.tobytes()
        assert got.constant_channels == ref[3]
    assert min(outcomes[k] for k in ("none", "constant", "exact")) > 50, outcomes  # every branch was taken


def test_exactness_is_decided_exactly_at_the_float64_limit():
    rng = np.random.default_rng(4)
    checked = 0
    for _ in range(400):
        mc, sc = fp.quantize_multiplier(float(abs(rng.standard_normal()) * 10.0 ** rng.uniform(-8, 2)))
        zp = int(rng.integers(-128, 128))
        left, right = max(sc, 0), max(-sc, 0)
        base = (1 << 30) + (1 << (30 + right)) + (1 << 31) + abs(zp) * (1 << (31 + right))
        f = mc << left
        if f <= 0 or base >= 1 << 53:
            continue
        a0 = ((1 << 53) - base) // f
        for delta in range(-3, 4):
            a = np.array([max(a0 + delta, 0)], np.int64)
            one = [np.array([v], np.int64) for v in (mc, sc, 0)]
            assert bool(fp._exact_mask(*one, a, zp)[0]) == _ref_exact(mc, sc, 0, int(a[0]), zp)
            checked += 1
    assert checked > 1000


def test_weight_sums_equal_rounded_float_sums():
    rng = np.random.default_rng(5)
    for shape, axis in (((64, 27), 0), ((9, 128), 1), ((1000, 3), 0), ((1, 1), 1)):
        w = rng.integers(-128, 128, shape).astype(np.int8)
        w.flat[0] = -128
        total, magnitude = conv_mod.weight_sums(w, axis)
        wf = w.astype(np.float64)
        assert total.tolist() == np.round(wf.sum(axis=1 - axis)).astype(np.int64).tolist()
        assert magnitude.tolist() == np.round(np.abs(wf).sum(axis=1 - axis)).astype(np.int64).tolist()


# ----------------------------------------------------------------------------- fit

def test_profiles_that_fit_plans_once_per_kind(mlperf_models, monkeypatch):
    from converters import fit
    from device_profiles import list_profiles

    path = mlperf_models / "kws_ref_model.tflite"
    expected = [p.name for p in list_profiles() if fit.fit_model(path, p).fits]
    calls: list[bool] = []
    real = plan_mod.plan_arena

    def counting(model, *a, **kw):  # type: ignore[no-untyped-def]
        calls.append(kw.get("in_place", True))
        return real(model, *a, **kw)

    monkeypatch.setattr(plan_mod, "plan_arena", counting)
    assert fit.profiles_that_fit(path) == expected and expected
    assert sorted(calls) == sorted(set(calls)) and 1 <= len(calls) <= 2


# ----------------------------------------------------------------------------- bad models keep their errors

def _bad_fc(tmp: Path, name: str, wscale: float | np.ndarray, out_scale: float, nbias: int,
            hybrid: bool = False) -> Path:
    rng = np.random.default_rng(9)
    w = rng.integers(-127, 128, (12, 20)).astype(np.int8)
    fc = opts("FullyConnectedOptions", fusedActivationFunction=0)
    if hybrid:
        return build(tmp / name, "FULLY_CONNECTED", [T((2, 20), "float32"), T(w.shape, scale=wscale, data=w),
                     T((12,), "float32", data=np.zeros(12, np.float32))], [T((2, 12), "float32")], fc, version=1)
    return build(tmp / name, "FULLY_CONNECTED", [
        T((3, 20), scale=0.04, zp=11), T(w.shape, scale=wscale, data=w),
        T((nbias,), "int32", scale=0.0004, data=np.arange(nbias, dtype=np.int32))],
        [T((3, 12), scale=out_scale, zp=-9)], fc, version=5)


@pytest.mark.parametrize("case,plan_error,load_error,words", [
    ("hybrid_scales", "ModelFormatError", "ModelFormatError", "tensor 1 ('t1') has 3 scales for 12 channels"),
    ("bias_size", "ArenaPlanError", "UnsupportedModelError", "bias 't2' has 5 values for 12 output channels"),
    ("zero_out_scale", "ModelFormatError", "ModelFormatError", "tensor 3 ('t3') with a zero or negative scale"),
    ("inf_scale", "ModelFormatError", "ModelFormatError", "tensor 1 ('t1') has a non-finite quantization scale"),
])
def test_bad_output_stages_are_refused_in_one_line(tmp_path, case, plan_error, load_error, words):
    """Malformed output stages reach neither numpy nor the multiplier arithmetic: the arena planner and the
    interpreter refuse them with the project's errors (they raised numpy's broadcast ValueError,
    ZeroDivisionError and OverflowError to library callers), naming the tensor."""
    from edge_runtime.backends.micro.interpreter import Interpreter
    from edge_runtime.errors import EdgeRuntimeError

    path = {
        "hybrid_scales": lambda: _bad_fc(tmp_path, "a.tflite", np.array([0.01, 0.02, 0.03]), 0.3, 12, hybrid=True),
        "bias_size": lambda: _bad_fc(tmp_path, "b.tflite", 0.01, 0.3, 5),
        "zero_out_scale": lambda: _bad_fc(tmp_path, "c.tflite", 0.01, 0.0, 12),
        "inf_scale": lambda: _bad_fc(tmp_path, "d.tflite", np.array([0.01] * 11 + [np.inf]), 0.3, 12),
    }[case]()
    for run, expected in ((plan_arena, plan_error), (Interpreter, load_error)):
        with pytest.raises(EdgeRuntimeError) as exc:
            run(TFLiteModel.open(path))
        assert type(exc.value).__name__ == expected and words in str(exc.value) and "\n" not in str(exc.value)
