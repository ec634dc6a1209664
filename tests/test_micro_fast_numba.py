"""The micro backend's compiled (numba) path and its numpy fallback, both bit-exact with tflite-micro.

- the five MLPerf Tiny int8 models on random inputs (in-place planning on and off) and on
  kws01's real inputs, each path forced with ``EDGE_RUNTIME_MICRO_FAST``;
- hypothesis-drawn CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, AVERAGE_POOL_2D and
  MAX_POOL_2D models (the generators and model builders of tests/test_micro_ops_conv.py) and
  int8 SOFTMAX models (those of tests/test_micro_ops_unary.py); ADD/SUB/MUL on all 65,536 input
  pairs; each compiled depthwise loop; CONV_2D as one call, and without SciPy; many chunks in place;
- the output stage's integer and float forms against the numpy Requantizer;
- ``Model.info`` reports the path each op took and the compile time.

Without numba these tests skip, except under ``CI=true`` where numba is expected.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import given, settings

import test_micro_fast_paths as fast_paths
import test_micro_ops_conv as ops
import test_micro_ops_unary as unary
from test_micro_models import INT8_MODELS, micro_run, tflm_run

from edge_runtime.backends.micro import fast, open_model

if not fast._numba_importable():
    # CI's host venv installs the [fast] extra; the emulated ARM roots (firmware_sim/qemu) do not
    if os.environ.get("CI", "").lower() == "true" and not os.environ.get("EDGE_RUNTIME_EMULATED"):
        raise RuntimeError("numba is not importable; CI installs the [fast] extra")
    pytest.skip("numba is not installed (pip install 'edge-runtime[fast]')", allow_module_level=True)

PATHS = ["numba", "numpy"]
FAST_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "AVERAGE_POOL_2D", "MAX_POOL_2D", "SOFTMAX", "ADD"}


@contextlib.contextmanager
def kernel_path(path: str) -> Iterator[None]:
    """Force the compiled (``"numba"``) or the numpy path for models opened inside."""
    old = os.environ.get("EDGE_RUNTIME_MICRO_FAST")
    os.environ["EDGE_RUNTIME_MICRO_FAST"] = "1" if path == "numba" else "0"
    try:
        yield
    finally:
        if old is None:
            del os.environ["EDGE_RUNTIME_MICRO_FAST"]
        else:
            os.environ["EDGE_RUNTIME_MICRO_FAST"] = old


def open_on(path: str, model: str, check: bool = True, **kw):  # type: ignore[no-untyped-def]
    """Open ``model`` on the given kernel path and (``check``) that its int8 kernel ops took it."""
    with kernel_path(path):
        m = open_model(str(model), **kw)
    if not check:
        return m
    taken = {p["path"] for p in m.info["kernel_paths"] if p["name"] in FAST_OPS}
    assert taken <= {path}, f"{model}: expected every kernel op on {path}, got {m.info['kernel_paths']}"
    return m


# --------------------------------------------------------------------------- MLPerf Tiny models

@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name", INT8_MODELS)
def test_mlperf_int8_random_inputs_bit_exact(mlperf_models, name, path):
    model = mlperf_models / f"{name}.tflite"
    m0 = open_on(path, model, in_place=False)
    spec = m0.inputs[0]
    x = np.random.default_rng(sum(map(ord, name)) + 7).integers(-128, 128, size=(40, *spec.shape)).astype(np.int8)
    ref = tflm_run(model, x)
    for m in (m0, open_on(path, model, in_place=True)):
        out = micro_run(m, x)
        diff = np.any(out != ref, axis=tuple(range(1, out.ndim)))
        assert not diff.any(), f"{name} on {path}: {int(diff.sum())} of {len(x)} outputs differ from tflite-micro"


@pytest.fixture(scope="module")
def kws01_reference(mlperf_models, kws01):
    """tflite-micro's outputs on the first 300 kws01 inputs."""
    return tflm_run(mlperf_models / "kws_ref_model.tflite", kws01[0][:300])


@pytest.mark.parametrize("path", PATHS)
def test_kws01_inputs_bit_exact(mlperf_models, kws01, kws01_reference, path):
    m = open_on(path, mlperf_models / "kws_ref_model.tflite")
    out = micro_run(m, kws01[0][:300])
    assert np.array_equal(out, kws01_reference)


