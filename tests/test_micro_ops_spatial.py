"""Spatial and reduction kernels of the micro backend against tflite-micro, on generated models.

Each hypothesis example builds one single-op model (random shapes, options and quantization,
per-channel weight scales where the op has weights) and compares several random input sets:
bit-exact (``np.array_equal``) for integer kernels and pure data movement, within 1e-6 of the
largest reference value for float arithmetic. Every op also refuses a type or shape it does not
run with a clean one-line UnsupportedModelError.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tflite_builder import ModelFolder, T, build, litert, opts, random_inputs, run_micro, tflm

from edge_runtime.backends.micro import open_model
from edge_runtime.errors import UnsupportedModelError
from alloc_probe import traced_allocations

pytest.importorskip("tflite_micro")

_MODELS = ModelFolder("micro_spatial_")  # this module's own folder
N_SETS = 4  # input sets per generated model
SAME, VALID = 0, 1


@pytest.fixture(scope="module", autouse=True)
def _cleanup_models():  # type: ignore[no-untyped-def]
    """Remove the generated models when the module is done."""
    yield
    _MODELS.remove()


def _path(op: str) -> Path:
    return _MODELS.path(op)


def _settings(n: int):  # type: ignore[no-untyped-def]
    return settings(max_examples=n, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _run_tflm(path: Path, input_sets: list) -> list:  # type: ignore[type-arg]
    """tflite-micro's first output per input set, with an arena sized for the activations
    (the builder's default, 10x the model file, is too small for models with tiny weights)."""
    ref = tflm.Interpreter.from_file(str(path), arena_size=1 << 22)
    out = []
    for xs in input_sets:
        ref.reset()
        for i, x in enumerate(xs):
            ref.set_input(np.ascontiguousarray(x), i)
        ref.invoke()
        out.append(np.array(ref.get_output(0)))
    return out


def _run_small_workspace(path: Path, sets: list) -> list:  # type: ignore[type-arg]
    """micro's outputs with the smallest workspace limit (kernels chunk their work)."""
    m = open_model(str(path), workspace_limit=4096)
    return [[np.array(o) for o in m.run(list(xs))] for xs in sets]


def _check(path: Path, kind: str, seed: int = 0, rtol: float = 1e-6, chunked: bool = False) -> None:
    """micro (in-place planning on and off; with ``chunked`` also a 4 KiB workspace) against
    tflite-micro: ``np.array_equal`` ("exact"), or within ``rtol`` of the largest reference
    value ("close", float arithmetic)."""
    try:
        _compare(path, kind, seed, rtol, chunked)
    finally:
        path.unlink(missing_ok=True)


def _compare(path: Path, kind: str, seed: int, rtol: float, chunked: bool) -> None:
    sets = random_inputs(path, np.random.default_rng(seed), N_SETS)
    expect = _run_tflm(path, sets)
    runs = [lambda ip=ip: run_micro(path, sets, ip) for ip in ((False, True) if kind == "exact" else (True,))]
    if chunked:
        runs.append(lambda: _run_small_workspace(path, sets))
    for in_place, run in enumerate(runs):
        got = run()
        for k, (g, e) in enumerate(zip(got, expect)):
            a = g[0]
            assert a.dtype == e.dtype and a.shape == e.shape, f"set {k}: {a.dtype}{a.shape} vs {e.dtype}{e.shape}"
            if kind == "exact":
                assert np.array_equal(a, e), f"set {k} (micro run {in_place}): {a.ravel()[:8]} vs {e.ravel()[:8]}"
            else:
                scale = max(1.0, float(np.max(np.abs(e.astype(np.float64))))) if e.size else 1.0
                err = float(np.max(np.abs(a.astype(np.float64) - e))) if e.size else 0.0
                assert err <= rtol * scale, f"set {k}: max error {err} > {rtol} x {scale}"


def _scale(draw, lo: float = -9.0, hi: float = -2.0) -> float:  # type: ignore[no-untyped-def]
    return float(np.float32(2.0 ** draw(st.floats(lo, hi))))


def _zp(draw, dtype: str) -> int:  # type: ignore[no-untyped-def]
    return draw(st.integers(-128, 127)) if dtype == "int8" else 0


def _q(dtype: str, scale: float, zp: int) -> dict:
    return {"scale": scale, "zp": zp} if dtype in ("int8", "int16") else {}


#: Float32 values that stress a kernel's arithmetic: signed zeros, denormals, the extremes of the
#: range (sums that overflow to inf), infinities, NaN.
FLOAT_EXTREMES = np.array([0.0, -0.0, 1e-45, -1e-45, 3e-39, -3e-39, 3.4e38, -3.4e38, 3.0e38, np.inf, -np.inf,
                           np.nan, 1e8, -1e8, 1.0, -1.0, 1e-7, 0.5], np.float32)


def _check_float_bits(path: Path, seed: int = 0) -> None:
    """micro (in-place planning on and off, and a 4 KiB workspace) == tflite-micro bit for bit (NaN
    where NaN, the sign of zeros too) on inputs drawn from :data:`FLOAT_EXTREMES`, all -0.0, and
    large values that cancel."""
    rng = np.random.default_rng(seed)
    shape = random_inputs(path, rng, 1)[0][0].shape
    big = (rng.standard_normal(shape) * 1e7).astype(np.float32)
    sets = [[rng.choice(FLOAT_EXTREMES, size=shape).astype(np.float32)] for _ in range(3)]
    sets += [[np.full(shape, -0.0, np.float32)], [np.where(rng.random(shape) < 0.5, big, -big).astype(np.float32)]]
    expect = _run_tflm(path, sets)
    runs = [lambda: run_micro(path, sets, False), lambda: run_micro(path, sets, True),
            lambda: _run_small_workspace(path, sets)]
    for r, run in enumerate(runs):
        for k, (g, e) in enumerate(zip(run(), expect)):
            a = g[0]
            same = np.array_equal(a, e, equal_nan=True) and np.array_equal(np.signbit(a[~np.isnan(a)]),
                                                                             np.signbit(e[~np.isnan(e)]))
            assert same, f"set {k} (micro run {r}): {a.ravel()[:8]} vs tflite-micro {e.ravel()[:8]}"


def _parity(op: str, dtype: str, kind: str) -> pytest.MarkDecorator:
    """The parity mark of a parametrized case ("close" marks float comparisons within tolerance)."""
    return pytest.mark.parity(op, dtype, "close") if kind == "close" else pytest.mark.parity(op, dtype)


def _refused(path: Path, op: str) -> None:
    """Loading the model raises UnsupportedModelError with a one-line message naming the op."""
    with pytest.raises(UnsupportedModelError) as e:
        run_micro(path, [])
    msg = str(e.value)
    assert op in msg and "\n" not in msg, msg


def _i32(v) -> np.ndarray:  # type: ignore[no-untyped-def]
    return np.asarray(v, np.int32)


# ----------------------------------------------------------------------------- TRANSPOSE_CONV

@st.composite
def transpose_conv_models(draw, dtype: str) -> Path:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    n = draw(st.integers(1, 2))
    h, w = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    cin, cout = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    pad = draw(st.sampled_from([SAME, VALID]))
    # any output size whose forward convolution gives the input size (TF's output_shape choices)
    def out_size(i: int, s: int, k: int) -> int:
        lo = (i - 1) * s + (1 if pad == SAME else k)
        return draw(st.integers(lo, lo + s - 1))

    ho, wo = out_size(h, sh, kh), out_size(w, sw, kw)
    has_bias = draw(st.booleans())
    act = draw(st.sampled_from([0, 1, 3]))  # NONE, RELU, RELU6
    shape_t = T([4], "int32", data=_i32([n, ho, wo, cout]))
    terms = cin * min(kh, sh) * min(kw, sw) + 1
    if dtype == "float32":
        wt = T([cout, kh, kw, cin], "float32", data=rng.standard_normal((cout, kh, kw, cin)).astype(np.float32))
        ins = [shape_t, wt, T([n, h, w, cin], "float32")]
        if has_bias:
            ins.append(T([cout], "float32", data=rng.standard_normal(cout).astype(np.float32)))
        outs = [T([n, ho, wo, cout], "float32")]
    else:
        per_channel = draw(st.booleans())
        ws = np.array([_scale(draw, -9, -4) for _ in range(cout if per_channel else 1)], np.float32)
        wdata = rng.integers(-127, 128, (cout, kh, kw, cin)).astype(np.int8)
        sx = _scale(draw, -9, -3) if dtype == "int8" else _scale(draw, -14, -9)
        zx = _zp(draw, dtype)
        # output scale: typical accumulators land well inside the output range, some saturate
        sy = float(np.float32(sx * float(ws.max()) * 127 * np.sqrt(terms) * 2.0 ** draw(st.floats(-1, 2.5))))
        zy = _zp(draw, dtype)
        ins = [shape_t, T([cout, kh, kw, cin], "int8", scale=ws, zp=0, data=wdata),
               T([n, h, w, cin], dtype, scale=sx, zp=zx)]
        if has_bias:
            bscale = (sx * ws.astype(np.float64)).astype(np.float32)
            if dtype == "int8":
                ins.append(T([cout], "int32", scale=bscale, zp=0,
                             data=rng.integers(-30000, 30000, cout).astype(np.int32)))
            else:
                bt = draw(st.sampled_from(["int64", "int16"]))
                ins.append(T([cout], bt, scale=bscale, zp=0,
                             data=rng.integers(-20000, 20000, cout).astype(np.dtype(bt))))
        outs = [T([n, ho, wo, cout], dtype, scale=sy, zp=zy)]
    path = _path("TRANSPOSE_CONV")
    build(path, "TRANSPOSE_CONV", ins, outs,
          opts("TransposeConvOptions", padding=pad, strideW=sw, strideH=sh, fusedActivationFunction=act), version=3)
    return path


@pytest.mark.parity("TRANSPOSE_CONV", "int8")
@_settings(220)
@given(transpose_conv_models("int8"))
def test_transpose_conv_int8(path: Path) -> None:
    _check(path, "exact", chunked=True)


@pytest.mark.parity("TRANSPOSE_CONV", "int16")
@_settings(200)
@given(transpose_conv_models("int16"))
def test_transpose_conv_int16(path: Path) -> None:
    _check(path, "exact", chunked=True)


@pytest.mark.parity("TRANSPOSE_CONV", "float32")
@_settings(150)
@given(transpose_conv_models("float32"))
def test_transpose_conv_float32(path: Path) -> None:
    _check(path, "exact", chunked=True)  # tflite-micro's summation order (spatial/transpose_conv_float.py)


@pytest.mark.parametrize("dtype", [pytest.param(t, marks=pytest.mark.parity("TRANSPOSE_CONV", t))
                                   for t in ("int8", "int16")])
@pytest.mark.parametrize("pad,stride,k", [(SAME, 2, 3), (VALID, 2, 4), (SAME, 1, 5)])
def test_transpose_conv_decoder_sizes(dtype: str, pad: int, stride: int, k: int) -> None:
    """Decoder-like layers (16 -> 12 channels, per-channel weights, bias), chunked too."""
    rng = np.random.default_rng(stride * 10 + k)
    h = w = 9
    ho = h * stride if pad == SAME else (h - 1) * stride + k
    cin, cout = 16, 12
    ws = rng.uniform(0.002, 0.02, cout).astype(np.float32)
    sx = 0.05 if dtype == "int8" else 1e-4
    bias_t = "int32" if dtype == "int8" else "int64"
    ins = [T([4], "int32", data=_i32([1, ho, ho, cout])),
           T([cout, k, k, cin], "int8", scale=ws, zp=0,
             data=rng.integers(-127, 128, (cout, k, k, cin)).astype(np.int8)),
           T([1, h, w, cin], dtype, scale=sx, zp=-9 if dtype == "int8" else 0),
           T([cout], bias_t, scale=sx * ws, zp=0, data=rng.integers(-5000, 5000, cout).astype(bias_t))]
    sy = float(sx * ws.max() * 127 * np.sqrt(cin * k * k / stride ** 2) * 2)
    p = _path("TRANSPOSE_CONV")
    build(p, "TRANSPOSE_CONV", ins, [T([1, ho, ho, cout], dtype, scale=sy, zp=4 if dtype == "int8" else 0)],
          opts("TransposeConvOptions", padding=pad, strideW=stride, strideH=stride), version=3)
    _check(p, "exact", chunked=True)


def test_transpose_conv_refuses() -> None:
    p = _path("TRANSPOSE_CONV")
    build(p, "TRANSPOSE_CONV", [T([4], "int32", data=_i32([1, 4, 4, 2])),
                                T([2, 3, 3, 2], "int8", scale=0.1, data=np.ones((2, 3, 3, 2), np.int8)),
                                T([1, 2, 2, 2], "int16", scale=0.01),
                                T([2], "int32", scale=0.001, data=_i32([1, 2]))],
          [T([1, 4, 4, 2], "int16", scale=0.1)], opts("TransposeConvOptions", padding=SAME, strideW=2, strideH=2))
    _refused(p, "TRANSPOSE_CONV")  # 16x8 with an int32 bias: TFLM reads it as int64


# ----------------------------------------------------------------------------- BATCH_MATMUL

@st.composite
def batch_matmul_models(draw, dtype: str) -> Path:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    m, k, n = draw(st.integers(1, 6)), draw(st.integers(1, 8)), draw(st.integers(1, 6))
    ra, rb = draw(st.integers(2, 5)), draw(st.integers(2, 5))
    batch = [draw(st.integers(1, 3)) for _ in range(max(ra, rb) - 2)]
    a_batch = [b if draw(st.booleans()) else 1 for b in batch[len(batch) - (ra - 2):]]
    b_batch = [b if draw(st.booleans()) else 1 for b in batch[len(batch) - (rb - 2):]]
    out_batch = list(np.broadcast_shapes(tuple(a_batch), tuple(b_batch)))
    adj_x, adj_y = draw(st.booleans()), draw(st.booleans())
    a_shape = a_batch + ([k, m] if adj_x else [m, k])
    b_shape = b_batch + ([n, k] if adj_y else [k, n])
    out_shape = out_batch + [m, n]
    const_rhs = draw(st.booleans())
    if dtype == "float32":
        ta, tb_q, ty_q = {}, {}, {}
    else:
        sa, sb = _scale(draw, -8, -3), _scale(draw, -8, -3)
        za, zb = _zp(draw, dtype), _zp(draw, dtype)
        rms, target = (100, 60) if dtype == "int8" else (19000, 8000)  # typical |operand|, |output|
        sy = float(np.float32(sa * sb * rms * rms / target * np.sqrt(k) * 2.0 ** draw(st.floats(-1, 2))))
        ta, tb_q, ty_q = {"scale": sa, "zp": za}, {"scale": sb, "zp": zb}, {"scale": sy, "zp": _zp(draw, dtype)}
    b_data = None
    if const_rhs:
        b_data = (rng.standard_normal(b_shape).astype(np.float32) if dtype == "float32"
                  else rng.integers(np.iinfo(dtype).min, np.iinfo(dtype).max, b_shape, endpoint=True).astype(dtype))
    path = _path("BATCH_MATMUL")
    build(path, "BATCH_MATMUL", [T(a_shape, dtype, **ta), T(b_shape, dtype, data=b_data, **tb_q)],
          [T(out_shape, dtype, **ty_q)], opts("BatchMatMulOptions", adjX=adj_x, adjY=adj_y), version=4)
    return path


@pytest.mark.parity("BATCH_MATMUL", "int8")
@_settings(220)
@given(batch_matmul_models("int8"))
def test_batch_matmul_int8(path: Path) -> None:
    _check(path, "exact", chunked=True)


@pytest.mark.parity("BATCH_MATMUL", "int16")
@_settings(200)
@given(batch_matmul_models("int16"))
def test_batch_matmul_int16(path: Path) -> None:
    _check(path, "exact", chunked=True)


@pytest.mark.parity("BATCH_MATMUL", "float32")
@_settings(150)
@given(batch_matmul_models("float32"))
def test_batch_matmul_float32(path: Path) -> None:
    _check(path, "exact", chunked=True)


@pytest.mark.parity("BATCH_MATMUL", "int8")
@pytest.mark.parametrize("const_rhs,adj_x", [(False, False), (True, True)])
def test_batch_matmul_int8_chunked(const_rhs: bool, adj_x: bool) -> None:
    """Larger operands, so that the 4 KiB workspace run splits the lhs rows into many chunks."""
    rng = np.random.default_rng(3)
    a_shape = [2, 1, 16, 40] if adj_x else [2, 1, 40, 16]
    b_data = rng.integers(-128, 128, (3, 16, 24)).astype(np.int8) if const_rhs else None
    p = _path("BATCH_MATMUL")
    build(p, "BATCH_MATMUL", [T(a_shape, "int8", scale=0.02, zp=-7),
                              T([3, 16, 24], "int8", scale=0.03, zp=5, data=b_data)],
          [T([2, 3, 40, 24], "int8", scale=0.02 * 0.03 * 100 * 4 / 60, zp=2)], opts("BatchMatMulOptions", adjX=adj_x))
    _check(p, "exact", chunked=True)


def test_batch_matmul_refuses() -> None:
    p = _path("BATCH_MATMUL")
    build(p, "BATCH_MATMUL", [T([2, 3], "int32"), T([3, 4], "int32")], [T([2, 4], "int32")])
    _refused(p, "BATCH_MATMUL")
    p = _path("BATCH_MATMUL")
    build(p, "BATCH_MATMUL", [T([2, 3], "float32"), T([4, 4], "float32")], [T([2, 4], "float32")])
    _refused(p, "BATCH_MATMUL")


# ----------------------------------------------------------------------------- RESIZE_*

@st.composite
def resize_models(draw, op: str, dtype: str) -> Path:  # type: ignore[no-untyped-def]
    n, h, w, c = draw(st.integers(1, 2)), draw(st.integers(1, 7)), draw(st.integers(1, 7)), draw(st.integers(1, 3))
    oh, ow = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    mode = draw(st.sampled_from(["plain", "align", "half"]))
    q = _q(dtype, _scale(draw), _zp(draw, dtype))
    kind = "ResizeBilinearOptions" if op == "RESIZE_BILINEAR" else "ResizeNearestNeighborOptions"
    path = _path(op)
    build(path, op, [T([n, h, w, c], dtype, **q), T([2], "int32", data=_i32([oh, ow]))],
          [T([n, oh, ow, c], dtype, **q)],
          opts(kind, alignCorners=mode == "align", halfPixelCenters=mode == "half"), version=3)
    return path


@pytest.mark.parity("RESIZE_BILINEAR", "int8")
@_settings(220)
@given(resize_models("RESIZE_BILINEAR", "int8"))
def test_resize_bilinear_int8(path: Path) -> None:
    _check(path, "exact", chunked=True)


@pytest.mark.parity("RESIZE_BILINEAR", "float32")
@_settings(200)
@given(resize_models("RESIZE_BILINEAR", "float32"))
def test_resize_bilinear_float32(path: Path) -> None:
    """TFLM's float32 blend, term by term in its order: bit-exact, extreme values included."""
    _check_float_bits(path)
    _check(path, "exact", chunked=True)


@pytest.mark.parametrize("dtype", [pytest.param(t, marks=pytest.mark.parity("RESIZE_NEAREST_NEIGHBOR", t))
                                   for t in ("int8", "int16", "float32")])
@_settings(220)
@given(data=st.data())
def test_resize_nearest_neighbor(dtype: str, data) -> None:  # type: ignore[no-untyped-def]
    _check(data.draw(resize_models("RESIZE_NEAREST_NEIGHBOR", dtype)), "exact")


def test_resize_refuses() -> None:
    p = _path("RESIZE_BILINEAR")
    build(p, "RESIZE_BILINEAR", [T([1, 2, 2, 1], "int16", scale=0.1), T([2], "int32", data=_i32([4, 4]))],
          [T([1, 4, 4, 1], "int16", scale=0.1)], opts("ResizeBilinearOptions"))
    _refused(p, "RESIZE_BILINEAR")
    p = _path("RESIZE_NEAREST_NEIGHBOR")
    build(p, "RESIZE_NEAREST_NEIGHBOR", [T([1, 2, 2, 1], "int8", scale=0.1), T([2], "int32", data=_i32([4, 4]))],
          [T([1, 4, 4, 1], "int8", scale=0.1)],
          opts("ResizeNearestNeighborOptions", alignCorners=True, halfPixelCenters=True))
    _refused(p, "RESIZE_NEAREST_NEIGHBOR")


# ----------------------------------------------------------------------------- depth / space / batch

@st.composite
def depth_space_models(draw, op: str, dtype: str) -> Path:  # type: ignore[no-untyped-def]
    b = draw(st.integers(1, 4))
    n, h, w, c = draw(st.integers(1, 2)), draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(1, 3))
    q = _q(dtype, _scale(draw), _zp(draw, dtype))
    if op == "DEPTH_TO_SPACE":
        xs, ys, kind = [n, h, w, c * b * b], [n, h * b, w * b, c], "DepthToSpaceOptions"
    else:
        xs, ys, kind = [n, h * b, w * b, c], [n, h, w, c * b * b], "SpaceToDepthOptions"
    path = _path(op)
    build(path, op, [T(xs, dtype, **q)], [T(ys, dtype, **q)], opts(kind, blockSize=b))
    return path


