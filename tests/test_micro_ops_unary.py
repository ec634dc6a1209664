"""Unary micro kernels against tflite-micro: hypothesis over shapes, options and quantization.

Integer kernels must be bit-exact (``np.array_equal``); float32 kernels within 1e-6 of the
largest reference value. Each generated model gets several input sets, one of which walks
through every value of an 8-bit input type (or a spread of 16-bit ones), so the prepare-time
tables are checked entry by entry. Unsupported types and parameters must be refused at load
with one UnsupportedModelError naming the op.
"""
from __future__ import annotations

import itertools
import tempfile
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_runtime.backends.micro import open_model
from edge_runtime.errors import InputError, UnsupportedModelError
from tflite_builder import NP_TYPES, T, build, opts, run_micro, tflm

_DIR = Path(tempfile.mkdtemp(prefix="micro_unary_"))
_COUNT = itertools.count()

SETTINGS = dict(deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))


def _path(op: str) -> Path:
    return _DIR / f"{op.lower()}_{next(_COUNT)}.tflite"


shapes = st.lists(st.integers(1, 6), min_size=1, max_size=4).map(tuple)
#: Shapes with a longer last axis (rows for the normalizations), at most 4096 elements.
row_shapes = st.lists(st.integers(1, 40), min_size=1, max_size=4).map(tuple).filter(lambda s: np.prod(s) <= 4096)
scales = st.floats(-9.0, 3.0).map(lambda e: float(np.float32(2.0 ** e)))
zp8 = st.integers(-128, 127)


def _inputs(shape: tuple[int, ...], dtype: str, rng: np.random.Generator, n: int = 4,
            lo: Optional[float] = None, hi: Optional[float] = None) -> list[list[np.ndarray]]:
    """``n`` random input sets plus one that walks through the type's values."""
    dt = np.dtype(NP_TYPES[dtype])
    size = int(np.prod(shape))
    sets = []
    for k in range(n + 1):
        if dt == np.bool_:
            x = rng.integers(0, 2, size=shape).astype(np.bool_)
        elif dt.kind in "iu":
            info = np.iinfo(dt)
            a = int(info.min if lo is None else max(lo, info.min))
            b = int(info.max if hi is None else min(hi, info.max))
            if dt.itemsize > 2 and lo is None:
                a, b = -100000, 100000
            if k == n:  # walk through the range
                x = np.resize(np.linspace(a, b, num=min(b - a + 1, max(size, 256))).astype(np.int64)[
                    rng.permutation(min(b - a + 1, max(size, 256)))], shape).astype(dt)
            else:
                x = rng.integers(a, b, size=shape, endpoint=True).astype(dt)
        else:
            if lo is not None:
                x = rng.uniform(lo, hi, size=shape).astype(dt)
            else:
                x = (rng.standard_normal(shape) * (3 if k % 2 else 20)).astype(dt)
        sets.append([x])
    return sets


def _run_tflm(path: Path, sets: list) -> list:
    """tflite-micro's outputs, with an arena sized for the activations (the builder's default is too small)."""
    nbytes = sum(int(x.nbytes) for xs in sets[:1] for x in xs)
    ref = tflm.Interpreter.from_file(str(path), arena_size=64 * 1024 + 24 * nbytes)
    out = []
    for xs in sets:
        ref.reset()
        for i, x in enumerate(xs):
            ref.set_input(np.ascontiguousarray(x), i)
        ref.invoke()
        out.append([np.array(ref.get_output(0))])
    return out


