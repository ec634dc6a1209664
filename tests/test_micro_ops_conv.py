"""CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, AVERAGE_POOL_2D and MAX_POOL_2D over random geometry.

Hypothesis draws shapes, strides, dilations, paddings, fused activations, zero points and
per-channel weight scales; each drawn model runs on micro (in-place planning on and off) and on
tflite-micro: outputs must be ``np.array_equal``, float32 included (micro sums in tflite-micro's order).
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from tflite_builder import T, assert_exact, build, opts, run_micro, run_tflm

SETTINGS = settings(max_examples=300, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
ACTS = [0, 1, 2, 3]  # NONE, RELU, RELU_N1_TO_1, RELU6


def _out_size(size: int, k: int, stride: int, dil: int, same: bool) -> int:
    eff = (k - 1) * dil + 1
    return (size + stride - 1) // stride if same else (size - eff + stride) // stride


@st.composite
def conv_geometry(draw, depthwise: bool = False):
    """A convolution that TFLite accepts: sizes, kernel, stride, dilation, padding with output >= 1."""
    n = draw(st.integers(1, 2))
    h, w = draw(st.integers(1, 10)), draw(st.integers(1, 10))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    same = draw(st.booleans())
    oh, ow = _out_size(h, kh, sh, dh, same), _out_size(w, kw, sw, dw, same)
    if oh < 1 or ow < 1:
        same = True
        oh, ow = _out_size(h, kh, sh, dh, True), _out_size(w, kw, sw, dw, True)
    cin = draw(st.integers(1, 6))
    mult = draw(st.integers(1, 3)) if depthwise else 1
    cout = cin * mult if depthwise else draw(st.integers(1, 6))
    return dict(n=n, h=h, w=w, kh=kh, kw=kw, sh=sh, sw=sw, dh=dh, dw=dw, same=same, oh=oh, ow=ow, cin=cin,
                cout=cout, mult=mult, act=draw(st.sampled_from(ACTS)), seed=draw(st.integers(0, 2**31 - 1)),
                per_channel=draw(st.booleans()))


def _int8_conv_tensors(g: dict, depthwise: bool):
    rng = np.random.default_rng(g["seed"])
    in_scale = float(rng.uniform(0.005, 0.1))
    in_zp = int(rng.integers(-20, 20))
    cout = g["cout"]
    wshape = (1, g["kh"], g["kw"], cout) if depthwise else (cout, g["kh"], g["kw"], g["cin"])
    wscale = rng.uniform(0.002, 0.02, cout) if g["per_channel"] else float(rng.uniform(0.002, 0.02))
    wdata = rng.integers(-127, 128, size=wshape).astype(np.int8)
    taps = g["kh"] * g["kw"] * (1 if depthwise else g["cin"])
    typical = in_scale * float(np.mean(wscale)) * 70 * 70 * np.sqrt(taps)
    out_scale = float(typical / 40 * rng.uniform(0.5, 2.0))
    bias = rng.integers(-2000, 2000, cout).astype(np.int32)
    bscale = in_scale * np.asarray(wscale, np.float64) * np.ones(cout)
    return [
        T((g["n"], g["h"], g["w"], g["cin"]), scale=in_scale, zp=in_zp),
        T(wshape, scale=wscale, data=wdata, axis=3 if depthwise else 0),
        T((cout,), "int32", scale=bscale, data=bias),
    ], [T((g["n"], g["oh"], g["ow"], cout), scale=out_scale, zp=int(rng.integers(-30, 30)))]


def _float_conv_tensors(g: dict, depthwise: bool):
    rng = np.random.default_rng(g["seed"])
    cout = g["cout"]
    wshape = (1, g["kh"], g["kw"], cout) if depthwise else (cout, g["kh"], g["kw"], g["cin"])
    return [
        T((g["n"], g["h"], g["w"], g["cin"]), "float32"),
        T(wshape, "float32", data=rng.standard_normal(wshape).astype(np.float32)),
        T((cout,), "float32", data=rng.standard_normal(cout).astype(np.float32)),
    ], [T((g["n"], g["oh"], g["ow"], cout), "float32")]


def _conv_options(g: dict, depthwise: bool):
    common = dict(padding=0 if g["same"] else 1, strideW=g["sw"], strideH=g["sh"], fusedActivationFunction=g["act"],
                  dilationWFactor=g["dw"], dilationHFactor=g["dh"])
    if depthwise:
        return opts("DepthwiseConv2DOptions", depthMultiplier=g["mult"], **common)
    return opts("Conv2DOptions", **common)


@pytest.mark.parity("CONV_2D", "int8")
@SETTINGS
@given(g=conv_geometry())
def test_conv2d_int8(tmp_path, g):
    ins, outs = _int8_conv_tensors(g, False)
    p = build(tmp_path / "conv.tflite", "CONV_2D", ins, outs, _conv_options(g, False), version=3)
    assert_exact(p, n=2, seed=g["seed"])


@pytest.mark.parity("CONV_2D", "float32")
@settings(SETTINGS, max_examples=60)
@given(g=conv_geometry())
def test_conv2d_float32(tmp_path, g):
    ins, outs = _float_conv_tensors(g, False)
    p = build(tmp_path / "conv_f.tflite", "CONV_2D", ins, outs, _conv_options(g, False), version=1)
    assert_exact(p, n=2, seed=g["seed"])  # tflite-micro's summation order (kernels/*_float.py)


@pytest.mark.parity("DEPTHWISE_CONV_2D", "int8")
@SETTINGS
@given(g=conv_geometry(depthwise=True))
def test_depthwise_int8(tmp_path, g):
    ins, outs = _int8_conv_tensors(g, True)
    p = build(tmp_path / "dw.tflite", "DEPTHWISE_CONV_2D", ins, outs, _conv_options(g, True), version=3)
    assert_exact(p, n=2, seed=g["seed"])


@pytest.mark.parity("DEPTHWISE_CONV_2D", "float32")
@settings(SETTINGS, max_examples=60)
@given(g=conv_geometry(depthwise=True))
def test_depthwise_float32(tmp_path, g):
    ins, outs = _float_conv_tensors(g, True)
    p = build(tmp_path / "dw_f.tflite", "DEPTHWISE_CONV_2D", ins, outs, _conv_options(g, True), version=1)
    assert_exact(p, n=2, seed=g["seed"])  # tflite-micro's summation order (kernels/*_float.py)


@st.composite
def fc_geometry(draw):
    return dict(rows=draw(st.integers(1, 4)), k=draw(st.integers(1, 40)), units=draw(st.integers(1, 24)),
                act=draw(st.sampled_from([0, 1, 3])), per_channel=draw(st.booleans()),
                keep_dims=draw(st.booleans()), bias=draw(st.booleans()), seed=draw(st.integers(0, 2**31 - 1)))


@pytest.mark.parity("FULLY_CONNECTED", "int8")
@SETTINGS
@given(g=fc_geometry())
def test_fully_connected_int8(tmp_path, g):
    rng = np.random.default_rng(g["seed"])
    in_scale = float(rng.uniform(0.01, 0.1))
    wscale = rng.uniform(0.002, 0.02, g["units"]) if g["per_channel"] else float(rng.uniform(0.002, 0.02))
    out_scale = float(in_scale * np.mean(wscale) * 70 * 70 * np.sqrt(g["k"]) / 40 * rng.uniform(0.5, 2))
    ins = [T((g["rows"], g["k"]), scale=in_scale, zp=int(rng.integers(-20, 20))),
           T((g["units"], g["k"]), scale=wscale, data=rng.integers(-127, 128, (g["units"], g["k"])).astype(np.int8))]
    if g["bias"]:
        ins.append(T((g["units"],), "int32", scale=in_scale * np.asarray(wscale) * np.ones(g["units"]),
                     data=rng.integers(-3000, 3000, g["units"]).astype(np.int32)))
    p = build(tmp_path / "fc.tflite", "FULLY_CONNECTED", ins,
              [T((g["rows"], g["units"]), scale=out_scale, zp=int(rng.integers(-30, 30)))],
              opts("FullyConnectedOptions", fusedActivationFunction=g["act"]), version=4)
    assert_exact(p, n=2, seed=g["seed"])


@pytest.mark.parity("FULLY_CONNECTED", "float32")
@settings(SETTINGS, max_examples=60)
@given(g=fc_geometry())
def test_fully_connected_float32(tmp_path, g):
    """Bit-exact: micro sums each output in tflite-micro's order (kernels/fully_connected_float.py)."""
    rng = np.random.default_rng(g["seed"])
    ins = [T((g["rows"], g["k"]), "float32"),
           T((g["units"], g["k"]), "float32", data=rng.standard_normal((g["units"], g["k"])).astype(np.float32))]
    if g["bias"]:
        ins.append(T((g["units"],), "float32", data=rng.standard_normal(g["units"]).astype(np.float32)))
    p = build(tmp_path / "fc_f.tflite", "FULLY_CONNECTED", ins, [T((g["rows"], g["units"]), "float32")],
              opts("FullyConnectedOptions", fusedActivationFunction=g["act"]), version=1)
    assert_exact(p, n=2, seed=g["seed"])


