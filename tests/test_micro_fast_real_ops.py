"""The compiled kernels added for real models (PaddleOCR's op mix), bit-exact with tflite-micro.

Each hypothesis example builds a one-op model and runs it on tflite-micro and on micro's two
kernel paths (compiled: ``EDGE_RUNTIME_MICRO_FAST=1``; numpy: ``=0``), in-place planning on and
off, and asserts ``np.array_equal`` everywhere; on the compiled path the op must report "numba":

- int8 ADD / SUB / MUL with broadcasting (random broadcast patterns up to rank 4, and the patterns
  of real models: squeeze-excitation channel scale [1, H, W, C] x [1, 1, 1, C], a scalar constant,
  [1, H, W, 1]); the collapsed iteration space against numpy's broadcasting;
- int8 MEAN and SUM over axes (1, 2) (global average pooling), keep_dims on and off;
- int8 TRANSPOSE_CONV, both compiled kernels (BLAS, direct): the random models of
  tests/test_micro_ops_spatial.py (also with a 4 KiB workspace: chunks of input rows), and the
  upsampling shape of a text detector (kernel 2, stride 2);
- int8 BATCH_MATMUL (the random models of tests/test_micro_ops_spatial.py: adjoints, broadcast
  batch dimensions, constant rhs);
- int8 DEPTHWISE_CONV_2D with 32+ channels (the untiled-weights kernel): padding, dilation, y-stride;
- int8 FULLY_CONNECTED with 8+ rows (one float32 BLAS product), sums up to the 2**24 limit;
- int8 RELU, RELU6, LOGISTIC, TANH (one pass of table lookups);
- the lookups of one-element-operand ADD/SUB/MUL and of those activations both 64 at a time
  (AVX512-VBMI, where the CPU has it) and one at a time.

Without numba these tests skip, except under ``CI=true`` where numba is expected.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("tflite_micro")

from tflite_builder import NP_TYPES, ModelFolder, T, build, opts, random_input, run_tflm  # noqa: E402
from test_micro_ops_binary import broadcast_shapes, scales  # noqa: E402
from test_micro_ops_spatial import batch_matmul_models, transpose_conv_models  # noqa: E402

from edge_runtime.backends.micro import fast, open_model  # noqa: E402

if not fast._numba_importable():
    if os.environ.get("CI", "").lower() == "true" and not os.environ.get("EDGE_RUNTIME_EMULATED"):
        raise RuntimeError("numba is not importable; CI installs the [fast] extra")
    pytest.skip("numba is not installed (pip install 'edge-runtime[fast]')", allow_module_level=True)

from edge_runtime.backends.micro.fast.broadcast import geometry  # noqa: E402
from test_micro_fast_numba import kernel_path  # noqa: E402

_MODELS = ModelFolder("micro_fast_real_")  # this module's own folder
SETS = 4


def _settings(n: int) -> Any:
    return settings(max_examples=n, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module", autouse=True)
def _cleanup_models() -> Iterator[None]:
    yield
    _MODELS.remove()


def _path(op: str) -> Path:
    return _MODELS.path(op)


def three_way(path: Path, op: str, seed: int = 0, expect_numba: bool = True, chunked: bool = False) -> None:
    """tflite-micro == micro's compiled path == micro's numpy path on random inputs, in place on and off
    (``chunked``: also with a 4 KiB workspace limit, so kernels work chunk by chunk); the op reports the
    path it took."""
    m0 = open_model(str(path))
    sets = [[random_input(s.shape, s.dtype, np.random.default_rng(seed + k)) for s in m0.inputs] for k in range(SETS)]
    expect = [r[0] for r in run_tflm(path, sets)]
    variants = [(kp, ip, {}) for kp in ("numba", "numpy") for ip in (False, True)]
    if chunked:
        variants += [(kp, True, {"workspace_limit": 4096}) for kp in ("numba", "numpy")]
    for kp, in_place, kw in variants:
        if True:
            with kernel_path(kp):
                m = open_model(str(path), in_place=in_place, **kw)
            taken = [p["path"] for p in m.info["kernel_paths"] if p["name"] == op]
            want = "numba" if (kp == "numba" and expect_numba) else "numpy"
            assert taken == [want], f"{op} took {taken}, expected {want}"
            for k, (xs, e) in enumerate(zip(sets, expect)):
                got = np.array(m.run(list(xs))[0])
                assert got.dtype == e.dtype and got.shape == e.shape, f"{got.dtype}{got.shape} vs {e.dtype}{e.shape}"
                assert np.array_equal(got, e), (f"{op} on {kp} (in_place={in_place}) set {k}: {got.ravel()[:8]} "
                                                f"vs tflite-micro {e.ravel()[:8]}")


# ------------------------------------------------------------------------------ broadcast ADD / SUB / MUL

def _indices(g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The flat element of each input that :func:`geometry`'s iteration visits, in output order."""
    d, sa, sb = g[:4], g[4:8], g[8:]
    grids = np.meshgrid(*[np.arange(n) for n in d], indexing="ij")
    return (sum(i * s for i, s in zip(grids, sa)).reshape(-1), sum(i * s for i, s in zip(grids, sb)).reshape(-1))