def _check(path: Path, sets: list, kind: str, rtol: float = 1e-6) -> None:
    """micro (in-place planning on and off) against tflite-micro: exact, or within ``rtol`` for floats."""
    expect = _run_tflm(path, sets)
    for in_place in (False, True):
        got = run_micro(path, sets, in_place)
        for k, (g, e) in enumerate(zip(got, expect)):
            a, b = g[0], e[0]
            assert a.dtype == b.dtype and a.shape == b.shape, f"{a.dtype}{a.shape} vs tflite-micro {b.dtype}{b.shape}"
            if kind == "exact" or a.dtype.kind != "f":
                same = a.reshape(-1) == b.reshape(-1)
                if a.dtype.kind == "f":
                    same |= np.isnan(a.reshape(-1)) & np.isnan(b.reshape(-1))
                bad = np.flatnonzero(~same)
                assert bad.size == 0, (f"{path.name} set {k} (in_place={in_place}): at {bad[:5]} inputs "
                                       f"{sets[k][0].reshape(-1)[bad[:5]]}: {a.reshape(-1)[bad[:5]]} vs tflite-micro "
                                       f"{b.reshape(-1)[bad[:5]]}")
            else:
                scale = max(1.0, float(np.max(np.abs(np.nan_to_num(b.astype(np.float64), posinf=0, neginf=0)))))
                same = (a == b) | (np.isnan(a) & np.isnan(b))
                err = np.where(same, 0.0, np.abs(a.astype(np.float64) - b.astype(np.float64)))
                assert not np.any(np.isnan(err)) and float(np.max(err, initial=0.0)) <= rtol * scale, \
                    f"{path.name} set {k}: max error {np.max(err)} > {rtol} x {scale}"


def _refused(path: Path, op: str) -> None:
    with pytest.raises(UnsupportedModelError) as e:
        open_model(str(path))
    msg = str(e.value)
    assert op in msg and "\n" not in msg


# ---------------------------------------------------------------------------- float32-only math ops

FLOAT_OPS = {
    "NEG": None, "CEIL": None, "FLOOR": None, "ROUND": None, "SQRT": (0.0, 50.0), "EXP": (-20.0, 20.0),
    "LOG": (1e-3, 100.0), "SIN": None, "COS": None, "SQUARE": None, "ABS": None, "RSQRT": (1e-2, 100.0),
    "ELU": None, "HARD_SWISH": None, "LOG_SOFTMAX": None, "L2_NORMALIZATION": None,
}


#: Float ops whose numpy ufuncs round exactly as TFLM's C code (IEEE operations, no libm
#: transcendental), and those calling the C library's expf, logf, sinf, cosf, expm1f, which micro computes
#: as glibc does (edge_runtime/backends/micro/libm_*.py): checked bit for bit.
EXACT_FLOAT_OPS = ("NEG", "CEIL", "FLOOR", "ROUND", "SQRT", "SQUARE", "ABS", "RSQRT", "HARD_SWISH",
                   "L2_NORMALIZATION", "EXP", "LOG", "SIN", "COS", "ELU", "LOG_SOFTMAX")

#: Float32 values that stress an elementwise kernel: signed zeros, denormals, the extremes of the
#: range, infinities, NaN, halves (rounding ties), negatives (NaN from SQRT/RSQRT).
FLOAT_EXTREMES = np.array([0.0, -0.0, 1e-45, -1e-45, 3e-39, -3e-39, 1.17e-38, 3.4e38, -3.4e38, 1e20, -1e20,
                           np.inf, -np.inf, np.nan, 0.5, -0.5, 1.5, -2.5, 2.5, -0.3, 0.3, 8388607.5, -3.0, 3.0,
                           6.0, 7.0, -1e-7], np.float32)


def _check_float_bits(path: Path, shape, seed: int) -> None:  # type: ignore[no-untyped-def]
    """micro (in-place planning on and off) == tflite-micro bit for bit (NaN where NaN, the sign of
    zeros too) on inputs drawn from :data:`FLOAT_EXTREMES`."""
    rng = np.random.default_rng(seed)
    sets = [[rng.choice(FLOAT_EXTREMES, size=shape).astype(np.float32)] for _ in range(3)]
    expect = _run_tflm(path, sets)
    for in_place in (False, True):
        for k, (g, e) in enumerate(zip(run_micro(path, sets, in_place), expect)):
            a, b = g[0], e[0]
            same = np.array_equal(a, b, equal_nan=True) and np.array_equal(np.signbit(a[~np.isnan(a)]),
                                                                             np.signbit(b[~np.isnan(b)]))
            assert same, (f"{path.name} set {k} (in_place={in_place}): inputs {sets[k][0].ravel()[:6]}: "
                          f"{a.ravel()[:6]} vs tflite-micro {b.ravel()[:6]}")