def test_info_reports_paths_and_compile_time(mlperf_models):
    model = mlperf_models / "kws_ref_model.tflite"
    fast_m = open_on("numba", model)
    slow_m = open_on("numpy", model)
    paths = {p["name"]: p["path"] for p in fast_m.info["kernel_paths"]}
    assert paths["CONV_2D"] == paths["DEPTHWISE_CONV_2D"] == paths["AVERAGE_POOL_2D"] == "numba"
    assert paths["FULLY_CONNECTED"] == paths["SOFTMAX"] == "numba"
    assert len(fast_m.info["kernel_paths"]) == fast_m.info["ops"]
    assert fast_m.info["fast"]["available"] is True and fast_m.info["fast"]["compile_s"] >= 0.0
    assert {p["path"] for p in slow_m.info["kernel_paths"]} == {"numpy"}
    assert slow_m.info["fast"]["available"] is False and slow_m.info["fast"]["compile_s"] == 0.0
    # the compiled path drops the numpy float requantizer's tiles and widened FC weights
    assert fast_m.info["cache_bytes"] < slow_m.info["cache_bytes"]


def test_float_fully_connected_model_runs_compiled_and_bit_exact(mlperf_models):
    """A float model's FULLY_CONNECTED ops take the compiled float32 kernel (tflite-micro's summation order,
    no fused multiply-add) and give tflite-micro's bits; the numpy path gives the same."""
    path = mlperf_models / "ad01_fp32.tflite"
    m = open_on("numba", path, check=False)
    assert {p["path"] for p in m.info["kernel_paths"] if p["name"] == "FULLY_CONNECTED"} == {"numba"}
    slow = open_on("numpy", path, check=False)
    xs = np.random.default_rng(5).standard_normal((6, *m.inputs[0].shape)).astype(np.float32)
    want = tflm_run(path, xs)
    assert np.array_equal(micro_run(m, xs), want) and np.array_equal(micro_run(slow, xs), want)


# --------------------------------------------------------------------------- random single-op models

FAST_SETTINGS = settings(ops.SETTINGS, max_examples=60)
NUMPY_SETTINGS = settings(ops.SETTINGS, max_examples=20)


def _run(path: str, inner, *args) -> None:  # type: ignore[no-untyped-def]
    with kernel_path(path):
        inner(*args)


@FAST_SETTINGS
@given(g=ops.conv_geometry())
def test_conv2d_int8_numba(tmp_path, g):
    _run("numba", ops.test_conv2d_int8.hypothesis.inner_test, tmp_path, g)


@FAST_SETTINGS
@given(g=ops.conv_geometry(depthwise=True))
def test_depthwise_int8_numba(tmp_path, g):
    _run("numba", ops.test_depthwise_int8.hypothesis.inner_test, tmp_path, g)


@FAST_SETTINGS
@given(g=ops.fc_geometry())
def test_fully_connected_int8_numba(tmp_path, g):
    _run("numba", ops.test_fully_connected_int8.hypothesis.inner_test, tmp_path, g)


@FAST_SETTINGS
@given(g=ops.pool_geometry())
def test_average_pool_int8_numba(tmp_path, g):
    _run("numba", ops.test_average_pool_int8.hypothesis.inner_test, tmp_path, g)


@FAST_SETTINGS
@given(g=ops.pool_geometry())
def test_max_pool_int8_numba(tmp_path, g):
    _run("numba", ops.test_max_pool_int8.hypothesis.inner_test, tmp_path, g)


@NUMPY_SETTINGS
@given(g=ops.conv_geometry())
def test_conv2d_int8_numpy(tmp_path, g):
    _run("numpy", ops.test_conv2d_int8.hypothesis.inner_test, tmp_path, g)


@NUMPY_SETTINGS
@given(g=ops.conv_geometry(depthwise=True))
def test_depthwise_int8_numpy(tmp_path, g):
    _run("numpy", ops.test_depthwise_int8.hypothesis.inner_test, tmp_path, g)


@NUMPY_SETTINGS
@given(g=ops.fc_geometry())
def test_fully_connected_int8_numpy(tmp_path, g):
    _run("numpy", ops.test_fully_connected_int8.hypothesis.inner_test, tmp_path, g)


@NUMPY_SETTINGS
@given(g=ops.pool_geometry())
def test_pools_int8_numpy(tmp_path, g):
    _run("numpy", ops.test_average_pool_int8.hypothesis.inner_test, tmp_path, g)
    _run("numpy", ops.test_max_pool_int8.hypothesis.inner_test, tmp_path, g)