@st.composite
def pool_geometry(draw):
    h, w = draw(st.integers(1, 10)), draw(st.integers(1, 10))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    same = draw(st.booleans())
    if not same and (kh > h or kw > w):
        same = True
    oh, ow = _out_size(h, kh, sh, 1, same), _out_size(w, kw, sw, 1, same)
    return dict(n=draw(st.integers(1, 2)), h=h, w=w, c=draw(st.integers(1, 6)), kh=kh, kw=kw, sh=sh, sw=sw,
                same=same, oh=oh, ow=ow, act=draw(st.sampled_from(ACTS)), seed=draw(st.integers(0, 2**31 - 1)))


def _pool_model(tmp_path, op: str, g: dict, dtype: str):
    rng = np.random.default_rng(g["seed"])
    q = dict(scale=float(rng.uniform(0.01, 0.1)), zp=int(rng.integers(-40, 40))) if dtype == "int8" else {}
    return build(tmp_path / f"{op}.tflite", op, [T((g["n"], g["h"], g["w"], g["c"]), dtype, **q)],
                 [T((g["n"], g["oh"], g["ow"], g["c"]), dtype, **q)],
                 opts("Pool2DOptions", padding=0 if g["same"] else 1, strideW=g["sw"], strideH=g["sh"],
                      filterWidth=g["kw"], filterHeight=g["kh"], fusedActivationFunction=g["act"]),
                 version=2 if dtype == "int8" else 1)