@pytest.mark.parametrize("op", [pytest.param(op, marks=pytest.mark.parity(op, "float32")) for op in EXACT_FLOAT_OPS]
                         + [pytest.param(op, marks=pytest.mark.parity(op, "float32", "close"))
                            for op in FLOAT_OPS if op not in EXACT_FLOAT_OPS])
@settings(max_examples=25, **SETTINGS)
@given(shape=shapes, seed=st.integers(0, 2**31))
def test_float_ops(op, shape, seed):
    p = _path(op)
    options = opts("L2NormOptions", fusedActivationFunction=0) if op == "L2_NORMALIZATION" else None
    build(p, op, [T(shape, "float32")], [T(shape, "float32")], options)
    rng = np.random.default_rng(seed)
    lim = FLOAT_OPS[op]
    sets = _inputs(shape, "float32", rng, 8, *(lim or (None, None)))
    if op in ("ROUND", "CEIL", "FLOOR"):
        sets.append([(np.round(rng.standard_normal(shape) * 8) / 2).astype(np.float32)])  # ties
    exact = op in EXACT_FLOAT_OPS
    _check(p, sets, "exact" if exact else "close")
    if exact:
        _check_float_bits(p, shape, seed)


@pytest.mark.parity("LOGICAL_NOT", "bool")
@settings(max_examples=30, **SETTINGS)
@given(shape=shapes, seed=st.integers(0, 2**31))
def test_logical_not(shape, seed):
    p = _path("LOGICAL_NOT")
    build(p, "LOGICAL_NOT", [T(shape, "bool")], [T(shape, "bool")])
    _check(p, _inputs(shape, "bool", np.random.default_rng(seed), 6), "exact")


@pytest.mark.parametrize("dtype", [pytest.param(t, marks=pytest.mark.parity("ZEROS_LIKE", t))
                                   for t in ("int8", "int32", "int64")]
                         + [pytest.param("float32", marks=pytest.mark.parity("ZEROS_LIKE", "float32"))])
@settings(max_examples=10, **SETTINGS)
@given(shape=shapes, seed=st.integers(0, 2**31))
def test_zeros_like(dtype, shape, seed):
    p = _path("ZEROS_LIKE")
    build(p, "ZEROS_LIKE", [T(shape, dtype)], [T(shape, dtype)])
    _check(p, _inputs(shape, dtype, np.random.default_rng(seed), 3), "exact")
    if dtype == "float32":
        _check_float_bits(p, shape, seed)


# ---------------------------------------------------------------------------- quantized elementwise ops

@pytest.mark.parametrize("op,dtype", [
    pytest.param(op, t, marks=pytest.mark.parity(op, t))
    for op, t in [("ABS", "int8"), ("ABS", "int16"), ("RSQRT", "int8"), ("RSQRT", "int16"), ("ELU", "int8"),
                  ("HARD_SWISH", "int8"), ("LEAKY_RELU", "int8"), ("LEAKY_RELU", "int16")]])
@settings(max_examples=40, **SETTINGS)
@given(shape=shapes, sx=scales, sy=scales, zx=zp8, zy=zp8, alpha=st.floats(-2.0, 2.0), same=st.booleans(),
       seed=st.integers(0, 2**31))
