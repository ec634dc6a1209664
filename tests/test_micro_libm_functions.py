"""micro's copies of glibc's float functions (edge_runtime/backends/micro/libm_*.py) against this machine's C library.

tflite-micro's float LOG, SIN, COS, TANH, ELU, LOGISTIC and LOG_SOFTMAX call ``logf``, ``sinf``, ``cosf``,
``tanhf``, ``expm1f`` and ``expf`` of the C library it is linked with (the Python wheel: x86-64 glibc). Each
micro function must give the C function's float32 bit for bit (NaN where NaN) on every float32 exponent, random
bit patterns, the ranges where the methods switch branches, and the special values. The reference is the C
function itself, called through ctypes one value at a time.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import platform

import numpy as np
import pytest

from edge_runtime.backends.micro.libm_expm1f import ExpM1F
from edge_runtime.backends.micro.libm_logf import LogF
from edge_runtime.backends.micro.libm_sincosf import CosF, SinF
from edge_runtime.backends.micro.libm_tanhf import TanhF
from tflite_builder import T, build, run_micro, run_tflm


def _glibc() -> "tuple[ctypes.CDLL, tuple[int, ...]]":
    name = ctypes.util.find_library("m")
    if name is None or platform.machine() != "x86_64":  # the reference tflite-micro wheel's platform (glibc)
        pytest.skip("compared with x86-64 glibc, what tflite-micro's Python wheel calls")
    try:
        version = ctypes.CDLL(None).gnu_get_libc_version
    except AttributeError:
        pytest.skip("not glibc")
    version.restype = ctypes.c_char_p
    return ctypes.CDLL(name), tuple(int(v) for v in version().decode().split(".")[:2])


def _c_results(name: str, x: np.ndarray) -> np.ndarray:
    libm, version = _glibc()
    if name in ("expm1f", "tanhf") and version >= (2, 41):
        pytest.skip(f"glibc {version} takes {name} from CORE-MATH; micro reproduces the fdlibm one of older glibc")
    f = getattr(libm, name)
    f.restype, f.argtypes = ctypes.c_float, [ctypes.c_float]
    return np.array([f(v) for v in x.tolist()], np.float32)


def _bits(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 2 ** 32, n, dtype=np.uint64).astype(np.uint32).view(np.float32)


def _every_exponent(rng: np.random.Generator, per: int = 40) -> np.ndarray:
    """``per`` random significands for each of the 512 sign and exponent fields (zeros, subnormals, inf, NaN
    among them)."""
    top = np.repeat(np.arange(512, dtype=np.uint32) << np.uint32(23), per)
    low = rng.integers(0, 1 << 23, top.size, dtype=np.uint32)
    low[::per] = 0  # the powers of two, +-0 and +-inf
    return (top | low).view(np.float32)


SPECIAL = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 1.0, -1.0, 1e-45, -1e-45, 1.1754942e-38,
                    1.1754944e-38, -1.1754944e-38, 3.4028235e38, -3.4028235e38, 0.5, 2.0, 0.75, 1e-30, 1e30],
                   np.float32)


def _ranges(name: str, rng: np.random.Generator) -> np.ndarray:
    """Values where the function's method changes branch, and its usual inputs."""
    if name == "logf":
        near = np.float32(1) + np.arange(-3000, 3000, dtype=np.float32) * np.float32(2 ** -24)
        return np.concatenate([rng.uniform(0, 4, 30_000), rng.lognormal(0, 20, 20_000), near]).astype(np.float32)
    if name in ("sinf", "cosf"):
        k = np.concatenate([np.arange(-80, 81), rng.integers(-10 ** 6, 10 ** 6, 300)])
        quarter = (k * (np.pi / 2)).astype(np.float32)  # nearest floats to multiples of pi/2 (cancellations)
        around = np.concatenate([np.nextafter(quarter, np.float32(np.inf)), np.nextafter(quarter, -np.float32(np.inf)),
                                 quarter])
        tops = np.array([0x3F3FFFFF, 0x3F400000, 0x3F490FDB, 0x42EFFFFF, 0x42F00000, 0x39800000, 0x397FFFFF],
                        np.uint32).view(np.float32)
        return np.concatenate([rng.uniform(-10, 10, 20_000), rng.uniform(-200, 200, 20_000),
                               (rng.standard_normal(5_000) * 1e6), around, tops, -tops]).astype(np.float32)
    if name == "expm1f":
        tops = np.array([0x3EB17218, 0x3EB17219, 0x3F851591, 0x3F851592, 0x4195B843, 0x4195B844, 0x42B17180,
                         0x42B17181, 0x42B17217, 0x42B17218, 0x33000000, 0x32FFFFFF], np.uint32).view(np.float32)
        return np.concatenate([rng.standard_normal(30_000) * 3, rng.uniform(-20, 90, 20_000), tops,
                               -tops]).astype(np.float32)
    tops = np.array([0x3F800000, 0x3F7FFFFF, 0x41B00000, 0x41AFFFFF, 0x24000000, 0x23FFFFFF],
                    np.uint32).view(np.float32)
    return np.concatenate([rng.standard_normal(30_000) * 2, rng.uniform(-25, 25, 20_000), tops,
                           -tops]).astype(np.float32)