@st.composite
def batch_space_models(draw, op: str, dtype: str, padded: bool = True) -> Path:  # type: ignore[no-untyped-def]
    rank = draw(st.sampled_from([3, 4]))
    spatial = rank - 2
    block = [draw(st.integers(1, 3)) for _ in range(spatial)]
    n, c = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    inner = [draw(st.integers(1, 3)) for _ in range(spatial)]  # per-block cells
    q = _q(dtype, _scale(draw), _zp(draw, dtype))
    if op == "BATCH_TO_SPACE_ND":
        crops = [[draw(st.integers(0, b * s - 1)) if padded else 0 for _ in range(1)] for b, s in zip(block, inner)]
        pairs = []
        for b, s, (ct,) in zip(block, inner, crops):
            cb = draw(st.integers(0, b * s - 1 - ct)) if padded else 0
            pairs.append([ct, cb])
        xs = [n * int(np.prod(block))] + inner + [c]
        ys = [n] + [b * s - p[0] - p[1] for b, s, p in zip(block, inner, pairs)] + [c]
    else:
        pairs = []
        for b, s in zip(block, inner):
            total = b * s
            pt = draw(st.integers(0, min(total - 1, 2))) if padded else 0
            pb = draw(st.integers(0, min(total - 1 - pt, 2))) if padded else 0
            pairs.append([pt, pb])
        xs = [n] + [b * s - p[0] - p[1] for b, s, p in zip(block, inner, pairs)] + [c]
        ys = [n * int(np.prod(block))] + inner + [c]
    path = _path(op)
    build(path, op, [T(xs, dtype, **q), T([spatial], "int32", data=_i32(block)),
                     T([spatial, 2], "int32", data=_i32(pairs))], [T(ys, dtype, **q)])
    return path