def test_quantized_elementwise(op, dtype, shape, sx, sy, zx, zy, alpha, same, seed):
    if dtype == "int16":
        zx = zy = 0
    if same:
        sy = sx
        if op == "ABS":
            zy = zx
    if op == "HARD_SWISH":
        sy = max(sy, float(np.float32(sx / 128.0)) * 1.001)  # TFLM needs output_multiplier <= 1
    p = _path(op)
    options = opts("LeakyReluOptions", alpha=alpha) if op == "LEAKY_RELU" else None
    build(p, op, [T(shape, dtype, scale=sx, zp=zx)], [T(shape, dtype, scale=sy, zp=zy)], options)
    lo = zx if op == "RSQRT" else None
    _check(p, _inputs(shape, dtype, np.random.default_rng(seed), 3, lo=lo), "exact")


@pytest.mark.parity("ABS", "int16")
@settings(max_examples=10, **SETTINGS)
@given(shape=shapes, seed=st.integers(0, 2**31))
def test_abs_int16_plain(shape, seed):
    p = _path("ABS")
    build(p, "ABS", [T(shape, "int16")], [T(shape, "int16")])
    sets = _inputs(shape, "int16", np.random.default_rng(seed), 3)
    sets.append([np.full(shape, -32768, np.int16)])
    _check(p, sets, "exact")


def test_rsqrt_below_zero_point_is_an_input_error():
    p = _path("RSQRT")
    build(p, "RSQRT", [T((4,), "int8", scale=0.1, zp=3)], [T((4,), "int8", scale=0.05, zp=-10)])
    m = open_model(str(p))
    m.run([np.array([3, 4, 5, 6], np.int8)])
    with pytest.raises(InputError):
        m.run([np.array([3, 4, 2, 6], np.int8)])


@pytest.mark.parity("LEAKY_RELU", "float32")
@settings(max_examples=25, **SETTINGS)
@given(shape=shapes, alpha=st.floats(-2.0, 2.0), seed=st.integers(0, 2**31))
def test_leaky_relu_float(shape, alpha, seed):
    p = _path("LEAKY_RELU")
    build(p, "LEAKY_RELU", [T(shape, "float32")], [T(shape, "float32")], opts("LeakyReluOptions", alpha=alpha))
    _check(p, _inputs(shape, "float32", np.random.default_rng(seed), 6), "exact")
    _check_float_bits(p, shape, seed)


# ---------------------------------------------------------------------------- normalizations

@pytest.mark.parity("L2_NORMALIZATION", "int8")
@settings(max_examples=60, **SETTINGS)
@given(shape=row_shapes, sx=scales, zx=zp8,
       sy=scales, zy=zp8, small=st.booleans(), seed=st.integers(0, 2**31))
def test_l2_normalization_int8(shape, sx, zx, sy, zy, small, seed):
    p = _path("L2_NORMALIZATION")
    build(p, "L2_NORMALIZATION", [T(shape, "int8", scale=sx, zp=zx)], [T(shape, "int8", scale=1 / 128, zp=0)],
          opts("L2NormOptions", fusedActivationFunction=0))
    rng = np.random.default_rng(seed)
    sets = _inputs(shape, "int8", rng, 3)
    if small:  # rows near the zero point (tiny sums of squares)
        sets.append([np.clip(zx + rng.integers(-2, 3, size=shape), -128, 127).astype(np.int8)])
    _check(p, sets, "exact")


@pytest.mark.parity("LOG_SOFTMAX", "int8")
@settings(max_examples=60, **SETTINGS)
@given(shape=row_shapes, sx=scales, zx=zp8,
       seed=st.integers(0, 2**31))
def test_log_softmax_int8(shape, sx, zx, seed):
    p = _path("LOG_SOFTMAX")
    build(p, "LOG_SOFTMAX", [T(shape, "int8", scale=sx, zp=zx)], [T(shape, "int8", scale=16 / 256, zp=127)])
    _check(p, _inputs(shape, "int8", np.random.default_rng(seed), 4), "exact")


# ---------------------------------------------------------------------------- CAST

CAST_TYPES = ("float32", "int8", "int16", "int32", "uint32", "bool")


@pytest.mark.parametrize("src,dst", [
    pytest.param(a, b, marks=pytest.mark.parity("CAST", a)) for a in CAST_TYPES for b in CAST_TYPES])