@pytest.mark.parity("AVERAGE_POOL_2D", "int8")
@SETTINGS
@given(g=pool_geometry())
def test_average_pool_int8(tmp_path, g):
    assert_exact(_pool_model(tmp_path, "AVERAGE_POOL_2D", g, "int8"), n=2, seed=g["seed"])


@pytest.mark.parity("MAX_POOL_2D", "int8")
@SETTINGS
@given(g=pool_geometry())
def test_max_pool_int8(tmp_path, g):
    assert_exact(_pool_model(tmp_path, "MAX_POOL_2D", g, "int8"), n=2, seed=g["seed"])


#: Float32 values that stress a kernel's arithmetic: signed zeros, denormals, the extremes of the
#: range (sums that overflow to inf), infinities, NaN, cancelling pairs.
FLOAT_EXTREMES = np.array([0.0, -0.0, 1e-45, -1e-45, 3e-39, -3e-39, 3.4e38, -3.4e38, 3.0e38, np.inf, -np.inf,
                           np.nan, 1e8, -1e8, 1.0, -1.0, 1e-7, 0.5], np.float32)


def float_extreme_sets(shape: tuple, seed: int, n: int = 3) -> list[list[np.ndarray]]:
    """``n`` input sets drawn from :data:`FLOAT_EXTREMES` (and cancelling random magnitudes)."""
    rng = np.random.default_rng(seed)
    sets = [[rng.choice(FLOAT_EXTREMES, size=shape).astype(np.float32)] for _ in range(n)]
    big = (rng.standard_normal(shape) * 1e7).astype(np.float32)
    sets.append([np.where(rng.random(shape) < 0.5, big, -big).astype(np.float32)])
    return sets