_MOVE_TYPES = [pytest.param(op, t, marks=pytest.mark.parity(op, t))
               for op in ("DEPTH_TO_SPACE", "SPACE_TO_DEPTH") for t in ("int8", "float32")]


@pytest.mark.parametrize("op,dtype", _MOVE_TYPES)
@_settings(200)
@given(data=st.data())
def test_depth_space(op: str, dtype: str, data) -> None:  # type: ignore[no-untyped-def]
    _check(data.draw(depth_space_models(op, dtype)), "exact")


@pytest.mark.parametrize("dtype", [pytest.param(t, marks=pytest.mark.parity("BATCH_TO_SPACE_ND", t))
                                   for t in ("int8", "float32")])
@_settings(220)
@given(data=st.data())
def test_batch_to_space_nd(dtype: str, data) -> None:  # type: ignore[no-untyped-def]
    _check(data.draw(batch_space_models("BATCH_TO_SPACE_ND", dtype)), "exact")


@pytest.mark.parametrize("dtype", [pytest.param(t, marks=pytest.mark.parity("SPACE_TO_BATCH_ND", t))
                                   for t in ("int8", "float32")])
@_settings(200)
@given(data=st.data())
def test_space_to_batch_nd(dtype: str, data) -> None:  # type: ignore[no-untyped-def]
    """Without padding: tflite-micro fills padding from an uninitialised parameter (see below)."""
    _check(data.draw(batch_space_models("SPACE_TO_BATCH_ND", dtype, padded=False)), "exact")