@settings(max_examples=6, **SETTINGS)
@given(shape=shapes, seed=st.integers(0, 2**31))
def test_cast(src, dst, shape, seed):
    p = _path("CAST")
    build(p, "CAST", [T(shape, src)], [T(shape, dst)])
    rng = np.random.default_rng(seed)
    sets = _inputs(shape, src, rng, 4)
    if src == "float32":
        big = rng.standard_normal(shape) * 10.0 ** rng.integers(0, 11, size=shape)
        sets.append([big.astype(np.float32)])
        sets.append([np.resize(np.array([np.nan, np.inf, -np.inf, -0.9, 0.9, 2.5, -2.5], np.float32), shape)])
    if src in ("int32", "uint32"):
        info = np.iinfo(NP_TYPES[src])
        sets.append([rng.integers(int(info.min), int(info.max), size=shape, endpoint=True).astype(NP_TYPES[src])])
    _check(p, sets, "exact")


# ---------------------------------------------------------------------------- refusals

@pytest.mark.parametrize("op,dtype", [
    ("NEG", "int8"), ("CEIL", "int32"), ("FLOOR", "int8"), ("ROUND", "int16"), ("SQRT", "int8"), ("EXP", "int8"),
    ("LOG", "int16"), ("SIN", "int32"), ("COS", "bool"), ("SQUARE", "int8"), ("LOGICAL_NOT", "int8"),
    ("ELU", "int16"), ("HARD_SWISH", "int16"), ("LEAKY_RELU", "int32"), ("ZEROS_LIKE", "bool"),
    ("L2_NORMALIZATION", "int16"), ("LOG_SOFTMAX", "int16"), ("ABS", "int32"), ("RSQRT", "int32"),
    ("CAST", "int64"),
])
def test_unsupported_types_are_refused(op, dtype):
    p = _path(op)
    q = {"scale": 0.1, "zp": 0} if dtype in ("int8", "int16") else {}
    build(p, op, [T((2, 3), dtype, **q)], [T((2, 3), dtype, **q)])
    _refused(p, op)


def test_unsupported_parameters_are_refused():
    p = _path("LOG_SOFTMAX")
    build(p, "LOG_SOFTMAX", [T((2, 3), "int8", scale=0.1, zp=0)], [T((2, 3), "int8", scale=1 / 256, zp=-128)])
    _refused(p, "LOG_SOFTMAX")
    p = _path("L2_NORMALIZATION")
    build(p, "L2_NORMALIZATION", [T((2, 3), "float32")], [T((2, 3), "float32")],
          opts("L2NormOptions", fusedActivationFunction=1))
    _refused(p, "L2_NORMALIZATION")
    p = _path("ABS")
    build(p, "ABS", [T((2, 3), "int16", scale=0.1, zp=3)], [T((2, 3), "int16", scale=0.1, zp=3)])
    _refused(p, "ABS")
    p = _path("CAST")
    build(p, "CAST", [T((2, 3), "float32")], [T((2, 3), "float16")])
    _refused(p, "CAST")
    p = _path("HARD_SWISH")
    build(p, "HARD_SWISH", [T((2, 3), "int8", scale=1.0, zp=0)], [T((2, 3), "int8", scale=1e-4, zp=0)])
    _refused(p, "HARD_SWISH")
    p = _path("ELU")
    build(p, "ELU", [T((2, 3), "int8")], [T((2, 3), "int8")])
    _refused(p, "ELU")


# ---------------------------------------------------------------------------- core activations

pot_or_any = st.one_of(st.sampled_from([2.0 ** -12, 2.0 ** -13, 2.0 ** -11, 2.0 ** -15]), st.floats(-16.0, -6.0).map(
    lambda e: float(np.float32(2.0 ** e))))


@pytest.mark.parametrize("op,dtype", [
    pytest.param(op, t, marks=pytest.mark.parity(op, t))
    for op in ("LOGISTIC", "TANH", "RELU", "RELU6") for t in ("int8", "int16")])
