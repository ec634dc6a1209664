"""micro's CONV_2D on AVX-512 VNNI (``fast/conv_vnni.py``, ``fast/vnni.py``), bit for bit with tflite-micro.

- the ``vpdpbusd`` tile on its own against numpy's int64 sums of the same bytes;
- single-op int8 CONV_2D models on the compiled path against tflite-micro (``np.array_equal``, in place on
  and off: ``tflite_builder.assert_exact``) over every branch of the kernel: input channels not a multiple
  of 4 (taps of whole kernel rows; with dilation along x, padded channels, 1-3 channels copied per
  position), output channels not a multiple of 16 (padded lanes; per-position and row-tiled
  output stage), output rows not a multiple of the tile (the last tile's extra positions), strides 1-3,
  SAME / VALID padding, dilation, per-tensor and per-channel scales, input zero points at both ends of
  the range, batch 2, fused activations, the integer and float forms of the output stage, the whole
  image as one run of positions (one output column; pointwise layers) split into segments;
- each case asserts the op really ran on this path; a sum too long for int32 falls back to the BLAS kernel.

Skips without numba or on a CPU without AVX-512 VNNI.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from edge_runtime.backends.micro import fast, open_model

if not fast._numba_importable():
    pytest.skip("numba is not installed (pip install 'edge-runtime[fast]')", allow_module_level=True)

from edge_runtime.backends.micro.fast import conv_vnni, vnni  # noqa: E402
from tflite_builder import T, assert_exact, build, opts  # noqa: E402

if not vnni.supported():
    pytest.skip("this CPU (or numba's target) has no AVX-512 VNNI", allow_module_level=True)


@pytest.fixture(autouse=True)
def _compiled(monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("EDGE_RUNTIME_MICRO_FAST", "1")


def _out_size(size: int, k: int, s: int, d: int, same: bool) -> int:
    return math.ceil(size / s) if same else math.ceil((size - (k - 1) * d) / s)


def _model(tmp_path, n=1, h=9, w=11, cin=5, cout=20, kh=3, kw=3, sh=1, sw=1, dh=1, dw=1, same=True, act=0,
           in_zp=7, per_channel=True, seed=0, big_weights=False):  # type: ignore[no-untyped-def]
    """A one-op int8 CONV_2D model (TFLite layout), its path."""
    rng = np.random.default_rng(seed)
    oh, ow = _out_size(h, kh, sh, dh, same), _out_size(w, kw, sw, dw, same)
    in_scale = float(rng.uniform(0.005, 0.1))
    wscale = rng.uniform(0.002, 0.02, cout) if per_channel else float(rng.uniform(0.002, 0.02))
    lo = -128 if big_weights else -127
    wdata = rng.integers(lo, 128, size=(cout, kh, kw, cin)).astype(np.int8)
    typical = in_scale * float(np.mean(wscale)) * 70 * 70 * np.sqrt(kh * kw * cin)
    out_scale = float(typical / 40 * rng.uniform(0.5, 2.0))
    bias = rng.integers(-2000, 2000, cout).astype(np.int32)
    bscale = in_scale * np.asarray(wscale, np.float64) * np.ones(cout)
    p = tmp_path / f"conv_{seed}.tflite"
    build(p, "CONV_2D",
          [T((n, h, w, cin), scale=in_scale, zp=in_zp), T((cout, kh, kw, cin), scale=wscale, data=wdata, axis=0),
           T((cout,), "int32", scale=bscale, data=bias)],
          [T((n, oh, ow, cout), scale=out_scale, zp=int(rng.integers(-30, 30)))],
          opts("Conv2DOptions", padding=0 if same else 1, strideW=sw, strideH=sh, fusedActivationFunction=act,
               dilationWFactor=dw, dilationHFactor=dh), version=3)
    return p


def _on_vnni(p) -> bool:  # type: ignore[no-untyped-def]
    k = open_model(str(p)).interpreter.kernels[0]
    return k.path == "numba" and getattr(k, "fast_pad", None) is not None


def test_dot_tile_matches_integer_sums():
    """The intrinsic alone: TILE rows x 16 lanes of unsigned-by-signed byte sums plus the start values."""
    import numba

    @numba.njit
    def call(a, a0, lda, toff, groups, b, b0, init, c0, out, o0, ldo):  # type: ignore[no-untyped-def]
        vnni.dot_tile(a, a0, lda, toff, groups, b, b0, init, c0, out, o0, ldo)

    rng = np.random.default_rng(3)
    for trial in range(4):
        ntaps, groups, lda = int(rng.integers(1, 5)), int(rng.integers(1, 6)), int(rng.integers(4, 40))
        a = rng.integers(0, 256, 6000).astype(np.uint8)
        a[:64] = 255  # (the extreme products 255 * -128 and 255 * 127)
        toff = np.sort(rng.integers(0, 2000, ntaps)).astype(np.int64)
        b0, c0, a0, o0, ldo = 64 * trial, int(rng.integers(0, 9)), int(rng.integers(0, 50)), 3, 17 + 16
        b = rng.integers(-128, 128, b0 + ntaps * groups * 64).astype(np.int8)
        b[b0:b0 + 64:2] = -128
        init = rng.integers(-10 ** 6, 10 ** 6, 32).astype(np.int32)
        out = np.zeros(o0 + vnni.TILE * ldo + 16, np.int32)
        call(a, np.int64(a0), np.int64(lda), toff, np.int64(groups), b, np.int64(b0), init, np.int64(c0), out,
             np.int64(o0), np.int64(ldo))
        bb = b[b0:].reshape(ntaps, groups, 16, 4).astype(np.int64)
        for r in range(vnni.TILE):
            aa = np.stack([a[a0 + r * lda + t:a0 + r * lda + t + 4 * groups] for t in toff]).astype(np.int64)
            expect = init[c0:c0 + 16] + np.einsum("tgj,tgcj->c", aa.reshape(ntaps, groups, 4), bb)
            assert np.array_equal(out[o0 + r * ldo:o0 + r * ldo + 16], expect), (trial, r)


CASES = {
    # name: model arguments
    "resnet_block": dict(h=16, w=16, cin=16, cout=16, seed=1),  # row-tiled output stage, cin % 4 == 0
    "first_layer_cin3": dict(h=10, w=12, cin=3, cout=16, seed=2, in_zp=-128),  # padded channels, zp at -128
    "odd_channels": dict(h=7, w=9, cin=5, cout=20, seed=3, in_zp=127),  # padded lanes, zp at 127
    "wide_padded_lanes": dict(h=6, w=5, cin=8, cout=40, seed=4, act=1),  # per-position stage, 40 of 48 lanes
    "cout64_stride2": dict(h=9, w=9, cin=32, cout=64, sh=2, sw=2, same=False, seed=5),
    "pointwise_stride2": dict(h=12, w=12, cin=12, cout=32, kh=1, kw=1, sh=2, sw=2, seed=6),
    "stride3_same": dict(h=13, w=14, cin=4, cout=16, sh=3, sw=3, kh=5, kw=4, seed=7, act=3),
    "dilated": dict(h=12, w=13, cin=6, cout=17, dh=2, dw=3, seed=8),
    "dilated_valid_rect": dict(h=11, w=15, cin=7, cout=33, kh=2, kw=3, dh=3, dw=2, same=False, seed=9),
    "batch2_per_tensor": dict(n=2, h=6, w=10, cin=9, cout=24, per_channel=False, seed=10, big_weights=True),
    "one_column": dict(h=5, w=1, cin=16, cout=16, seed=11),  # wo = 1: one tile, 7 positions past the row
    "tail_tile": dict(h=4, w=19, cin=2, cout=16, kh=1, kw=5, seed=12),  # 19 positions: tiles of 8, 8, 3
    "stride_mix": dict(h=10, w=17, cin=10, cout=12, sh=1, sw=2, kh=3, kw=2, seed=13),
    "column_stride2": dict(h=11, w=1, cin=8, cout=16, kh=3, kw=1, sh=2, seed=14),  # one run, rows sh apart
    "pointwise_flat_segments": dict(h=12, w=12, cin=24, cout=64, kh=1, kw=1, seed=15),  # 144 = 64 + 64 + 16
    "pointwise_flat_tiled_segments": dict(h=20, w=20, cin=4, cout=16, kh=1, kw=1, seed=16),  # 400 = 256 + 144
    "thirteen_columns": dict(h=3, w=13, cin=4, cout=16, seed=17),  # 13 = 8 + a full tile over 5
    "kws_first_cin1": dict(h=49, w=10, cin=1, cout=64, kh=10, kw=4, sh=2, sw=2, seed=18, in_zp=-100),
    "dilated_cin1": dict(h=9, w=12, cin=1, cout=16, kw=3, dw=2, seed=19),  # taps per position, 1-3 channels
    "dilated_cin2": dict(h=9, w=12, cin=2, cout=8, kh=2, kw=3, dw=3, seed=21, same=False),
    "dilated_cin3": dict(h=9, w=12, cin=3, cout=16, dh=2, dw=2, sw=2, seed=22),
    "rowtap_cin6": dict(h=8, w=9, cin=6, cout=20, kw=5, seed=23, in_zp=-128),  # 30 bytes per kernel row: 8 groups
}


@pytest.mark.parametrize("name,runs,positions,seg", [
    ("column_stride2", 1, 6, 6), ("pointwise_flat_segments", 1, 144, 64),
    ("pointwise_flat_tiled_segments", 1, 400, 256), ("resnet_block", 16, 16, 16), ("thirteen_columns", 3, 13, 13),
    ("pointwise_stride2", 6, 6, 6), ("kws_first_cin1", 25, 5, 5)])
def test_geometry_runs_and_segments(tmp_path, name, runs, positions, seg):
    """The runs of output positions a constant stride apart (the whole image where rows follow on) and the
    segments the kernel takes for the cases above."""
    k = open_model(str(_model(tmp_path, **CASES[name]))).interpreter.kernels[0]
    gi = conv_vnni.G_INDEX
    assert (int(k.fast_g[gi["runs"]]), int(k.fast_g[gi["positions"]]), int(k.fast_g[gi["seg"]])) == (runs, positions,
                                                                                                     seg)
    cin, kw, dw = CASES[name]["cin"], CASES[name].get("kw", 3), CASES[name].get("dw", 1)
    rowtap = cin % 4 != 0 and dw == 1  # (taps of whole kernel rows: kw * cin bytes in groups of 4)
    assert int(k.fast_g[gi["rowtap"]]) == rowtap
    assert int(k.fast_g[gi["groups"]]) == (-(-kw * cin // 4) if rowtap else -(-cin // 4))


@pytest.mark.parametrize("name", sorted(CASES))
def test_conv_vnni_bit_exact_with_tflm(tmp_path, name):
    p = _model(tmp_path, **CASES[name])
    assert _on_vnni(p)
    assert_exact(p, n=3, seed=CASES[name]["seed"])


def test_float_and_integer_output_stage(tmp_path):
    """The same layer with the output stage's float form (mode 1/2) and, forced, its integer form (mode 0)."""
    p = _model(tmp_path, h=8, w=8, cin=16, cout=32, seed=20)
    k = open_model(str(p)).interpreter.kernels[0]
    assert getattr(k, "fast_pad", None) is not None
    modes = {float(k.fast[6:10].view(np.float64)[3, 0])}
    assert_exact(p, n=3, seed=20)
    from edge_runtime.backends.micro.kernels import conv as conv_kernels

    real_pack = conv_kernels.choose_path

    def integer_only(kern, arrays):  # type: ignore[no-untyped-def]
        kern.frq = None  # (no float requantizer: the packed constants take the integer form)
        return real_pack(kern, arrays)

    mp = pytest.MonkeyPatch()
    mp.setattr(conv_kernels, "choose_path", integer_only)
    try:
        k = open_model(str(p)).interpreter.kernels[0]
        modes.add(float(k.fast[6:10].view(np.float64)[3, 0]))
        assert getattr(k, "fast_pad", None) is not None
        assert_exact(p, n=3, seed=20)
    finally:
        mp.undo()
    assert 0.0 in modes and len(modes) == 2, modes