@pytest.mark.parametrize("dtype", ["int8", "float32"])
@_settings(60)
@given(data=st.data())
def test_space_to_batch_nd_padded_vs_litert(dtype: str, data) -> None:  # type: ignore[no-untyped-def]
    """With padding, against LiteRT: tflite-micro's SPACE_TO_BATCH_ND pads with whatever its
    never-set ``output_offset`` holds, so the padding value is TFLite's: the zero point (0 for float)."""
    path = data.draw(batch_space_models("SPACE_TO_BATCH_ND", dtype))
    sets = random_inputs(path, np.random.default_rng(0), N_SETS)
    it = litert.Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    got = run_micro(path, sets)
    for xs, g in zip(sets, got):
        it.set_tensor(it.get_input_details()[0]["index"], xs[0])
        it.invoke()
        assert np.array_equal(g[0], it.get_tensor(it.get_output_details()[0]["index"]))


def test_depth_space_batch_refuses() -> None:
    p = _path("DEPTH_TO_SPACE")
    build(p, "DEPTH_TO_SPACE", [T([1, 2, 2, 8], "int16", scale=0.1)], [T([1, 4, 4, 2], "int16", scale=0.1)],
          opts("DepthToSpaceOptions", blockSize=2))
    _refused(p, "DEPTH_TO_SPACE")
    p = _path("SPACE_TO_DEPTH")
    build(p, "SPACE_TO_DEPTH", [T([1, 3, 4, 2], "int8", scale=0.1)], [T([1, 1, 2, 8], "int8", scale=0.1)],
          opts("SpaceToDepthOptions", blockSize=2))
    _refused(p, "SPACE_TO_DEPTH")
    p = _path("BATCH_TO_SPACE_ND")
    build(p, "BATCH_TO_SPACE_ND", [T([3, 2, 2, 1], "float32"), T([2], "int32", data=_i32([2, 2])),
                                   T([2, 2], "int32", data=_i32([[0, 0], [0, 0]]))], [T([1, 4, 4, 1], "float32")])
    _refused(p, "BATCH_TO_SPACE_ND")
    p = _path("SPACE_TO_BATCH_ND")
    build(p, "SPACE_TO_BATCH_ND", [T([1, 3, 3, 1], "int32"), T([2], "int32", data=_i32([2, 2])),
                                   T([2, 2], "int32", data=_i32([[0, 1], [0, 1]]))], [T([4, 2, 2, 1], "int32")])
    _refused(p, "SPACE_TO_BATCH_ND")