@settings(max_examples=40, **SETTINGS)
@given(shape=shapes, sx=scales, sx16=pot_or_any, sy=scales, zx=zp8, zy=zp8, seed=st.integers(0, 2**31))
def test_core_activations_quantized(op, dtype, shape, sx, sx16, sy, zx, zy, seed):
    if op in ("LOGISTIC", "TANH"):
        if dtype == "int16":
            sx, zx, sy, zy = sx16, 0, 2.0 ** -15, 0
        else:
            sy, zy = (1 / 256, -128) if op == "LOGISTIC" else (1 / 128, 0)
    if op == "RELU6":
        sy, zy = sx, zx
    if dtype == "int16" and op.startswith("RELU"):
        zx = zy = 0 if op == "RELU" else zx
    p = _path(op)
    build(p, op, [T(shape, dtype, scale=sx, zp=zx)], [T(shape, dtype, scale=sy, zp=zy)], version=2)
    _check(p, _inputs(shape, dtype, np.random.default_rng(seed), 3), "exact")


@pytest.mark.parametrize("op", [pytest.param(op, marks=pytest.mark.parity(op, "float32"))
                                for op in ("LOGISTIC", "TANH", "RELU", "RELU6")])  # (glibc's expf, tanhf)
@settings(max_examples=20, **SETTINGS)
@given(shape=shapes, seed=st.integers(0, 2**31))
def test_core_activations_float(op, shape, seed):
    p = _path(op)
    build(p, op, [T(shape, "float32")], [T(shape, "float32")])
    _check(p, _inputs(shape, "float32", np.random.default_rng(seed), 6), "exact")
    _check_float_bits(p, shape, seed)


# ---------------------------------------------------------------------------- QUANTIZE / DEQUANTIZE

Q_PAIRS = [("float32", "int8"), ("float32", "int16"), ("int8", "int8"), ("int8", "uint8"), ("int8", "int16"),
           ("int8", "int32"), ("int16", "int8"), ("int16", "int16"), ("int16", "int32"), ("uint8", "int8"),
           ("int32", "int8"), ("int32", "int16")]


def _zp(dtype: str, draw: int) -> int:
    return {"int8": draw, "uint8": draw + 128, "int16": 0, "int32": draw}.get(dtype, 0)


@pytest.mark.parametrize("src,dst", [pytest.param(a, b, marks=pytest.mark.parity("QUANTIZE", a if a != "float32" else b))
                                     for a, b in Q_PAIRS])
@settings(max_examples=25, **SETTINGS)
@given(shape=shapes, sx=scales, sy=scales, zx=zp8, zy=zp8, seed=st.integers(0, 2**31))
def test_quantize(src, dst, shape, sx, sy, zx, zy, seed):
    p = _path("QUANTIZE")
    qx = {} if src == "float32" else {"scale": sx, "zp": _zp(src, zx)}
    build(p, "QUANTIZE", [T(shape, src, **qx)], [T(shape, dst, scale=sy, zp=_zp(dst, zy))], version=2)
    rng = np.random.default_rng(seed)
    sets = _inputs(shape, src, rng, 3)
    if src == "float32":
        ties = (rng.integers(-300, 300, size=shape) + 0.5) * np.float32(sy)
        sets.append([ties.astype(np.float32)])
        sets.append([np.resize(np.array([1e12, -1e12, np.nan, np.inf, -np.inf, 0.0], np.float32), shape)])
    _check(p, sets, "exact")


@pytest.mark.parametrize("src", [pytest.param(t, marks=pytest.mark.parity("DEQUANTIZE", t))
                                 for t in ("int8", "int16", "uint8")])