def test_random_conv_takes_the_compiled_path(tmp_path):
    """The single-op models above do run on numba (not silently on numpy)."""
    g = {"n": 1, "h": 6, "w": 5, "kh": 3, "kw": 2, "sh": 1, "sw": 2, "dh": 1, "dw": 1, "same": True, "oh": 6,
         "ow": 3, "cin": 3, "cout": 4, "mult": 1, "act": 1, "seed": 5, "per_channel": True}
    for depthwise in (False, True):
        ins, outs = ops._int8_conv_tensors(dict(g, cout=3) if depthwise else g, depthwise)
        op = "DEPTHWISE_CONV_2D" if depthwise else "CONV_2D"
        p = ops.build(tmp_path / f"{op}.tflite", op, ins, outs,
                      ops._conv_options(dict(g, cout=3) if depthwise else g, depthwise), version=3)
        m = open_on("numba", p)
        assert m.info["kernel_paths"][0]["path"] == "numba"


@pytest.mark.parametrize("path", PATHS)
def test_long_sums_in_float64_bit_exact(tmp_path, path):
    """More than 1024 terms per output: the compiled kernels then run on float64 (conv tail, FC, depthwise)."""
    conv = {"n": 1, "h": 5, "w": 4, "kh": 3, "kw": 3, "sh": 1, "sw": 1, "dh": 1, "dw": 1, "same": True, "oh": 5,
            "ow": 4, "cin": 130, "cout": 20, "mult": 1, "act": 0, "seed": 11, "per_channel": True}
    dw = dict(conv, kh=33, kw=33, h=34, w=35, oh=2, ow=3, same=False, cin=16, cout=16, seed=12)
    for g, depthwise in ((conv, False), (dw, True)):
        ins, outs = ops._int8_conv_tensors(g, depthwise)
        op = "DEPTHWISE_CONV_2D" if depthwise else "CONV_2D"
        p = ops.build(tmp_path / f"{op}.tflite", op, ins, outs, ops._conv_options(g, depthwise), version=3)
        open_on(path, p)
        _run(path, ops.assert_exact, p, None, 3, g["seed"])
    fc = {"rows": 2, "k": 1500, "units": 7, "act": 1, "per_channel": True, "keep_dims": False, "bias": True,
          "seed": 13}
    _run(path, ops.test_fully_connected_int8.hypothesis.inner_test, tmp_path, fc)


def test_compiled_path_is_opt_in(monkeypatch, mlperf_models):
    """Loading numba costs start-up time and RSS: the default stays numpy; fast=True (or the variable) opts in."""
    monkeypatch.delenv("EDGE_RUNTIME_MICRO_FAST", raising=False)
    model = mlperf_models / "kws_ref_model.tflite"
    assert {p["path"] for p in open_model(str(model)).info["kernel_paths"]} == {"numpy"}
    assert "numba" in {p["path"] for p in open_model(str(model), fast=True).info["kernel_paths"]}
    monkeypatch.setenv("EDGE_RUNTIME_MICRO_FAST", "0")
    assert {p["path"] for p in open_model(str(model), fast=True).info["kernel_paths"]} == {"numpy"}


# --------------------------------------------------------------------------- SOFTMAX, ADD/SUB/MUL, depthwise rows

@settings(ops.SETTINGS, max_examples=40)
@given(shape=unary.row_shapes, sx=unary.scales, zx=unary.zp8, beta=unary.st.floats(0.1, 2.0),
       seed=unary.st.integers(0, 2**31))
def test_softmax_int8_numba(tmp_path, shape, sx, zx, beta, seed):
    """The compiled int8 softmax (TFLM's fixed-point exp, reciprocal and rounding) against tflite-micro."""
    p = tmp_path / "softmax.tflite"
    ops.build(p, "SOFTMAX", [ops.T(shape, "int8", scale=sx, zp=zx)], [ops.T(shape, "int8", scale=1 / 256, zp=-128)],
              ops.opts("SoftmaxOptions", beta=beta), version=2)
    assert open_on("numba", p).info["kernel_paths"][0]["path"] == "numba"
    _run("numba", unary._check, p, unary._inputs(shape, "int8", np.random.default_rng(seed), 3), "exact")


@pytest.mark.parametrize("op,act", [("ADD", 0), ("ADD", 1), ("SUB", 0), ("MUL", 0), ("MUL", 3)])
def test_binary_table_numba_on_all_input_pairs(tmp_path, op, act):
    """The compiled table gather of equal-shape int8 ADD/SUB/MUL, on all 65,536 input pairs."""
    with kernel_path("numba"):
        fast_paths.test_binary_table_on_all_input_pairs(tmp_path, op, act)
    assert open_on("numba", tmp_path / f"{op}.tflite").info["kernel_paths"][0]["path"] == "numba"


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("case", ["rows", "rows_dilated", "rows_stride_h", "direct_stride", "direct_mult",
                                  "columns_w1", "columns_w3_dilated", "columns_valid"])