@_settings(300)
@given(broadcast_shapes(max_rank=6))
def test_geometry_visits_what_numpy_broadcasting_reads(shapes: Any) -> None:
    (sa, sb), so = shapes
    try:
        g = geometry(sa, sb, so)
    except ValueError:
        return  # (the kernel keeps the numpy path; a > 4-D pattern needs five alternating runs)
    assert int(np.prod(g[:4])) == int(np.prod(so))
    ia, ib = _indices(g)
    want_a = np.broadcast_to(np.arange(int(np.prod(sa))).reshape(sa), so).reshape(-1)
    want_b = np.broadcast_to(np.arange(int(np.prod(sb))).reshape(sb), so).reshape(-1)
    assert np.array_equal(ia, want_a) and np.array_equal(ib, want_b), (sa, sb, so, g)


def test_geometry_refuses_more_than_four_runs() -> None:
    with pytest.raises(ValueError, match="at most 4"):
        geometry((2, 1, 2, 1, 2), (1, 2, 1, 2, 1), (2, 2, 2, 2, 2))


@st.composite
def real_patterns(draw: Any) -> tuple[tuple, tuple, tuple]:
    """Broadcast patterns of real CNNs, [1, H, W, C] against a per-channel vector, a scalar, a per-pixel map
    (either side), or a random pattern up to rank 4."""
    h, w, c = draw(st.integers(1, 9)), draw(st.integers(1, 9)), draw(st.integers(1, 40))
    full = (1, h, w, c)
    kind = draw(st.sampled_from(["channel", "scalar", "pixel", "random"]))
    if kind == "random":
        (sa, sb), so = draw(broadcast_shapes(max_rank=4))
        return tuple(sa), tuple(sb), tuple(so)
    other = {"channel": (1, 1, 1, c), "scalar": (1,), "pixel": (1, h, w, 1)}[kind]
    return (full, other, full) if draw(st.booleans()) else (other, full, full)