# ----------------------------------------------------------------------------- L2_POOL_2D

@st.composite
def l2_pool_models(draw) -> Path:  # type: ignore[no-untyped-def]
    n, h, w, c = draw(st.integers(1, 2)), draw(st.integers(1, 7)), draw(st.integers(1, 7)), draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, h)), draw(st.integers(1, w))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    pad = draw(st.sampled_from([SAME, VALID]))
    ho = (h + sh - 1) // sh if pad == SAME else (h - kh + sh) // sh
    wo = (w + sw - 1) // sw if pad == SAME else (w - kw + sw) // sw
    act = draw(st.sampled_from([0, 1, 2, 3]))
    path = _path("L2_POOL_2D")
    build(path, "L2_POOL_2D", [T([n, h, w, c], "float32")], [T([n, ho, wo, c], "float32")],
          opts("Pool2DOptions", padding=pad, strideW=sw, strideH=sh, filterWidth=kw, filterHeight=kh,
               fusedActivationFunction=act))
    return path


@pytest.mark.parity("L2_POOL_2D", "float32")
@_settings(220)
@given(l2_pool_models())
def test_l2_pool_2d_float32(path: Path) -> None:
    """Sequential float32 sums of squares, division, sqrt, clamp: bit-exact, extreme values included."""
    _check_float_bits(path)
    _check(path, "exact")


def test_l2_pool_refuses() -> None:
    p = _path("L2_POOL_2D")
    build(p, "L2_POOL_2D", [T([1, 4, 4, 1], "int8", scale=0.1)], [T([1, 2, 2, 1], "int8", scale=0.1)],
          opts("Pool2DOptions", padding=VALID, strideW=2, strideH=2, filterWidth=2, filterHeight=2))
    _refused(p, "L2_POOL_2D")



@st.composite
def pool_models(draw, op: str, dtype: str) -> Path:  # type: ignore[no-untyped-def]
    n, h, w, c = draw(st.integers(1, 2)), draw(st.integers(1, 8)), draw(st.integers(1, 8)), draw(st.integers(1, 4))
    kh, kw = draw(st.integers(1, h)), draw(st.integers(1, w))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    pad = draw(st.sampled_from([SAME, VALID]))
    ho = (h + sh - 1) // sh if pad == SAME else (h - kh + sh) // sh
    wo = (w + sw - 1) // sw if pad == SAME else (w - kw + sw) // sw
    act = draw(st.sampled_from([0, 1, 2, 3]))
    q = _q(dtype, _scale(draw, -8, -1), _zp(draw, dtype))
    path = _path(op)
    build(path, op, [T([n, h, w, c], dtype, **q)], [T([n, ho, wo, c], dtype, **q)],
          opts("Pool2DOptions", padding=pad, strideW=sw, strideH=sh, filterWidth=kw, filterHeight=kh,
               fusedActivationFunction=act))
    return path


@pytest.mark.parametrize("op,dtype,kind", [
    pytest.param(op, t, k, marks=_parity(op, t, k))
    for op in ("AVERAGE_POOL_2D", "MAX_POOL_2D")
    for t, k in (("int8", "exact"), ("int16", "exact"), ("float32", "close" if op == "AVERAGE_POOL_2D" else "exact"))])
@_settings(150)
@given(data=st.data())
def test_pool_2d(op: str, dtype: str, kind: str, data) -> None:  # type: ignore[no-untyped-def]
    _check(data.draw(pool_models(op, dtype)), kind)