def assert_float_bits(path, sets) -> None:  # type: ignore[no-untyped-def]
    """micro == tflite-micro bit for bit (NaN where NaN, the sign of zeros too), in-place on and off."""
    expect = run_tflm(path, sets)
    for in_place in (False, True):
        for k, (g, e) in enumerate(zip(run_micro(path, sets, in_place), expect)):
            a, b = g[0], e[0]
            assert a.dtype == b.dtype and a.shape == b.shape
            same = np.array_equal(a, b, equal_nan=True) and np.array_equal(np.signbit(a[~np.isnan(a)]),
                                                                             np.signbit(b[~np.isnan(b)]))
            assert same, f"set {k} (in_place={in_place}): {a.ravel()[:8]} vs tflite-micro {b.ravel()[:8]}"


@pytest.mark.parity("AVERAGE_POOL_2D", "float32")
@settings(SETTINGS, max_examples=60)
@given(g=pool_geometry())
def test_average_pool_float32(tmp_path, g):
    """Sequential float32 window sums, the division, the clamp: bit-exact, extreme values included."""
    p = _pool_model(tmp_path, "AVERAGE_POOL_2D", g, "float32")
    assert_exact(p, n=2, seed=g["seed"])
    assert_float_bits(p, float_extreme_sets((g["n"], g["h"], g["w"], g["c"]), g["seed"]))


@pytest.mark.parity("MAX_POOL_2D", "float32")
@settings(SETTINGS, max_examples=60)
@given(g=pool_geometry())
def test_max_pool_float32(tmp_path, g):
    """TFLM's ``max < x`` scan (NaN skipped) and clamp: bit-exact, extreme values included."""
    p = _pool_model(tmp_path, "MAX_POOL_2D", g, "float32")
    assert_exact(p, n=2, seed=g["seed"])
    assert_float_bits(p, float_extreme_sets((g["n"], g["h"], g["w"], g["c"]), g["seed"]))


# ---------------------------------------------------------------------------- 16x8 (int16 activations, int8 weights)

def _int16_conv_tensors(g: dict, depthwise: bool, bias_type: str):
    rng = np.random.default_rng(g["seed"])
    in_scale = float(rng.uniform(1e-4, 1e-3))
    cout = g["cout"]
    wshape = (1, g["kh"], g["kw"], cout) if depthwise else (cout, g["kh"], g["kw"], g["cin"])
    wscale = rng.uniform(0.002, 0.02, cout) if g["per_channel"] else float(rng.uniform(0.002, 0.02))
    taps = g["kh"] * g["kw"] * (1 if depthwise else g["cin"])
    out_scale = float(in_scale * np.mean(wscale) * 16000 * 70 * np.sqrt(taps) / 10000 * rng.uniform(0.5, 2.0))
    ins = [T((g["n"], g["h"], g["w"], g["cin"]), "int16", scale=in_scale),
           T(wshape, scale=wscale, data=rng.integers(-127, 128, size=wshape).astype(np.int8),
             axis=3 if depthwise else 0)]
    if bias_type != "none":
        dt = np.int64 if bias_type == "int64" else np.int32
        ins.append(T((cout,), bias_type, scale=in_scale * np.asarray(wscale, np.float64) * np.ones(cout),
                     data=rng.integers(-200000, 200000, cout).astype(dt)))
    return ins, [T((g["n"], g["oh"], g["ow"], cout), "int16", scale=out_scale)]


@pytest.mark.parity("CONV_2D", "int16")
@settings(SETTINGS, max_examples=200)
@given(g=conv_geometry(), bias=st.sampled_from(["int64", "int32", "none"]))
def test_conv2d_16x8(tmp_path, g, bias):
    ins, outs = _int16_conv_tensors(g, False, bias)
    p = build(tmp_path / "conv16.tflite", "CONV_2D", ins, outs, _conv_options(g, False), version=4)
    assert_exact(p, n=2, seed=g["seed"])