def test_depthwise_compiled_variants_bit_exact(tmp_path, path, case):
    """The three compiled depthwise loops (whole image per tap for one-column kernels, whole rows for x-stride 1
    and multiplier 1, per pixel otherwise), with padding, dilation, batches and per-channel scales, in and
    out of place."""
    g = {"n": 2, "h": 9, "w": 7, "kh": 3, "kw": 3, "sh": 1, "sw": 1, "dh": 1, "dw": 1, "same": True, "oh": 9,
         "ow": 7, "cin": 5, "cout": 5, "mult": 1, "act": 1, "seed": 21, "per_channel": True}
    g = {"rows": g,
         "rows_dilated": dict(g, dh=2, dw=2, kh=3, kw=2, seed=22),
         "rows_stride_h": dict(g, sh=2, oh=5, kh=5, kw=4, seed=23, act=0),
         "direct_stride": dict(g, sw=2, ow=4, cin=8, cout=8, seed=24),
         "direct_mult": dict(g, cin=3, cout=6, mult=2, seed=25),
         "columns_w1": dict(g, h=12, w=1, oh=12, ow=1, kh=5, kw=1, cin=7, cout=7, seed=26),
         "columns_w3_dilated": dict(g, w=3, ow=3, kh=3, kw=1, dh=2, seed=27, act=0),
         "columns_valid": dict(g, h=11, w=2, kh=4, kw=1, same=False, oh=8, ow=2, seed=28)}[case]
    ins, outs = ops._int8_conv_tensors(g, True)
    p = ops.build(tmp_path / "dw.tflite", "DEPTHWISE_CONV_2D", ins, outs, ops._conv_options(g, True), version=3)
    open_on(path, p)
    _run(path, ops.assert_exact, p, None, 4, g["seed"])


@pytest.mark.parametrize("name", ["kws_ref_model", "pretrainedResnet_quant"])
def test_mlperf_int8_small_workspace_many_chunks(mlperf_models, name):
    """A small host workspace splits the convolutions into many chunks (in place: the compiled CONV_2D then
    reads a private copy of its input); still bit-exact with tflite-micro."""
    model = mlperf_models / f"{name}.tflite"
    m = open_on("numba", model, in_place=True, workspace_limit=16384)
    assert any(len(getattr(k, "chunks", ())) > 1 for k in m.interpreter.kernels)
    x = np.random.default_rng(3).integers(-128, 128, size=(6, *m.inputs[0].shape)).astype(np.int8)
    assert np.array_equal(micro_run(m, x), tflm_run(model, x))


# --------------------------------------------------------------------------- the output stage's two forms

def test_requant_float_and_integer_forms_match_the_requantizer():
    """The compiled output stage, integer form and (where the float requantizer is exact) float form, with
    and without the tie correction, against the numpy Requantizer (TFLM's MultiplyByQuantizedMultiplier)
    on accumulators up to the bound, the extremes included."""
    import numba

    from edge_runtime.backends.micro.fast.requant import float_part, pack, requant_row
    from edge_runtime.backends.micro.fixedpoint import FloatRequantizer, Requantizer, quantize_multiplier

    @numba.njit
    def run(acc, q, out):  # type: ignore[no-untyped-def]
        zp, lo, hi = q[5, 0], q[5, 1], q[5, 2]
        qf, mode, soff, flo, fhi = float_part(q)
        for i in range(acc.shape[0]):
            requant_row(acc[i], q, qf, out[i], zp, lo, hi, mode, soff, flo, fhi)

    rng = np.random.default_rng(17)
    modes = {0.0: 0, 1.0: 0, 2.0: 0}
    for trial in range(120):
        c = int(rng.integers(1, 40))
        ms, ss = zip(*(quantize_multiplier(float(r)) for r in 10.0 ** rng.uniform(-7, 0.5, c)))
        ms, ss = np.array(ms, np.int64), np.array(ss, np.int64)
        zp = int(rng.integers(-128, 128))
        lo, hi = (zp, 127) if trial % 2 else (-128, 127)
        bias = rng.integers(-50000, 50000, c).astype(np.int64)
        bound = rng.integers(1, 1 << int(rng.integers(8, 24)), c).astype(np.int64)
        acc = rng.integers(-bound, bound + 1, size=(64, c)).astype(np.int64)
        acc[0], acc[1], acc[2] = bound, -bound, 0
        rq = Requantizer(ms, ss, zp, lo, hi, bias=bias)
        expect = np.empty(acc.shape, np.int8)
        rq.apply(acc.copy(), np.empty_like(acc), expect)
        frq = FloatRequantizer.create(ms, ss, zp, lo, hi, bias, bound)
        for q in {pack(rq).tobytes(): pack(rq), b"f": pack(rq, frq=frq)}.values():
            mode = float(q[6:10].view(np.float64)[3, 0])
            modes[mode] += 1
            got = np.empty(acc.shape, np.int8)
            run(acc.astype(np.float32) if np.all(np.abs(acc) < 1 << 24) else acc.astype(np.float64), q, got)
            assert np.array_equal(got, expect), f"trial {trial}, mode {mode}"
    assert min(modes.values()) >= 20, modes


