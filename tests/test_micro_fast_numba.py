"""The micro backend's compiled (numba) path and its numpy fallback, both bit-exact with tflite-micro.

- the five MLPerf Tiny int8 models on random inputs (in-place planning on and off) and on
  kws01's real inputs, each path forced with ``EDGE_RUNTIME_MICRO_FAST``;
- hypothesis-drawn CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, AVERAGE_POOL_2D and
  MAX_POOL_2D models (the generators and model builders of tests/test_micro_ops_conv.py);
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

import test_micro_ops_conv as ops
from test_micro_models import INT8_MODELS, micro_run, tflm_run

from edge_runtime.backends.micro import fast, open_model

if not fast._numba_importable():
    # CI's host venv installs the [fast] extra; the emulated ARM roots (firmware_sim/qemu) do not
    if os.environ.get("CI", "").lower() == "true" and not os.environ.get("EDGE_RUNTIME_EMULATED"):
        raise RuntimeError("numba is not importable; CI installs the [fast] extra")
    pytest.skip("numba is not installed (pip install 'edge-runtime[fast]')", allow_module_level=True)

PATHS = ["numba", "numpy"]
FAST_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "AVERAGE_POOL_2D", "MAX_POOL_2D"}


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
    assert paths["FULLY_CONNECTED"] == "numba" and paths["SOFTMAX"] == "numpy"
    assert len(fast_m.info["kernel_paths"]) == fast_m.info["ops"]
    assert fast_m.info["fast"]["available"] is True and fast_m.info["fast"]["compile_s"] >= 0.0
    assert {p["path"] for p in slow_m.info["kernel_paths"]} == {"numpy"}
    assert slow_m.info["fast"]["available"] is False and slow_m.info["fast"]["compile_s"] == 0.0
    # the compiled path drops the numpy float requantizer's tiles and widened FC weights
    assert fast_m.info["cache_bytes"] < slow_m.info["cache_bytes"]


def test_float_models_stay_on_numpy(mlperf_models):
    m = open_on("numba", mlperf_models / "ad01_fp32.tflite", check=False)
    assert {p["path"] for p in m.info["kernel_paths"]} == {"numpy"}


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