def test_sum_too_long_for_int32_takes_the_blas_kernel(tmp_path):
    """K = taps x padded channels above MAX_TERMS: a partial sum could leave int32, so the op stays on the
    BLAS kernel (float64 products there), still bit-exact."""
    cin = (conv_vnni.MAX_TERMS // 4 + 1) * 4
    assert not conv_vnni.fits(1, 1, cin) and conv_vnni.fits(1, 1, cin - 4)
    assert 128 * 128 * cin + 255 * 128 * cin >= 1 << 31 > 128 * 128 * (cin - 4) + 255 * 128 * (cin - 4)
    p = _model(tmp_path, h=1, w=2, cin=cin, cout=3, kh=1, kw=1, seed=30)
    k = open_model(str(p)).interpreter.kernels[0]
    assert k.path == "numba" and getattr(k, "fast_pad", None) is None
    assert_exact(p, n=2, seed=30)


def test_disabled_path_gives_the_same_outputs(tmp_path, monkeypatch):
    """The VNNI kernel and the BLAS kernel (switched off: ``conv_vnni.ENABLED``) agree on a ResNet-like layer."""
    p = _model(tmp_path, h=32, w=32, cin=16, cout=16, seed=40)
    x = np.random.default_rng(40).integers(-128, 128, (1, 32, 32, 16)).astype(np.int8)
    on = open_model(str(p))
    assert getattr(on.interpreter.kernels[0], "fast_pad", None) is not None
    monkeypatch.setattr(conv_vnni, "ENABLED", [False])
    off = open_model(str(p))
    assert getattr(off.interpreter.kernels[0], "fast_pad", None) is None
    assert np.array_equal(on.run([x])[0], off.run([x])[0])