def test_pool_2d_refuses() -> None:
    for op in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        p = _path(op)
        build(p, op, [T([1, 4, 4, 1], "int32")], [T([1, 2, 2, 1], "int32")],
              opts("Pool2DOptions", padding=VALID, strideW=2, strideH=2, filterWidth=2, filterHeight=2))
        _refused(p, op)
        p = _path(op)
        build(p, op, [T([1, 4, 4, 1], "int16", scale=0.1)], [T([1, 2, 2, 1], "int16", scale=0.2)],
              opts("Pool2DOptions", padding=VALID, strideW=2, strideH=2, filterWidth=2, filterHeight=2))
        _refused(p, op)

# ----------------------------------------------------------------------------- reductions

@st.composite
def reduce_models(draw, op: str, dtype: str, rescale: bool = True, max_axes: int = 2) -> Path:  # type: ignore[no-untyped-def]
    rank = draw(st.integers(1, 4))
    shape = [draw(st.integers(1, 5)) for _ in range(rank)]
    k = draw(st.integers(1, min(rank, max_axes)))
    axes = draw(st.permutations(range(rank)))[:k]
    axes = [a - rank if draw(st.booleans()) else a for a in axes]
    if draw(st.booleans()):
        axes = axes + [axes[0]]  # a duplicate
    keep = draw(st.booleans())
    resolved = {a % rank for a in axes}
    out_shape = [1 if d in resolved else s for d, s in enumerate(shape)] if keep else \
        [s for d, s in enumerate(shape) if d not in resolved]
    count = int(np.prod([shape[a] for a in resolved]))
    qx = _q(dtype, _scale(draw), _zp(draw, dtype))
    qy = dict(qx)
    if dtype in ("int8", "int16") and rescale:
        # SUM: int8 sums are dominated by count * zero point, int16 ones (zero point 0) grow as sqrt(count)
        factor = 1.0 if op != "SUM" else (count if dtype == "int8" else np.sqrt(count))
        lo = 0.5 if op == "SUM" and dtype == "int8" else -0.5
        qy = {"scale": float(np.float32(qx["scale"] * factor * 2.0 ** draw(st.floats(lo, lo + 1.5)))),
              "zp": draw(st.integers(-48, 48)) if dtype == "int8" else 0}
    path = _path(op)
    build(path, op, [T(shape, dtype, **qx), T([len(axes)], "int32", data=_i32(axes))], [T(out_shape, dtype, **qy)],
          opts("ReducerOptions", keepDims=keep))
    return path


@pytest.mark.parametrize("dtype,kind", [pytest.param(t, k, marks=_parity("SUM", t, k))
                                        for t, k in (("int8", "exact"), ("int16", "exact"), ("float32", "exact"))])
@_settings(220)
@given(data=st.data())
def test_sum(dtype: str, kind: str, data) -> None:  # type: ignore[no-untyped-def]
    """float32: TFLM's sequential float32 sums (also with a 4 KiB workspace and extreme values)."""
    path = data.draw(reduce_models("SUM", dtype, max_axes=4))
    if dtype == "float32":
        _check_float_bits(path)
    _check(path, kind, chunked=dtype == "float32")


@pytest.mark.parametrize("op,dtype", [pytest.param(op, t, marks=pytest.mark.parity(op, t))
                                      for op in ("REDUCE_MAX", "REDUCE_MIN") for t in ("int8", "float32")])
@_settings(220)
@given(data=st.data())
def test_reduce_max_min(op: str, dtype: str, data) -> None:  # type: ignore[no-untyped-def]
    _check(data.draw(reduce_models(op, dtype, rescale=False, max_axes=4)), "exact")


@pytest.mark.parity("REDUCE_ALL", "bool")
@_settings(220)
@given(reduce_models("REDUCE_ALL", "bool", max_axes=4))
def test_reduce_all_bool(path: Path) -> None:
    _check(path, "exact")


@pytest.mark.parametrize("dtype,rescale,kind", [
    pytest.param("int8", True, "exact", marks=pytest.mark.parity("MEAN", "int8")),
    pytest.param("int8", False, "exact", marks=pytest.mark.parity("MEAN", "int8")),
    pytest.param("int16", True, "exact", marks=pytest.mark.parity("MEAN", "int16")),
    pytest.param("int16", False, "exact", marks=pytest.mark.parity("MEAN", "int16")),
    pytest.param("float32", False, "exact", marks=pytest.mark.parity("MEAN", "float32")),
])
@_settings(200)
@given(data=st.data())
def test_mean(dtype: str, rescale: bool, kind: str, data) -> None:  # type: ignore[no-untyped-def]
    """MEAN: differing scales (QuantizedMeanOrSum) and equal ones (the truncating integer mean);
    float32: the sequential float32 sum over float(count) (also chunked and with extreme values)."""
    path = data.draw(reduce_models("MEAN", dtype, rescale=rescale, max_axes=4))
    if dtype == "float32":
        _check_float_bits(path)
    _check(path, kind, chunked=dtype == "float32")


@pytest.mark.parametrize("op", ["SUM", "MEAN"])
@pytest.mark.parametrize("shape,axes", [
    ((1, 7, 7, 1280), (1, 2)), ((1, 49, 64), (2,)), ((1, 100, 100, 3), (0, 1, 2, 3)), ((3, 40, 50), (0, 2)),
    ((2, 300, 5), (1,)), ((70, 2, 3), (1, 2)), ((5, 4, 3, 2, 90), (0, 2, 3)),
])
def test_float_sum_mean_large(op: str, shape: tuple, axes: tuple) -> None:  # type: ignore[type-arg]
    """Float SUM/MEAN of larger tensors (both the per-element vector adds and the blocked row
    accumulations, split over several blocks by a 4 KiB workspace) == tflite-micro bit for bit,
    with inputs that cancel (a float64 or pairwise sum would differ)."""
    rng = np.random.default_rng(len(shape) * 7 + sum(axes))
    out_shape = [s for d, s in enumerate(shape) if d not in axes]
    path = _path(op)
    build(path, op, [T(list(shape), "float32"), T([len(axes)], "int32", data=_i32(axes))],
          [T(out_shape, "float32")], opts("ReducerOptions", keepDims=False))
    big = (rng.standard_normal(shape) * 1e4).astype(np.float32)
    sets = [[(rng.standard_normal(shape) * 10).astype(np.float32)], [np.where(rng.random(shape) < 0.5, big, -big)]]
    expect = _run_tflm(path, sets)
    for got in (run_micro(path, sets), _run_small_workspace(path, sets)):
        for g, e in zip(got, expect):
            assert np.array_equal(g[0], e), f"max difference {np.max(np.abs(g[0] - e))} from tflite-micro"
    path.unlink(missing_ok=True)