@pytest.mark.parametrize("name,function", [("logf", LogF), ("sinf", SinF), ("cosf", CosF), ("expm1f", ExpM1F),
                                           ("tanhf", TanhF)])
def test_equals_the_c_librarys_function(name, function):
    rng = np.random.default_rng(sum(map(ord, name)))
    x = np.concatenate([_every_exponent(rng), _bits(rng, 40_000), _ranges(name, rng), SPECIAL])
    ref = _c_results(name, x)
    out = np.full_like(x, 7.0)
    function(x.size)(x, out)
    same = (out.view(np.uint32) == ref.view(np.uint32)) | (np.isnan(out) & np.isnan(ref))
    bad = np.flatnonzero(~same)
    assert bad.size == 0, (f"{name}: {bad.size} of {x.size} differ from the C library's, e.g. x={x[bad[:4]]}: "
                           f"{out[bad[:4]]} vs {ref[bad[:4]]}")
    # in place, and an odd size (several chunks and a remainder), give the same
    y = x[:10_001].copy()
    function(64)(y, y)
    assert np.array_equal(y, out[:10_001], equal_nan=True)


@pytest.mark.parametrize("rows,depth,spread", [(5, 300, 3.0), (40, 7, 30.0), (3, 5000, 0.5), (9, 1, 2.0)])
def test_float_log_softmax_bit_exact_on_random_rows(tmp_path, rows, depth, spread):
    """TFLM's float LOG_SOFTMAX (expf, a left-to-right float32 sum, logf) bit for bit against tflite-micro,
    with rows holding NaN, -inf, signed zeros (the first zero of a zero maximum is kept) and all -inf."""
    rng = np.random.default_rng(rows * depth)
    x = (rng.standard_normal((rows, depth)) * spread).astype(np.float32)
    x[0, :: 3] = -0.0
    x[0, 1:: 3] = 0.0
    x[0, 2:: 3] = -5.0
    if depth > 3:
        x[1, 1], x[2, 2] = np.nan, -np.inf
    x[-1] = -np.inf if rows > 5 else x[-1]
    path = build(tmp_path / "ls.tflite", "LOG_SOFTMAX", [T([rows, depth], "float32")], [T([rows, depth], "float32")])
    ours = run_micro(path, [[x]])[0][0]
    ref = run_tflm(path, [[x]])[0][0]
    assert np.array_equal(ours, ref, equal_nan=True)
    assert np.array_equal(np.signbit(ours[~np.isnan(ours)]), np.signbit(ref[~np.isnan(ref)]))


def test_float_logistic_cutoffs_bit_exact(tmp_path):
    """LOGISTIC around TFLM's float cut-offs (16.619047 and -9) and across expf's range, against tflite-micro."""
    rng = np.random.default_rng(5)
    edges = np.array([16.619047, 16.619049, 16.619045, -9.0, -8.999999, -9.000001, 88.8, -88.8, -104.0, -200.0],
                     np.float32)
    x = np.concatenate([edges, rng.uniform(-120, 30, 4000).astype(np.float32)]).reshape(1, -1)
    path = build(tmp_path / "lg.tflite", "LOGISTIC", [T(list(x.shape), "float32")], [T(list(x.shape), "float32")])
    assert np.array_equal(run_micro(path, [[x]])[0][0], run_tflm(path, [[x]])[0][0], equal_nan=True)


def test_elu_float_and_int8_tables(tmp_path):
    """float ELU is expm1f below 0 (bit for bit with tflite-micro); the int8 table is unchanged by it."""
    rng = np.random.default_rng(11)
    x = np.concatenate([rng.standard_normal(3000) * 4, [-0.0, 0.0, -1e-40, -30.0, np.nan]]).astype(np.float32)
    x = x.reshape(1, -1)
    path = build(tmp_path / "elu.tflite", "ELU", [T(list(x.shape), "float32")], [T(list(x.shape), "float32")])
    ours, ref = run_micro(path, [[x]])[0][0], run_tflm(path, [[x]])[0][0]
    assert np.array_equal(ours, ref, equal_nan=True)
    assert np.array_equal(np.signbit(ours[~np.isnan(ours)]), np.signbit(ref[~np.isnan(ref)]))
    q = np.arange(-128, 128, dtype=np.int8).reshape(1, -1)
    path = build(tmp_path / "elu8.tflite", "ELU", [T([1, 256], "int8", 0.05, 3)], [T([1, 256], "int8", 0.02, 40)])
    assert np.array_equal(run_micro(path, [[q]])[0][0], run_tflm(path, [[q]])[0][0])