@settings(max_examples=25, **SETTINGS)
@given(shape=shapes, sx=scales, zx=zp8, seed=st.integers(0, 2**31))
def test_dequantize(src, shape, sx, zx, seed):
    p = _path("DEQUANTIZE")
    build(p, "DEQUANTIZE", [T(shape, src, scale=sx, zp=_zp(src, zx))], [T(shape, "float32")], version=2)
    _check(p, _inputs(shape, src, np.random.default_rng(seed), 3), "exact")


@settings(max_examples=20, **SETTINGS)
@given(shape=shapes, seed=st.integers(0, 2**31))
def test_dequantize_float16_weights(shape, seed):
    """fp16 weights -> DEQUANTIZE -> ADD (TFLM's DEQUANTIZE has no float16; checked exactly and against LiteRT)."""
    from tflite_builder import ModelBuilder, assert_close

    rng = np.random.default_rng(seed)
    w = (rng.standard_normal(shape) * 5).astype(np.float16)
    mb = ModelBuilder()
    sg = mb.subgraph("main")
    wt = sg.tensor(T(shape, "float16", data=w))
    wf, x, y = sg.tensor(T(shape, "float32")), sg.tensor(T(shape, "float32")), sg.tensor(T(shape, "float32"))
    sg.op("DEQUANTIZE", [wt], [wf], version=3)
    sg.op("ADD", [x, wf], [y], opts("AddOptions", fusedActivationFunction=0))
    sg.io([x], [y])
    p = mb.write(_path("DEQUANTIZE"))
    xs = [[(rng.standard_normal(shape)).astype(np.float32)] for _ in range(3)]
    for in_place in (False, True):
        for got, xv in zip(run_micro(p, xs, in_place), xs):
            assert np.array_equal(got[0], xv[0] + w.astype(np.float32))
    assert_close(p, xs, ref="litert")


def test_quantize_dequantize_refusals():
    p = _path("QUANTIZE")
    build(p, "QUANTIZE", [T((2, 3), "int32", scale=0.1, zp=0)], [T((2, 3), "int32", scale=0.1, zp=0)])
    _refused(p, "QUANTIZE")
    p = _path("QUANTIZE")
    build(p, "QUANTIZE", [T((2, 3), "float32")], [T((2, 3), "int8", scale=[0.1, 0.2, 0.3], zp=0, axis=1)])
    _refused(p, "QUANTIZE")
    p = _path("DEQUANTIZE")
    build(p, "DEQUANTIZE", [T((2, 3), "int32", scale=0.1, zp=0)], [T((2, 3), "float32")])
    _refused(p, "DEQUANTIZE")
    for op, t in (("LOGISTIC", "int16"), ("TANH", "int16")):
        p = _path(op)
        build(p, op, [T((2, 3), t, scale=2.0 ** -12, zp=0)], [T((2, 3), t, scale=1 / 30000, zp=0)])
        _refused(p, op)
    p = _path("RELU")
    build(p, "RELU", [T((2, 3), "int32")], [T((2, 3), "int32")])
    _refused(p, "RELU")


# ---------------------------------------------------------------------------- SOFTMAX (int8, float32)

@pytest.mark.parity("SOFTMAX", "int8")
@settings(max_examples=50, **SETTINGS)
@given(shape=row_shapes, sx=scales, zx=zp8, beta=st.floats(0.1, 2.0), seed=st.integers(0, 2**31))
def test_softmax_int8(shape, sx, zx, beta, seed):
    p = _path("SOFTMAX")
    build(p, "SOFTMAX", [T(shape, "int8", scale=sx, zp=zx)], [T(shape, "int8", scale=1 / 256, zp=-128)],
          opts("SoftmaxOptions", beta=beta), version=2)
    _check(p, _inputs(shape, "int8", np.random.default_rng(seed), 3), "exact")


@pytest.mark.parity("SOFTMAX", "float32")
@settings(max_examples=30, **SETTINGS)
@given(shape=row_shapes, beta=st.floats(0.1, 2.0), seed=st.integers(0, 2**31))
def test_softmax_float(shape, beta, seed):
    """TFLM's float softmax bit for bit: glibc's expf (libm_expf), the float32 left-to-right sum, the division."""
    p = _path("SOFTMAX")
    build(p, "SOFTMAX", [T(shape, "float32")], [T(shape, "float32")], opts("SoftmaxOptions", beta=beta))
    _check(p, _inputs(shape, "float32", np.random.default_rng(seed), 3), "exact")