@pytest.mark.parametrize("cap", [2, 3, 5, 17, 64])
def test_float_reduction_blocks(cap: int) -> None:
    """FloatReduction with tiny buffers (one or a few elements per block, carries across many
    blocks) gives tflite-micro's bits."""
    from edge_runtime.backends.micro.kernels.reduce import FloatReduction

    rng = np.random.default_rng(cap)
    for shape, axes in (((3, 4, 5), (0, 2)), ((2, 3, 4, 5), (1, 2, 3)), ((6, 7), (0,)), ((4, 5), (0, 1))):
        out_shape = [s for d, s in enumerate(shape) if d not in axes]
        path = _path("SUM")
        build(path, "SUM", [T(list(shape), "float32"), T([len(axes)], "int32", data=_i32(axes))],
              [T(out_shape, "float32")], opts("ReducerOptions", keepDims=False))
        x = (rng.standard_normal(shape) * 10.0 ** rng.integers(-3, 5, shape)).astype(np.float32)
        e = _run_tflm(path, [[x]])[0]
        red = FloatReduction(shape, axes, cap)
        assert red.size <= max(cap, 2)
        y = np.empty([1 if d in axes else s for d, s in enumerate(shape)], np.float32)
        red.bind(x, y, np.empty(red.size, np.float32))
        red.run()
        assert np.array_equal(y.reshape(e.shape), e), (shape, axes, cap)
        path.unlink(missing_ok=True)


def test_reductions_refuse() -> None:
    for op in ("SUM", "REDUCE_MAX", "REDUCE_MIN", "MEAN"):
        p = _path(op)
        build(p, op, [T([2, 3], "int32"), T([1], "int32", data=_i32([1]))], [T([2], "int32")],
              opts("ReducerOptions", keepDims=False))
        _refused(p, op)
    p = _path("REDUCE_MAX")
    build(p, "REDUCE_MAX", [T([2, 3], "int8", scale=0.1), T([1], "int32", data=_i32([1]))],
          [T([2], "int8", scale=0.2)], opts("ReducerOptions", keepDims=False))
    _refused(p, "REDUCE_MAX")
    p = _path("REDUCE_ALL")
    build(p, "REDUCE_ALL", [T([2, 3], "bool"), T([1], "int32", data=_i32([2]))], [T([2], "bool")],
          opts("ReducerOptions", keepDims=False))
    _refused(p, "REDUCE_ALL")


# ----------------------------------------------------------------------------- ARG_MAX / ARG_MIN

@st.composite
def arg_models(draw, op: str, dtype: str) -> Path:  # type: ignore[no-untyped-def]
    rank = draw(st.integers(1, 4))
    shape = [draw(st.integers(1, 6)) for _ in range(rank)]
    axis = draw(st.integers(-rank, rank - 1))
    out_shape = [s for d, s in enumerate(shape) if d != axis % rank]
    q = _q(dtype, _scale(draw), _zp(draw, dtype))
    kind = "ArgMaxOptions" if op == "ARG_MAX" else "ArgMinOptions"
    path = _path(op)
    build(path, op, [T(shape, dtype, **q), T([1], "int32", data=_i32([axis]))], [T(out_shape, "int32")],
          opts(kind, outputType=2))
    return path


@pytest.mark.parametrize("op,dtype", [pytest.param(op, t, marks=pytest.mark.parity(op, t))
                                      for op in ("ARG_MAX", "ARG_MIN") for t in ("int8", "float32")])
@_settings(220)
@given(data=st.data())
def test_arg_max_min(op: str, dtype: str, data) -> None:  # type: ignore[no-untyped-def]
    _check(data.draw(arg_models(op, dtype)), "exact")


def test_arg_refuses() -> None:
    for op, kind in (("ARG_MAX", "ArgMaxOptions"), ("ARG_MIN", "ArgMinOptions")):
        p = _path(op)
        build(p, op, [T([2, 3], "int8", scale=0.1), T([1], "int32", data=_i32([1]))], [T([2], "int64")],
              opts(kind, outputType=4))
        _refused(p, op)
        p = _path(op)
        build(p, op, [T([2, 3], "int16", scale=0.1), T([1], "int32", data=_i32([1]))], [T([2], "int32")],
              opts(kind, outputType=2))
        _refused(p, op)


# ----------------------------------------------------------------------------- no allocation in invoke

