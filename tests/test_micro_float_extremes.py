"""micro's float32 kernels on extreme values: inf, NaN, values that overflow, against tflite-micro.

- No kernel prints a numpy RuntimeWarning (overflow, invalid, divide): in tflite-micro's C an
  overflow is inf and an invalid operation NaN, results rather than messages; micro gives the same
  values silently (the test turns warnings into errors).
- The outputs equal tflite-micro's (``np.array_equal``, NaN equal to NaN) for every op, the transcendental
  ones included: micro computes glibc's expf, logf, sinf, cosf, expm1f and tanhf as the C library does
  (edge_runtime/backends/micro/libm_*.py).
- MAXIMUM and MINIMUM pick as TFLM does, ``a > b ? a : b`` and ``a < b ? a : b``: a NaN in the
  second input wins, a NaN in the first input loses, also when either input is broadcast.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from tflite_builder import T, build, opts, run_micro, run_tflm

EXTREMES = np.array([3e38, -3e38, 1e30, -1e30, 0.0, -0.0, 1.0, -2.5, np.inf, -np.inf, np.nan, 1e-40],
                    np.float32).reshape(1, 12)
UNARY = ["ABS", "NEG", "SQUARE", "EXP", "SOFTMAX", "LOG", "SQRT", "RSQRT", "SIN", "COS", "TANH", "LOGISTIC", "HARD_SWISH",
         "RELU", "RELU6", "LEAKY_RELU", "ELU", "FLOOR", "CEIL", "ROUND", "ZEROS_LIKE", "LOG_SOFTMAX"]
BINARY = ["ADD", "SUB", "MUL", "DIV", "SQUARED_DIFFERENCE", "MAXIMUM", "MINIMUM", "FLOOR_MOD"]


def _pairs() -> list[np.ndarray]:
    """Every extreme against every extreme: two (1, 144) inputs."""
    a, b = np.meshgrid(EXTREMES.ravel(), EXTREMES.ravel())
    return [a.reshape(1, -1).astype(np.float32), b.reshape(1, -1).astype(np.float32)]


def _run_quietly(path: Path, inputs: list[np.ndarray]) -> list[np.ndarray]:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return run_micro(path, [inputs])[0]


def _agree(op: str, ours: np.ndarray, ref: np.ndarray) -> None:
    assert np.array_equal(ours, ref, equal_nan=True), (op, ours, ref)


@pytest.mark.parametrize("op", UNARY)
def test_unary_extremes_silent_and_equal_to_tflm(tmp_path, op):
    options = (opts("LeakyReluOptions", alpha=2.0) if op == "LEAKY_RELU" else
               opts("SoftmaxOptions", beta=1.0) if op == "SOFTMAX" else None)
    path = build(tmp_path / f"{op}.tflite", op, [T([1, 12], "float32")], [T([1, 12], "float32")], options)
    ours = _run_quietly(path, [EXTREMES])
    ref = run_tflm(path, [[EXTREMES]])[0][0]
    _agree(op, ours[0], ref)
    assert np.array_equal(np.signbit(ours[0][~np.isnan(ours[0])]), np.signbit(ref[~np.isnan(ref)])), (op, ours, ref)


@pytest.mark.parametrize("op", BINARY)
def test_binary_extremes_silent_and_equal_to_tflm(tmp_path, op):
    a, b = _pairs()
    path = build(tmp_path / f"{op}.tflite", op, [T(list(a.shape), "float32"), T(list(b.shape), "float32")],
                 [T(list(a.shape), "float32")])
    ours = _run_quietly(path, [a, b])
    _agree(op, ours[0], run_tflm(path, [[a, b]])[0][0])


def test_prelu_extremes_silent_and_equal_to_tflm(tmp_path):
    alpha = np.array([3.0, -2.0, 0.5, 1e30, 0.0, 1.0, -1.0, 2.0, 1e-3, 4.0, -0.25, 1e20], np.float32)
    path = build(tmp_path / "prelu.tflite", "PRELU", [T([1, 12], "float32"), T([12], "float32", data=alpha)],
                 [T([1, 12], "float32")])
    ours = _run_quietly(path, [EXTREMES])
    assert np.array_equal(ours[0], run_tflm(path, [[EXTREMES]])[0][0], equal_nan=True)


@pytest.mark.parametrize("op", ["MAXIMUM", "MINIMUM"])
@pytest.mark.parametrize("shapes", [([2, 3, 5], [2, 3, 5]), ([2, 3, 5], [1]), ([1], [2, 3, 5]), ([2, 1, 5], [1, 3, 1])])
def test_min_max_nan_placement_with_broadcasting(tmp_path, op, shapes):
    rng = np.random.default_rng(len(shapes[0]) * 7 + len(shapes[1]))
    xs = []
    for shape in shapes:
        x = rng.standard_normal(shape).astype(np.float32)
        x[rng.random(shape) < 0.3] = np.nan
        xs.append(x)
    xs[0].flat[0], xs[1].flat[0] = np.nan, np.float32(1.0)  # a NaN in the first input only, at least once
    out = list(np.broadcast_shapes(*shapes))
    path = build(tmp_path / f"{op}.tflite", op, [T(shapes[0], "float32"), T(shapes[1], "float32")],
                 [T(out, "float32")])
    ours = _run_quietly(path, xs)[0]
    ref = run_tflm(path, [xs])[0][0]
    assert np.array_equal(ours, ref, equal_nan=True)
    a, b = np.broadcast_arrays(*xs)
    expected = np.where(a > b, a, b) if op == "MAXIMUM" else np.where(a < b, a, b)
    assert np.array_equal(ours, expected, equal_nan=True)
    assert not np.isnan(ours.flat[0])  # the first input's NaN lost to the second input's 1.0


def test_int8_min_max_unchanged(tmp_path):
    rng = np.random.default_rng(3)
    for op in ("MAXIMUM", "MINIMUM"):
        path = build(tmp_path / f"{op}_i8.tflite", op, [T([4, 6], "int8", 0.1, 3), T([1, 6], "int8", 0.1, 3)],
                     [T([4, 6], "int8", 0.1, 3)])
        xs = [rng.integers(-128, 128, (4, 6)).astype(np.int8), rng.integers(-128, 128, (1, 6)).astype(np.int8)]
        assert np.array_equal(run_micro(path, [xs])[0][0], run_tflm(path, [xs])[0][0])


@pytest.mark.parametrize("depth,rows,spread,beta", [(6625, 3, 3.0, 1.0), (1000, 4, 5.0, 0.7), (10, 40, 2.0, 1.0),
                                                    (520, 5, 0.01, 1.0), (7, 9, 30.0, 2.5)])
def test_float_softmax_and_exp_bit_exact_on_random_rows(tmp_path, depth, rows, spread, beta):
    """TFLM's float SOFTMAX (expf, a left-to-right float32 sum, a division) and EXP, bit for bit, on wide
    and narrow rows: micro computes glibc's expf (libm_expf) and sums as TFLM's loop does."""
    rng = np.random.default_rng(depth + rows)
    x = (rng.standard_normal((rows, depth)) * spread).astype(np.float32)
    path = build(tmp_path / "softmax.tflite", "SOFTMAX", [T([rows, depth], "float32")], [T([rows, depth], "float32")],
                 opts("SoftmaxOptions", beta=beta))
    assert np.array_equal(_run_quietly(path, [x])[0], run_tflm(path, [[x]])[0][0])
    path = build(tmp_path / "exp.tflite", "EXP", [T([rows, depth], "float32")], [T([rows, depth], "float32")])
    assert np.array_equal(_run_quietly(path, [x])[0], run_tflm(path, [[x]])[0][0])


def test_expf_equals_the_c_librarys_expf():
    """libm_expf.ExpF against this machine's C library ``expf`` (called through ctypes) on 200,000 values
    across the whole float32 range it is defined on, and the special values."""
    import ctypes
    import ctypes.util

    from edge_runtime.backends.micro.libm_expf import ExpF

    import platform

    name = ctypes.util.find_library("m")
    if name is None or platform.machine() != "x86_64":  # the reference tflite-micro wheel's platform (glibc)
        pytest.skip("compared with x86-64 glibc's expf, what tflite-micro's Python wheel calls")
    libm = ctypes.CDLL(name)
    libm.expf.restype, libm.expf.argtypes = ctypes.c_float, [ctypes.c_float]
    rng = np.random.default_rng(7)
    x = np.concatenate([(rng.standard_normal(100_000) * 5).astype(np.float32),
                        rng.uniform(-110, 90, 100_000).astype(np.float32),
                        np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 88.72283, 88.72284, -103.97, -103.98, 1e-30,
                                  -1e-30, 88.0, -87.5, -100.0], np.float32)])
    ref = np.array([libm.expf(float(v)) for v in x], np.float32)
    out = np.empty_like(x)
    with np.errstate(all="ignore"):
        ExpF(x.size)(x, out)
        rounded = np.exp(x.astype(np.float64)).astype(np.float32)
    assert np.array_equal(out, ref, equal_nan=True)
    assert not np.array_equal(rounded, ref, equal_nan=True)  # glibc's expf is not the rounded exp