@pytest.mark.parity("SOFTMAX", "int16")
@settings(max_examples=80, **SETTINGS)
@given(shape=row_shapes, sx=st.floats(-16.0, -2.0).map(lambda e: float(np.float32(2.0 ** e))),
       beta=st.floats(0.05, 3.0), narrow=st.integers(1, 32767), seed=st.integers(0, 2**31))
def test_softmax_int16(shape, sx, beta, narrow, seed):
    """TFLM's int16 softmax: interpolated exp and 1/(1+x) tables, over full-range and narrow inputs."""
    p = _path("SOFTMAX")
    build(p, "SOFTMAX", [T(shape, "int16", scale=sx, zp=0)], [T(shape, "int16", scale=1 / 32768, zp=0)],
          opts("SoftmaxOptions", beta=beta), version=3)
    rng = np.random.default_rng(seed)
    sets = _inputs(shape, "int16", rng, 2)
    sets += [[rng.integers(-narrow, narrow + 1, size=shape).astype(np.int16)] for _ in range(2)]
    _check(p, sets, "exact")


@pytest.mark.parity("SOFTMAX", "int8")
@settings(max_examples=60, **SETTINGS)
@given(shape=row_shapes, sx=scales, zx=zp8, beta=st.floats(0.1, 2.0), seed=st.integers(0, 2**31))
def test_softmax_int8_to_int16(shape, sx, zx, beta, seed):
    """int8 input, int16 output (zero point -32768, scale 1/65536), in place with the wider output too."""
    p = _path("SOFTMAX")
    build(p, "SOFTMAX", [T(shape, "int8", scale=sx, zp=zx)], [T(shape, "int16", scale=1 / 65536, zp=-32768)],
          opts("SoftmaxOptions", beta=beta), version=2)
    _check(p, _inputs(shape, "int8", np.random.default_rng(seed), 3), "exact")


def test_softmax_int16_output_params_are_checked():
    """TFLM's Prepare fixes the int16 output at scale 1/32768, zero point 0: others are refused in one line."""
    p = _path("SOFTMAX")
    build(p, "SOFTMAX", [T((2, 5), "int16", scale=0.001, zp=0)], [T((2, 5), "int16", scale=1 / 1000, zp=0)],
          opts("SoftmaxOptions", beta=1.0))
    _refused(p, "SOFTMAX")
    p = _path("SOFTMAX")
    build(p, "SOFTMAX", [T((2, 5), "int8", scale=0.1, zp=0)], [T((2, 5), "int16", scale=1 / 65536, zp=0)],
          opts("SoftmaxOptions", beta=1.0))
    _refused(p, "SOFTMAX")


@pytest.mark.parity("LEAKY_RELU", "int8")
@pytest.mark.parametrize("alpha,sx,sy", [(-0.5, 1.0, 1.0), (-0.75, 0.1, 0.3), (-1.7, 0.02, 0.05), (-0.3, 0.05, 0.01),
                                         (0.5, 1.0, 1.0), (0.2, 0.04, 0.02)])
def test_leaky_relu_every_int8_input_with_negative_and_positive_alpha(tmp_path, alpha, sx, sy):
    """All 256 int8 inputs against tflite-micro, including its rounding for a negative alpha multiplier."""
    from tflite_builder import T, assert_exact, build, opts

    p = build(tmp_path / "lr.tflite", "LEAKY_RELU", [T((256,), "int8", scale=sx, zp=3)],
              [T((256,), "int8", scale=sy, zp=-2)], opts("LeakyReluOptions", alpha=alpha))
    assert_exact(p, [[np.arange(-128, 128, dtype=np.int8)]])