def _alloc_models() -> dict[str, Path]:
    """One mid-sized model per op (outputs of tens of KiB, so any per-invoke array would show)."""
    rng = np.random.default_rng(1)
    q = {"scale": 0.05, "zp": 3}
    red = opts("ReducerOptions", keepDims=True)
    specs: dict[str, tuple] = {  # type: ignore[type-arg]
        "TRANSPOSE_CONV": ([T([4], "int32", data=_i32([1, 32, 32, 16])),
                            T([16, 3, 3, 8], "int8", scale=np.full(16, 0.01), zp=0,
                              data=rng.integers(-127, 128, (16, 3, 3, 8)).astype(np.int8)),
                            T([1, 16, 16, 8], "int8", **q), T([16], "int32", scale=np.full(16, 5e-4), zp=0,
                                                              data=_i32(rng.integers(-99, 99, 16)))],
                           [T([1, 32, 32, 16], "int8", scale=0.2, zp=0)],
                           opts("TransposeConvOptions", padding=SAME, strideW=2, strideH=2)),
        "TRANSPOSE_CONV float32": ([T([4], "int32", data=_i32([1, 33, 31, 16])),
                                    T([16, 3, 3, 8], "float32",
                                      data=rng.standard_normal((16, 3, 3, 8)).astype(np.float32)),
                                    T([1, 16, 16, 8], "float32"), T([16], "float32", data=np.ones(16, np.float32))],
                                   [T([1, 33, 31, 16], "float32")],
                                   opts("TransposeConvOptions", padding=VALID, strideW=2, strideH=2,
                                        fusedActivationFunction=3)),
        "BATCH_MATMUL": ([T([4, 24, 32], "int16", scale=1e-3), T([40, 24], "int16", scale=1e-3)],
                         [T([4, 32, 40], "int16", scale=1e-2)], opts("BatchMatMulOptions", adjX=True, adjY=True)),
        "RESIZE_BILINEAR": ([T([1, 20, 20, 8], "int8", **q), T([2], "int32", data=_i32([48, 40]))],
                            [T([1, 48, 40, 8], "int8", **q)], opts("ResizeBilinearOptions", halfPixelCenters=True)),
        "RESIZE_NEAREST_NEIGHBOR": ([T([1, 20, 20, 8], "int8", **q), T([2], "int32", data=_i32([48, 40]))],
                                    [T([1, 48, 40, 8], "int8", **q)], opts("ResizeNearestNeighborOptions")),
        "DEPTH_TO_SPACE": ([T([1, 16, 16, 64], "int8", **q)], [T([1, 64, 64, 4], "int8", **q)],
                           opts("DepthToSpaceOptions", blockSize=4)),
        "SPACE_TO_DEPTH": ([T([1, 64, 64, 4], "int8", **q)], [T([1, 16, 16, 64], "int8", **q)],
                           opts("SpaceToDepthOptions", blockSize=4)),
        "BATCH_TO_SPACE_ND": ([T([4, 32, 32, 8], "float32"), T([2], "int32", data=_i32([2, 2])),
                               T([2, 2], "int32", data=_i32([[1, 1], [0, 2]]))], [T([1, 62, 62, 8], "float32")], None),
        "SPACE_TO_BATCH_ND": ([T([1, 62, 62, 8], "float32"), T([2], "int32", data=_i32([2, 2])),
                               T([2, 2], "int32", data=_i32([[1, 1], [0, 2]]))], [T([4, 32, 32, 8], "float32")], None),
        "L2_POOL_2D": ([T([1, 64, 64, 8], "float32")], [T([1, 32, 32, 8], "float32")],
                       opts("Pool2DOptions", padding=SAME, strideW=2, strideH=2, filterWidth=3, filterHeight=3)),
        "AVERAGE_POOL_2D": ([T([1, 64, 64, 8], "int8", **q)], [T([1, 32, 32, 8], "int8", **q)],
                            opts("Pool2DOptions", padding=SAME, strideW=2, strideH=2, filterWidth=3, filterHeight=3)),
        "MAX_POOL_2D": ([T([1, 64, 64, 8], "int16", scale=0.01)], [T([1, 32, 32, 8], "int16", scale=0.01)],
                        opts("Pool2DOptions", padding=SAME, strideW=2, strideH=2, filterWidth=3, filterHeight=3)),
        "AVERAGE_POOL_2D float32": ([T([1, 64, 64, 8], "float32")], [T([1, 32, 32, 8], "float32")],
                                    opts("Pool2DOptions", padding=VALID, strideW=2, strideH=2, filterWidth=2,
                                         filterHeight=2)),
        "SUM": ([T([8, 64, 64], "int16", scale=0.01), T([1], "int32", data=_i32([2]))],
                [T([8, 64, 1], "int16", scale=0.1)], red),
        "SUM int8": ([T([16, 64, 32], "int8", **q), T([2], "int32", data=_i32([0, 2]))],
                     [T([64], "int8", scale=0.5, zp=1)], opts("ReducerOptions", keepDims=False)),
        "MEAN float32": ([T([1, 64, 64, 16], "float32"), T([2], "int32", data=_i32([1, 2]))],
                         [T([1, 1, 1, 16], "float32")], red),
        "MEAN": ([T([1, 64, 64, 16], "int8", **q), T([1], "int32", data=_i32([3]))],
                 [T([1, 64, 64, 1], "int8", scale=0.02, zp=-1)], red),
        "REDUCE_MAX": ([T([1, 64, 64, 16], "int8", **q), T([1], "int32", data=_i32([3]))],
                       [T([1, 64, 64, 1], "int8", **q)], red),
        "REDUCE_MIN": ([T([1, 64, 64, 16], "float32"), T([1], "int32", data=_i32([1]))],
                       [T([1, 1, 64, 16], "float32")], red),
        "REDUCE_ALL": ([T([64, 64, 16], "bool"), T([1], "int32", data=_i32([0]))], [T([1, 64, 16], "bool")], red),
        "ARG_MAX": ([T([64, 64, 16], "int8", **q), T([1], "int32", data=_i32([2]))], [T([64, 64], "int32")],
                    opts("ArgMaxOptions", outputType=2)),
        "ARG_MIN": ([T([64, 64, 16], "float32"), T([1], "int32", data=_i32([0]))], [T([64, 16], "int32")],
                    opts("ArgMinOptions", outputType=2)),
    }
    out = {}
    for label, (ins, outs, o) in specs.items():
        op = label.split()[0]
        out[label] = _path(op)
        build(out[label], op, ins, outs, o)
    return out


@pytest.mark.parametrize("limit", [None, 4096])
def test_invoke_does_not_allocate(limit) -> None:  # type: ignore[no-untyped-def]
    """Steady-state invokes stay within the bounds of tests/test_micro_memory.py (numpy's own
    iterator buffer, at most 64 KiB, is the only transient) and do not grow; also when the
    kernels chunk their work to a 4 KiB workspace."""

    for op, path in _alloc_models().items():
        m = open_model(str(path)) if limit is None else open_model(str(path), workspace_limit=limit)
        it = m.interpreter
        xs = random_inputs(path, np.random.default_rng(0), 1)[0]
        for i, x in enumerate(xs):
            it.set_input(i, x)

        grown, peak = traced_allocations(it.invoke, 20, warmup=3, traced_warmup=1)
        assert grown <= 4 * 1024, f"{op}: memory grew by {grown} bytes"
        assert peak <= 80 * 1024, f"{op}: an invoke allocated {peak} bytes"
