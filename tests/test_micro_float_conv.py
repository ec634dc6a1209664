"""float32 CONV_2D, DEPTHWISE_CONV_2D and TRANSPOSE_CONV on micro sum in tflite-micro's order: bit-exact.

tflite-micro's float reference kernels add ``input * filter`` one float32 product and one float32 sum at a
time (filter row, column, input channel; TRANSPOSE_CONV: input row, column, channel), from ``0.0f``, then the
bias and the clamp. micro's float kernels (``kernels/conv_float.py``, ``kernels/depthwise_float.py``,
``kernels/spatial/transpose_conv_float.py``, and their compiled forms in ``fast/``) must give the same bits
(``np.array_equal`` against tflite-micro, in-place planning on and off) on random geometry: shapes, strides,
SAME/VALID padding, dilations, depth multipliers, every fused activation, with and without a bias, batch 2;
on the numpy path and on the compiled path, which the op must really take; also on extreme values (signed
zeros, denormals, +-inf, NaN, overflow to +-FLT_MAX), in place over many chunks, and with a filter holding inf
next to the padding (tflite-micro skips the taps outside the input; a zero-padded 0 * inf would be NaN).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_runtime.backends.micro import fast, open_model

tb = pytest.importorskip("tflite_builder")
pytest.importorskip("tflite_micro")
from test_micro_ops_conv import assert_float_bits, float_extreme_sets  # noqa: E402
T, opts = tb.T, tb.opts

OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV")
PATHS = ["numpy", pytest.param("numba", marks=pytest.mark.skipif(not fast._numba_importable(),
                                                                   reason="numba is not installed"))]


def _out(size: int, k: int, s: int, d: int, same: bool) -> int:
    eff = (k - 1) * d + 1
    return (size + s - 1) // s if same else (size - eff + s) // s


def _conv_model(path: Path, op: str, rng: np.random.Generator, wide: bool = False) -> tuple[Path, tuple[int, ...]]:
    """A random CONV_2D or DEPTHWISE_CONV_2D (float32) that TFLite accepts; returns it and its input shape."""
    depthwise = op == "DEPTHWISE_CONV_2D"
    while True:
        n = int(rng.integers(1, 3))
        h, w = (int(v) for v in rng.integers(1, 13, 2))
        kh, kw = (int(v) for v in rng.integers(1, 5, 2))
        sh, sw = (int(v) for v in rng.integers(1, 4, 2))
        dh, dw = (int(v) for v in rng.integers(1, 3, 2))
        same = bool(rng.integers(0, 2))
        oh, ow = _out(h, kh, sh, dh, same), _out(w, kw, sw, dw, same)
        if oh >= 1 and ow >= 1:
            break
    cin = int(rng.integers(24, 80)) if wide else int(rng.integers(1, 12))
    mult = int(rng.integers(1, 4)) if depthwise else 1
    cout = cin * mult if depthwise else (int(rng.integers(24, 80)) if wide else int(rng.integers(1, 12)))
    wshape = (1, kh, kw, cout) if depthwise else (cout, kh, kw, cin)
    ins = [T((n, h, w, cin), "float32"), T(wshape, "float32", data=rng.standard_normal(wshape).astype(np.float32))]
    if rng.integers(0, 2):
        ins.append(T((cout,), "float32", data=rng.standard_normal(cout).astype(np.float32)))
    common = dict(padding=0 if same else 1, strideW=sw, strideH=sh, fusedActivationFunction=int(rng.integers(0, 4)),
                  dilationWFactor=dw, dilationHFactor=dh)
    o = opts("DepthwiseConv2DOptions", depthMultiplier=mult, **common) if depthwise else opts("Conv2DOptions", **common)
    tb.build(path, op, ins, [T((n, oh, ow, cout), "float32")], o, version=1)
    return path, (n, h, w, cin)


def _tconv_model(path: Path, rng: np.random.Generator, wide: bool = False) -> tuple[Path, tuple[int, ...]]:
    """A random float32 TRANSPOSE_CONV (any output size whose forward convolution gives the input size)."""
    n = int(rng.integers(1, 3))
    h, w = (int(v) for v in rng.integers(1, 7, 2))
    cin, cout = ((int(v) for v in rng.integers(16, 48, 2)) if wide else (int(v) for v in rng.integers(1, 9, 2)))
    kh, kw = (int(v) for v in rng.integers(1, 5, 2))
    sh, sw = (int(v) for v in rng.integers(1, 4, 2))
    same = bool(rng.integers(0, 2))
    ho = (h - 1) * sh + (1 if same else kh) + int(rng.integers(0, sh))
    wo = (w - 1) * sw + (1 if same else kw) + int(rng.integers(0, sw))
    ins = [T([4], "int32", data=np.array([n, ho, wo, cout], np.int32)),
           T([cout, kh, kw, cin], "float32", data=rng.standard_normal((cout, kh, kw, cin)).astype(np.float32)),
           T([n, h, w, cin], "float32")]
    if rng.integers(0, 2):
        ins.append(T([cout], "float32", data=rng.standard_normal(cout).astype(np.float32)))
    tb.build(path, "TRANSPOSE_CONV", ins, [T([n, ho, wo, cout], "float32")],
             opts("TransposeConvOptions", padding=0 if same else 1, strideW=sw, strideH=sh,
                  fusedActivationFunction=int(rng.integers(0, 4))), version=3)
    return path, (n, h, w, cin)


def _model(tmp_path: Path, op: str, seed: int, wide: bool = False) -> tuple[Path, tuple[int, ...]]:
    rng = np.random.default_rng(seed)
    path = tmp_path / f"{op.lower()}_{seed}.tflite"
    return _tconv_model(path, rng, wide) if op == "TRANSPOSE_CONV" else _conv_model(path, op, rng, wide)


def _inputs(shape: tuple[int, ...], seed: int) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(seed + 7)
    return [[(rng.standard_normal(shape) * s).astype(np.float32)] for s in (1.0, 40.0)]


def _use(monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    monkeypatch.setenv("EDGE_RUNTIME_MICRO_FAST", "1" if path == "numba" else "0")


def _paths(model: Path, op: str) -> list[Any]:
    return [p["path"] for p in open_model(str(model)).info["kernel_paths"] if p["name"] == op]


def _check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, op: str, path: str, seeds: range, wide: bool = False
           ) -> None:
    _use(monkeypatch, path)
    for seed in seeds:
        model, shape = _model(tmp_path, op, seed, wide)
        assert _paths(model, op) == [path], model.name
        tb.assert_exact(model, _inputs(shape, seed))
        # signed zeros, denormals, +-inf, NaN, sums past FLT_MAX, cancelling magnitudes: the same bits too
        assert_float_bits(model, float_extreme_sets(shape, seed))


@pytest.mark.parity("CONV_2D", "float32")
@pytest.mark.parametrize("path", PATHS)
def test_conv2d_float_equals_tflite_micro(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    _check(tmp_path, monkeypatch, "CONV_2D", path, range(24))
    _check(tmp_path, monkeypatch, "CONV_2D", path, range(100, 104), wide=True)  # (full column blocks, long rows)


@pytest.mark.parity("DEPTHWISE_CONV_2D", "float32")
@pytest.mark.parametrize("path", PATHS)
def test_depthwise_float_equals_tflite_micro(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    _check(tmp_path, monkeypatch, "DEPTHWISE_CONV_2D", path, range(24))
    _check(tmp_path, monkeypatch, "DEPTHWISE_CONV_2D", path, range(100, 104), wide=True)


@pytest.mark.parity("TRANSPOSE_CONV", "float32")
@pytest.mark.parametrize("path", PATHS)
def test_transpose_conv_float_equals_tflite_micro(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    _check(tmp_path, monkeypatch, "TRANSPOSE_CONV", path, range(24))
    _check(tmp_path, monkeypatch, "TRANSPOSE_CONV", path, range(100, 103), wide=True)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("op", OPS)
def test_float_conv_overflow_and_nan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, op: str, path: str) -> None:
    """Sums past FLT_MAX clamp to +-FLT_MAX (activation NONE), NaN stays NaN, as in tflite-micro."""
    _use(monkeypatch, path)
    model, shape = _model(tmp_path, op, 5)
    x = np.full(shape, 3e38, np.float32)
    x[..., 0] = -3e38
    x[0, 0, 0, 0] = np.nan
    want, got = tb.run_tflm(model, [[x]])[0][0], tb.run_micro(model, [[x]])[0][0]
    assert np.isnan(want).any() and np.array_equal(got, want, equal_nan=True)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("op", ("CONV_2D", "DEPTHWISE_CONV_2D"))
def test_infinite_weight_beside_the_padding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, op: str, path: str
                                             ) -> None:
    """tflite-micro skips the taps outside the input: an inf weight leaves the border outputs finite (a
    zero-padded product would be 0 * inf = NaN)."""
    _use(monkeypatch, path)
    depthwise = op == "DEPTHWISE_CONV_2D"
    wshape = (1, 3, 3, 4) if depthwise else (4, 3, 3, 4)
    w = np.random.default_rng(1).standard_normal(wshape).astype(np.float32)
    w[:, 0, 0, :] = np.inf  # (the top-left tap: in the padding for the first output row and column)
    o = dict(padding=0, strideW=1, strideH=1, fusedActivationFunction=0)
    model = tb.build(tmp_path / "inf.tflite", op, [T((1, 5, 5, 4), "float32"), T(wshape, "float32", data=w)],
                     [T((1, 5, 5, 4), "float32")],
                     opts("DepthwiseConv2DOptions", depthMultiplier=1, **o) if depthwise else opts("Conv2DOptions", **o),
                     version=1)
    x = np.abs(np.random.default_rng(2).standard_normal((1, 5, 5, 4))).astype(np.float32) + 0.5
    want = tb.run_tflm(model, [[x]])[0][0]
    assert np.isfinite(want[0, 0]).all()
    for in_place in (False, True):
        assert np.array_equal(tb.run_micro(model, [[x]], in_place=in_place)[0][0], want, equal_nan=True)


@pytest.mark.parametrize("path", PATHS)
def test_float_conv_chain_in_place_and_chunked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    """CONV_2D -> DEPTHWISE_CONV_2D -> CONV_2D: the later ops run in place over their input (line buffers), in
    many chunks of output rows with a small workspace limit; still tflite-micro's bits."""
    _use(monkeypatch, path)
    rng = np.random.default_rng(3)
    mb = tb.ModelBuilder()
    sg = mb.subgraph("main")
    x, t1, t2, y = (sg.tensor(T((1, 20, 20, 8), "float32")) for _ in range(4))

    def const(shape: tuple[int, ...]) -> int:
        return sg.tensor(T(shape, "float32", data=rng.standard_normal(shape).astype(np.float32)))

    same = dict(padding=0, strideW=1, strideH=1, fusedActivationFunction=1)
    sg.op("CONV_2D", [x, const((8, 3, 3, 8)), const((8,))], [t1], opts("Conv2DOptions", **same))
    sg.op("DEPTHWISE_CONV_2D", [t1, const((1, 3, 3, 8)), const((8,))], [t2],
          opts("DepthwiseConv2DOptions", depthMultiplier=1, **same))
    sg.op("CONV_2D", [t2, const((8, 1, 1, 8))], [y], opts("Conv2DOptions", padding=1, strideW=1, strideH=1))
    sg.io([x], [y])
    model = mb.write(tmp_path / "chain.tflite")
    xs = [[rng.standard_normal((1, 20, 20, 8)).astype(np.float32)]]
    want = tb.run_tflm(model, xs)[0][0]
    for limit in (4096, 1 << 20):
        m = open_model(str(model), workspace_limit=limit)
        assert m.info["in_place"] and {p["path"] for p in m.info["kernel_paths"]} == {path}
        assert np.array_equal(m.run(xs[0])[0], want), limit