@pytest.mark.parametrize("blas", [True, False])
def test_conv_one_call_and_without_scipy(tmp_path, monkeypatch, blas):
    """CONV_2D with many channels (output stage per channel) and few (along whole output rows), as one
    compiled call, and without SciPy (numba's ``np.dot`` needs its BLAS bindings: then numpy's band, im2col
    and product with the compiled tail): on the compiled path, bit-exact."""
    monkeypatch.setattr(fast, "blas_available", lambda: blas)
    from edge_runtime.backends.micro.fast import conv_vnni
    monkeypatch.setattr(conv_vnni, "ENABLED", [False])  # (the BLAS kernels; VNNI: test_micro_fast_conv_vnni.py)
    g = {"n": 2, "h": 7, "w": 6, "kh": 3, "kw": 2, "sh": 2, "sw": 1, "dh": 1, "dw": 2, "same": True, "oh": 4,
         "ow": 6, "cin": 5, "cout": 40, "mult": 1, "act": 0, "seed": 31, "per_channel": True}
    for k, case in enumerate((g, dict(g, cout=6, act=1, seed=32))):
        ins, outs = ops._int8_conv_tensors(case, False)
        p = ops.build(tmp_path / f"conv{k}.tflite", "CONV_2D", ins, outs, ops._conv_options(case, False), version=3)
        kern = open_on("numba", p).interpreter.kernels[0]
        assert kern.path == "numba" and (len(kern.calls) > 1) != blas  # (one compiled call, or the multi-call path)
        _run("numba", ops.assert_exact, p, None, 4, case["seed"])


def test_info_says_available_for_a_model_opened_with_fast_true(mlperf_models, monkeypatch):
    """``fast=True`` without the environment variable: the info reports the path it actually took."""
    monkeypatch.delenv("EDGE_RUNTIME_MICRO_FAST", raising=False)
    m = open_model(str(mlperf_models / "kws_ref_model.tflite"), fast=True)
    assert m.info["fast"]["available"] is True
    assert {p["path"] for p in m.info["kernel_paths"] if p["name"] == "CONV_2D"} == {"numba"}
    plain = open_model(str(mlperf_models / "kws_ref_model.tflite"))
    assert plain.info["fast"]["available"] is False


@pytest.mark.parametrize("shape,axes", [((1, 7, 7, 40), (1, 2)), ((3, 49, 64), (2,)), ((1, 50, 20, 3), (0, 1, 2, 3)),
                                        ((5, 6, 7), (0,)), ((2, 9, 3, 4), (1, 2)), ((4, 30, 2), (1,))])
@pytest.mark.parametrize("op", ["SUM", "MEAN"])
def test_float_sum_mean_compiled_equals_numpy_and_tflm(tmp_path, op, shape, axes):
    """Float32 SUM/MEAN over adjacent axes: the compiled sequential sum, the numpy path and
    tflite-micro give the same bits (inputs that cancel: any other summation order would differ)."""
    from tflite_builder import run_tflm

    p = tmp_path / f"{op}.tflite"
    out_shape = [s for d, s in enumerate(shape) if d not in axes]
    ops.build(p, op, [ops.T(list(shape), "float32"), ops.T([len(axes)], "int32", data=np.array(axes, np.int32))],
              [ops.T(out_shape, "float32")], ops.opts("ReducerOptions", keepDims=False))
    rng = np.random.default_rng(len(shape) + sum(axes))
    big = (rng.standard_normal(shape) * 1e5).astype(np.float32)
    sets = [[np.where(rng.random(shape) < 0.5, big, -big)], [(rng.standard_normal(shape) * 3).astype(np.float32)]]
    expect = run_tflm(p, sets)
    for path in PATHS:
        with kernel_path(path):
            m = open_model(str(p))
        assert m.info["kernel_paths"][0]["path"] == path
        for xs, e in zip(sets, expect):
            assert np.array_equal(m.run(xs)[0], e[0]), f"{path}: differs from tflite-micro"