@pytest.fixture(params=["vbmi", "scalar"])
def lookups(request: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both kinds of compiled lookup loop: 64 at a time with AVX512-VBMI (where the CPU has it), and scalar."""
    from edge_runtime.backends.micro.fast import lut_simd

    if request.param == "scalar":
        monkeypatch.setattr(lut_simd, "available", lambda: False)
    elif not lut_simd.available():
        pytest.skip("this CPU has no AVX512-VBMI")
    return str(request.param)


def test_vbmi_lookups_every_length_and_in_place() -> None:
    from edge_runtime.backends.micro.fast import jit_prepare, lut_simd

    if not lut_simd.available():
        pytest.skip("this CPU has no AVX512-VBMI")
    rng = np.random.default_rng(5)
    lut = rng.integers(-128, 128, 256).astype(np.int8)
    for n in list(range(200)) + [4096, 4097]:
        x = rng.integers(0, 256, n).astype(np.uint8)
        x[: min(n, 256)] = np.arange(min(n, 256))  # every index value
        y = np.empty(n, np.int8)
        jit_prepare(lut_simd.lut8_simd, x, lut, y)(x, lut, y)
        assert np.array_equal(y, lut[x]), n
        inplace = x.copy()
        lut_simd.lut8_simd(inplace, lut, inplace.view(np.int8))
        assert np.array_equal(inplace.view(np.int8), lut[x]), n


@pytest.mark.parametrize("op", ["ADD", "SUB", "MUL"])
@_settings(120)
@given(data=st.data())
def test_broadcast_binary_int8_bit_exact(lookups: str, op: str, data: Any) -> None:
    sa, sb, so = data.draw(real_patterns())  # (equal shapes take the equal-shape compiled kernel)
    a, b = (T(s, "int8", scale=data.draw(scales()), zp=data.draw(st.integers(-128, 127))) for s in (sa, sb))
    y = T(so, "int8", scale=data.draw(scales()), zp=data.draw(st.integers(-128, 127)))
    if op == "MUL":  # keep the output multiplier inside TFLM's range (micro refuses the rest)
        y.scale = max(y.scale, float(np.float32(a.scale)) * float(np.float32(b.scale)) / 1.9)
    const = data.draw(st.sampled_from([None, "a", "b"]))
    rng = np.random.default_rng(data.draw(st.integers(0, 99)))
    if const == "b":
        b.data = random_input(b.shape, NP_TYPES["int8"], rng)
    elif const == "a":
        a.data = random_input(a.shape, NP_TYPES["int8"], rng)
    act = data.draw(st.sampled_from([0, 1, 3]))
    kind = {"ADD": "AddOptions", "SUB": "SubOptions", "MUL": "MulOptions"}[op]
    p = build(_path(op), op, [a, b], [y], opts(kind, fusedActivationFunction=act))
    try:
        geometry(a.shape, b.shape, so)
        fits = True
    except ValueError:
        fits = False
    three_way(p, op, data.draw(st.integers(0, 99)), expect_numba=fits)


# ------------------------------------------------------------------------------------------ MEAN / SUM

@pytest.mark.parametrize("op", ["MEAN", "SUM"])
@_settings(120)
@given(data=st.data())
def test_mean_sum_over_hw_int8_bit_exact(op: str, data: Any) -> None:
    n, h, w, c = (data.draw(st.integers(1, 2)), data.draw(st.integers(1, 24)), data.draw(st.integers(1, 24)),
                  data.draw(st.integers(1, 48)))
    keep = data.draw(st.booleans())
    sx = data.draw(scales())
    # MEAN: any output scale near the input's; SUM: one that holds sums of a few values
    sy = float(np.float32(sx * 2.0 ** data.draw(st.floats(-2, 2 if op == "MEAN" else 6))))
    x = T((n, h, w, c), "int8", scale=sx, zp=data.draw(st.integers(-128, 127)))
    y = T((n, 1, 1, c) if keep else (n, c), "int8", scale=sy, zp=data.draw(st.integers(-128, 127)))
    axes = T((2,), "int32", data=np.array(data.draw(st.sampled_from([[1, 2], [2, 1], [-3, -2]])), np.int32))
    p = build(_path(op), op, [x, axes], [y], opts("ReducerOptions", keepDims=keep))
    three_way(p, op, data.draw(st.integers(0, 99)))


# ------------------------------------------------------------------------------------------ TRANSPOSE_CONV

@pytest.fixture(params=["blas", "direct"])
def tconv_kernel(request: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both compiled TRANSPOSE_CONV kernels: the BLAS one (SciPy installed) and the direct one (without)."""
    if request.param == "direct":
        monkeypatch.setattr(fast, "blas_available", lambda: False)
    elif not fast.blas_available():
        pytest.skip("SciPy (numba's BLAS bindings) is not installed")
    return str(request.param)


@_settings(100)
@given(path=transpose_conv_models("int8"))
def test_transpose_conv_int8_bit_exact(tconv_kernel: str, path: Path) -> None:
    three_way(path, "TRANSPOSE_CONV", chunked=True)


@pytest.mark.parametrize("cin,cout,bias", [(24, 24, True), (24, 1, True), (8, 3, False), (600, 4, True)])
def test_transpose_conv_upsampling_bit_exact(tconv_kernel: str, cin: int, cout: int, bias: bool) -> None:
    """A text detector's upsampling head: kernel 2, stride 2, SAME (600 input channels: past the BLAS
    kernel's float32-exact limit, the direct kernel runs)."""
    rng = np.random.default_rng(cin + cout)
    h = w = 12
    ws = rng.uniform(0.002, 0.02, cout).astype(np.float32)
    ins = [T([4], "int32", data=np.array([1, 2 * h, 2 * w, cout], np.int32)),
           T([cout, 2, 2, cin], "int8", scale=ws, zp=0, data=rng.integers(-127, 128, (cout, 2, 2, cin)).astype(np.int8)),
           T([1, h, w, cin], "int8", scale=0.03, zp=-5)]
    if bias:
        ins.append(T([cout], "int32", scale=(0.03 * ws.astype(np.float64)).astype(np.float32), zp=0,
                     data=rng.integers(-3000, 3000, cout).astype(np.int32)))
    p = build(_path("TRANSPOSE_CONV"), "TRANSPOSE_CONV", ins, [T([1, 2 * h, 2 * w, cout], "int8", scale=0.05, zp=3)],
              opts("TransposeConvOptions", padding=0, strideW=2, strideH=2, fusedActivationFunction=1), version=3)
    three_way(p, "TRANSPOSE_CONV")


# ------------------------------------------------------------------------------------------ BATCH_MATMUL

@_settings(150)
@given(batch_matmul_models("int8"))
def test_batch_matmul_int8_bit_exact(path: Path) -> None:
    three_way(path, "BATCH_MATMUL")


# ------------------------------------------------------------------------------- DEPTHWISE_CONV_2D, wide

@st.composite
def wide_depthwise_models(draw: Any) -> Path:
    """int8 DEPTHWISE_CONV_2D with 32+ channels, x-stride 1, multiplier 1 (the untiled-weights kernel)."""
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    c = draw(st.integers(32, 200))
    h, w = draw(st.integers(1, 7)), draw(st.integers(1, 9))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    sh, dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2)), draw(st.integers(1, 2))
    pad = draw(st.sampled_from([0, 1]))  # SAME, VALID
    if pad == 1:
        h, w = max(h, (kh - 1) * dh + 1), max(w, (kw - 1) * dw + 1)
    ho = -(-h // sh) if pad == 0 else (h - (kh - 1) * dh - 1) // sh + 1
    wo = w if pad == 0 else w - (kw - 1) * dw
    ws = rng.uniform(0.002, 0.02, c).astype(np.float32)
    sx = data_scale = float(np.float32(2.0 ** draw(st.floats(-8, -3))))
    ins = [T([1, h, w, c], "int8", scale=sx, zp=draw(st.integers(-128, 127))),
           T([1, kh, kw, c], "int8", scale=ws, zp=0, axis=3, data=rng.integers(-127, 128, (1, kh, kw, c)).astype(np.int8))]
    if draw(st.booleans()):
        ins.append(T([c], "int32", scale=(data_scale * ws.astype(np.float64)).astype(np.float32), zp=0,
                     data=rng.integers(-30000, 30000, c).astype(np.int32)))
    sy = float(np.float32(sx * float(ws.max()) * 127 * np.sqrt(kh * kw) * 2.0 ** draw(st.floats(-1, 2))))
    p = _path("DEPTHWISE_CONV_2D")
    build(p, "DEPTHWISE_CONV_2D", ins, [T([1, ho, wo, c], "int8", scale=sy, zp=draw(st.integers(-128, 127)))],
          opts("DepthwiseConv2DOptions", padding=pad, strideW=1, strideH=sh, depthMultiplier=1, dilationWFactor=dw,
               dilationHFactor=dh, fusedActivationFunction=draw(st.sampled_from([0, 1, 3]))), version=2)
    return p


@_settings(80)
@given(wide_depthwise_models())
def test_depthwise_many_channels_bit_exact(path: Path) -> None:
    three_way(path, "DEPTHWISE_CONV_2D")


# --------------------------------------------------------------------------- FULLY_CONNECTED, many rows

@st.composite
def many_row_fc_models(draw: Any) -> Path:
    """int8 FULLY_CONNECTED with 8+ rows (the BLAS kernel), up to 1024 terms (the float32-exact limit);
    output rows wider than input rows too (in place is then refused to the per-row kernel)."""
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    rows, k, units = draw(st.integers(8, 48)), draw(st.sampled_from([1, 7, 120, 300, 1024])), draw(st.integers(1, 300))
    sx = float(rng.uniform(0.01, 0.1))
    wscale = rng.uniform(0.002, 0.02, units) if draw(st.booleans()) else float(rng.uniform(0.002, 0.02))
    sy = float(sx * np.mean(wscale) * 70 * 70 * np.sqrt(k) / 40 * rng.uniform(0.5, 2))
    # extreme inputs are kept possible: the sums of a 1024-term row then reach 2**24
    ins = [T((rows, k), scale=sx, zp=int(rng.integers(-128, 128))),
           T((units, k), scale=wscale, data=rng.choice(np.array([-127, 127, 3, -5], np.int8), (units, k))
             if draw(st.booleans()) else rng.integers(-127, 128, (units, k)).astype(np.int8))]
    if draw(st.booleans()):
        ins.append(T((units,), "int32", scale=sx * np.asarray(wscale) * np.ones(units),
                     data=rng.integers(-3000, 3000, units).astype(np.int32)))
    p = _path("FULLY_CONNECTED")
    build(p, "FULLY_CONNECTED", ins, [T((rows, units), scale=sy, zp=int(rng.integers(-30, 30)))],
          opts("FullyConnectedOptions", fusedActivationFunction=draw(st.sampled_from([0, 1, 3]))), version=4)
    return p


@_settings(60)
@given(many_row_fc_models())
def test_fully_connected_many_rows_bit_exact(path: Path) -> None:
    three_way(path, "FULLY_CONNECTED")


def test_fully_connected_extreme_sums_bit_exact() -> None:
    """Every product at its extreme (-128 x -127 = 2**14 - 128, 1024 terms): sums near 2**24, exact in float32."""
    rows, k, units = 8, 1024, 16
    ins = [T((rows, k), scale=0.05, zp=0), T((units, k), scale=0.01, data=np.full((units, k), -127, np.int8))]
    p = build(_path("FULLY_CONNECTED"), "FULLY_CONNECTED", ins, [T((rows, units), scale=0.05 * 0.01 * 2 ** 18, zp=0)],
              opts("FullyConnectedOptions", fusedActivationFunction=0), version=4)
    x = np.full((rows, k), -128, np.int8)
    x[1::2] = 127
    expect = run_tflm(p, [[x]])[0][0]
    with kernel_path("numba"):
        m = open_model(str(p))
    assert [q["path"] for q in m.info["kernel_paths"]] == ["numba"]
    assert np.array_equal(np.array(m.run([x])[0]), expect)


# ------------------------------------------------------------------------------- int8 activations (LUT)

@pytest.mark.parametrize("op", ["RELU", "RELU6", "LOGISTIC", "TANH"])
@_settings(25)
@given(data=st.data())
def test_activation_lut_int8_bit_exact(lookups: str, op: str, data: Any) -> None:
    shape = tuple(data.draw(st.lists(st.integers(1, 9), min_size=1, max_size=4)))
    sx, zx = data.draw(scales()), data.draw(st.integers(-128, 127))
    sy, zy = {"LOGISTIC": (1 / 256, -128), "TANH": (1 / 128, 0), "RELU6": (sx, zx)}.get(
        op, (data.draw(scales()), data.draw(st.integers(-128, 127))))
    p = build(_path(op), op, [T(shape, "int8", scale=sx, zp=zx)], [T(shape, "int8", scale=sy, zp=zy)])
    three_way(p, op, data.draw(st.integers(0, 99)))