@pytest.mark.parity("DEPTHWISE_CONV_2D", "int16")
@settings(SETTINGS, max_examples=200)
@given(g=conv_geometry(depthwise=True), bias=st.sampled_from(["int64", "none"]))
def test_depthwise_16x8(tmp_path, g, bias):
    ins, outs = _int16_conv_tensors(g, True, bias)
    p = build(tmp_path / "dw16.tflite", "DEPTHWISE_CONV_2D", ins, outs, _conv_options(g, True), version=5)
    assert_exact(p, n=2, seed=g["seed"])


@pytest.mark.parity("FULLY_CONNECTED", "int16")
@settings(SETTINGS, max_examples=200)
@given(g=fc_geometry(), bias=st.sampled_from(["int64", "int32", "none"]))
def test_fully_connected_16x8(tmp_path, g, bias):
    rng = np.random.default_rng(g["seed"])
    in_scale = float(rng.uniform(1e-4, 1e-3))
    wscale = rng.uniform(0.002, 0.02, g["units"]) if g["per_channel"] else float(rng.uniform(0.002, 0.02))
    out_scale = float(in_scale * np.mean(wscale) * 16000 * 70 * np.sqrt(g["k"]) / 10000 * rng.uniform(0.5, 2))
    ins = [T((g["rows"], g["k"]), "int16", scale=in_scale),
           T((g["units"], g["k"]), scale=wscale, data=rng.integers(-127, 128, (g["units"], g["k"])).astype(np.int8))]
    if bias != "none":
        dt = np.int64 if bias == "int64" else np.int32
        ins.append(T((g["units"],), bias, scale=in_scale * np.asarray(wscale) * np.ones(g["units"]),
                     data=rng.integers(-200000, 200000, g["units"]).astype(dt)))
    p = build(tmp_path / "fc16.tflite", "FULLY_CONNECTED", ins,
              [T((g["rows"], g["units"]), "int16", scale=out_scale)],
              opts("FullyConnectedOptions", fusedActivationFunction=g["act"]), version=7)
    assert_exact(p, n=2, seed=g["seed"])


def test_unsupported_weight_types_are_refused_in_one_line(tmp_path):
    from edge_runtime.backends.micro import open_model
    from edge_runtime.errors import UnsupportedModelError

    p = build(tmp_path / "c.tflite", "CONV_2D",
              [T((1, 4, 4, 2), "int16", scale=0.001), T((3, 1, 1, 2), "int16", scale=0.01, data=np.ones((3, 1, 1, 2), np.int16))],
              [T((1, 4, 4, 3), "int16", scale=0.01)],
              opts("Conv2DOptions", padding=1, strideW=1, strideH=1), version=4)
    with pytest.raises(UnsupportedModelError, match=r"CONV_2D.*filter tensor .* has type INT16") as info:
        open_model(str(p))
    assert "\n" not in str(info.value)


@pytest.mark.parity("AVERAGE_POOL_2D", "float32")
@pytest.mark.parametrize("shape,act", [((1, 7, 7, 64), 0), ((2, 33, 17, 5), 1), ((1, 64, 64, 16), 0), ((1, 1, 9, 3), 3)])
def test_global_average_pool_float32(tmp_path, shape, act):
    """A window covering the whole image (the sum as a blocked reduction over H, W): bit-exact with
    tflite-micro on cancelling inputs, also with a 4 KiB workspace (many blocks)."""
    from edge_runtime.backends.micro import open_model

    n, h, w, c = shape
    p = build(tmp_path / "gap.tflite", "AVERAGE_POOL_2D", [T(shape, "float32")], [T((n, 1, 1, c), "float32")],
              opts("Pool2DOptions", padding=1, strideW=1, strideH=1, filterWidth=w, filterHeight=h,
                   fusedActivationFunction=act))
    rng = np.random.default_rng(h * w)
    big = (rng.standard_normal(shape) * 1e5).astype(np.float32)
    sets = [[np.where(rng.random(shape) < 0.5, big, -big).astype(np.float32)]]
    assert_exact(p, sets)
    m = open_model(str(p), workspace_limit=4096)
    assert m.interpreter.kernels[0].global_sum
    assert np.array_equal(m.run(sets[0])[0], run_tflm(p, sets)[0][0])
