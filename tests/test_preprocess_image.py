"""Image preprocessing against Pillow (the `image` extra) and a plain per-pixel numpy reference."""
from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.errors import ConfigError, InputError
from edge_runtime.model import TensorSpec
from edge_runtime.preprocess import build_preprocessor
from edge_runtime.preprocess.image import ImagePreprocessor
from alloc_probe import traced_allocations

Image = pytest.importorskip("PIL.Image")
RNG = np.random.default_rng(3)
IMG = RNG.uniform(0, 255, (41, 67, 3))


def ours(img: np.ndarray, size: tuple[int, int], method: str, crop: float = 1.0, layout: str = "NHWC") -> np.ndarray:
    C = img.shape[2]
    shape = (1, size[0], size[1], C) if layout == "NHWC" else (1, C, size[0], size[1])
    p = ImagePreprocessor(size, C, shape, dict(dtype="float32"), method, layout, pixel_scale=1.0, crop_fraction=crop)
    return p(img)[0].copy()


def pillow(img: np.ndarray, size: tuple[int, int], method: int, box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """Pillow on each channel as a float ('F') image, so Pillow does not round to uint8."""
    chans = [np.asarray(Image.fromarray(img[:, :, c].astype(np.float32), mode="F").resize((size[1], size[0]), method, box=box))
             for c in range(img.shape[2])]
    return np.stack(chans, axis=-1)


def numpy_bilinear(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Plain reference: for every output pixel, 2-D interpolation at the half-pixel-centred source point."""
    H, W, _ = img.shape
    out = np.zeros((size[0], size[1], img.shape[2]))
    for y in range(size[0]):
        sy = min(max((y + 0.5) * H / size[0] - 0.5, 0.0), H - 1)
        y0 = int(math.floor(sy))
        y1, fy = min(y0 + 1, H - 1), sy - y0
        for x in range(size[1]):
            sx = min(max((x + 0.5) * W / size[1] - 0.5, 0.0), W - 1)
            x0 = int(math.floor(sx))
            x1, fx = min(x0 + 1, W - 1), sx - x0
            out[y, x] = ((1 - fy) * ((1 - fx) * img[y0, x0] + fx * img[y0, x1])
                         + fy * ((1 - fx) * img[y1, x0] + fx * img[y1, x1]))
    return out


def numpy_area(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Plain reference: exact integral of the source over each output pixel's footprint / its area."""
    H, W, _ = img.shape
    sh, sw = H / size[0], W / size[1]
    out = np.zeros((size[0], size[1], img.shape[2]))
    for y in range(size[0]):
        for x in range(size[1]):
            acc = np.zeros(img.shape[2])
            for i in range(int(y * sh), min(H, int(math.ceil((y + 1) * sh)))):
                oy = min((y + 1) * sh, i + 1) - max(y * sh, i)
                for j in range(int(x * sw), min(W, int(math.ceil((x + 1) * sw)))):
                    ox = min((x + 1) * sw, j + 1) - max(x * sw, j)
                    if oy > 0 and ox > 0:
                        acc += oy * ox * img[i, j]
            out[y, x] = acc / (sh * sw)
    return out


@pytest.mark.parametrize("size", [(17, 23), (41, 67), (90, 140)])
def test_nearest_equals_pillow(size: tuple[int, int]) -> None:
    """nearest == Pillow NEAREST exactly (down, same size, up)."""
    assert np.array_equal(ours(IMG, size, "nearest"), pillow(IMG, size, Image.NEAREST).astype(np.float32))


@pytest.mark.parametrize("size", [(90, 140), (50, 100), (41, 67)])
def test_bilinear_enlarging_equals_pillow(size: tuple[int, int]) -> None:
    """bilinear == Pillow BILINEAR when enlarging (Pillow antialiases only when shrinking)."""
    np.testing.assert_allclose(ours(IMG, size, "bilinear"), pillow(IMG, size, Image.BILINEAR), atol=2e-3)


@pytest.mark.parametrize("size", [(17, 23), (30, 31), (90, 140)])
def test_bilinear_equals_numpy_reference(size: tuple[int, int]) -> None:
    """bilinear (any direction) == the per-pixel numpy reference (TF antialias=False / OpenCV semantics)."""
    np.testing.assert_allclose(ours(IMG, size, "bilinear"), numpy_bilinear(IMG, size), atol=1e-3)


def test_area_integer_factor_equals_pillow_box() -> None:
    """area == Pillow BOX for integer shrink factors (40x66 -> 20x33 and -> 10x22)."""
    img = IMG[:40, :66]
    for size in [(20, 33), (10, 22)]:
        np.testing.assert_allclose(ours(img, size, "area"), pillow(img, size, Image.BOX), atol=2e-3)


@pytest.mark.parametrize("size", [(17, 23), (13, 29), (41, 67)])
def test_area_equals_exact_footprint_average(size: tuple[int, int]) -> None:
    """area with fractional factors == the exact footprint integral (numpy reference); Pillow BOX
    differs there because it weights whole pixels by their centres."""
    np.testing.assert_allclose(ours(IMG, size, "area"), numpy_area(IMG, size), atol=1e-3)


def test_centre_crop_matches_pillow_box_argument() -> None:
    """crop fraction 0.5 then resize == Pillow resize with the same centre box."""
    p = ImagePreprocessor((20, 30), 3, (1, 20, 30, 3), dict(dtype="float32"), "nearest", pixel_scale=1.0, crop_fraction=0.5)
    got = p(IMG)[0]
    s = p.rows(41, 67)
    box = (s.left, s.top, s.left + s.crop_w, s.top + s.crop_h)
    assert box == (16, 10, 16 + 34, 10 + 20)  # 67 wide: keep 34 columns from 16
    assert np.array_equal(got, pillow(IMG, (20, 30), Image.NEAREST, box=box).astype(np.float32))


def test_nchw_is_nhwc_transposed() -> None:
    a = ours(IMG, (17, 23), "bilinear")
    b = ours(IMG, (17, 23), "bilinear", layout="NCHW")
    assert b.shape == (3, 17, 23) and np.array_equal(b, a.transpose(2, 0, 1))


def test_quantizes_straight_into_vww_input() -> None:
    """vww-style input int8 (scale 1/255, zp -128), same size, nearest: code = pixel - 128 exactly; a
    downscale equals round(v / scale) + zp of the float result (TFLite rounding, numpy reference)."""
    img = RNG.integers(0, 256, (96, 96, 3), dtype=np.uint8)
    spec = TensorSpec("input", (1, 96, 96, 3), np.dtype(np.int8), 1 / 255.0, -128)
    cfg = {"kind": "image", "image": {"resize": "nearest"}}
    p = build_preprocessor(cfg, spec)
    out = p(img)
    assert out.dtype == np.int8 and out.shape == (1, 96, 96, 3)
    assert np.array_equal(out[0].astype(int), img.astype(int) - 128)
    big = RNG.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    q = build_preprocessor({"kind": "image", "image": {"resize": "area"}}, spec)(big)[0]
    f = ours(big.astype(np.float64) / 255.0, (96, 96), "area")
    v = f.astype(np.float32) / np.float32(1 / 255.0) - 128
    ref = np.clip(np.trunc(v + np.copysign(np.float32(0.5), v)), -128, 127).astype(np.int8)
    assert np.abs(q.astype(int) - ref).max() <= 1 and (q == ref).mean() > 0.999


def test_mean_std_normalisation() -> None:
    """(x * pixel_scale - mean) / std per channel, then the model's quantization."""
    img = RNG.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    cfg = {"kind": "image", "image": {"size": [8, 8], "resize": "nearest", "mean": mean, "std": std},
           "quantize": {"dtype": "float32"}}
    out = build_preprocessor(cfg)(img)[0]
    ref = (img / 255.0 - np.array(mean)) / np.array(std)
    np.testing.assert_allclose(out, ref, atol=1e-6)


@pytest.mark.parametrize("method", ["nearest", "bilinear", "area"])
def test_row_streaming_equals_whole_image_and_holds_few_rows(method: str) -> None:
    """A 480x640 camera frame arriving 1..n rows at a time gives the same tensor as the whole image,
    while the stream holds only `taps` resized rows (at output width) plus one source row."""
    frame = RNG.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    spec = TensorSpec("input", (1, 96, 96, 3), np.dtype(np.int8), 1 / 255.0, -128)
    p = build_preprocessor({"kind": "image", "image": {"resize": method}}, spec)
    whole = p(frame).copy()
    s = p.rows(480, 640)
    finished, y = 0, 0
    sizes = [1, 3, 7, 1, 50]
    i = 0
    while y < 480:
        k = sizes[i % len(sizes)]
        finished += s.push(frame[y:y + k])
        y += k
        i += 1
    assert finished == 96 and s.done
    assert np.array_equal(p.input_tensor, whole)
    held = s._ring.nbytes + s._rowbuf.nbytes
    assert s._ring.shape[0] <= math.ceil(480 / 96) + 2
    assert held < frame.nbytes / 20, f"holds {held} bytes for a {frame.nbytes}-byte frame"


def test_decoding_png_bytes_and_files(tmp_path: Path) -> None:
    img = RNG.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    p = ImagePreprocessor((15, 20), 3, (1, 15, 20, 3), dict(dtype="float32"), "area", pixel_scale=1.0)
    a = p(buf.getvalue()).copy()
    path = tmp_path / "x.png"
    path.write_bytes(buf.getvalue())
    assert np.array_equal(p(path), a)
    assert np.array_equal(a, p(img))
    with pytest.raises(InputError, match="not a decodable image"):
        p(b"\x00garbage" * 10)
    with pytest.raises(InputError, match="no such image file"):
        p(tmp_path / "missing.png")


def test_bad_images_and_configs() -> None:
    p = ImagePreprocessor((8, 8), 3, (1, 8, 8, 3), dict(dtype="float32"), "area")
    with pytest.raises(InputError, match=r"\(height, width, 3\)"):
        p(np.zeros((10, 10, 4)))
    with pytest.raises(InputError, match="numbers"):
        p(np.array([["a"]]))
    s = p.rows(10, 10)
    with pytest.raises(InputError, match="rows must be"):
        s.push(np.zeros((1, 11, 3)))
    s.push(np.zeros((10, 10, 3)))
    with pytest.raises(InputError, match="too many rows"):
        s.push(np.zeros((1, 10, 3)))
    with pytest.raises(ConfigError, match="does not match"):
        build_preprocessor({"kind": "image", "image": {"size": [8, 8]}},
                           TensorSpec("x", (1, 3, 8, 8), np.dtype(np.int8), 0.1, 0))


def test_vww_model_runs_on_preprocessed_frame(mlperf_models: Path) -> None:
    """The tensor is exactly the model's input: LiteRT accepts it and a uniform grey frame differs from noise."""
    import edge_runtime

    with edge_runtime.load(str(mlperf_models / "vww_96_int8.tflite"), backend="litert") as model:
        p = build_preprocessor({"kind": "image", "image": {"resize": "area", "crop": {"match_aspect": True}}},
                               model.inputs[0])
        frame = RNG.integers(0, 256, (480, 640, 3), dtype=np.uint8)
        y = model.run(p(frame))[0]
        assert y.shape == (1, 2) and y.dtype == np.int8
        assert p.rows(480, 640).crop_w == 480  # 4:3 frame cropped to the square input


def test_row_streaming_steady_state_allocates_no_rows() -> None:
    """Pushing camera rows allocates no row- or frame-sized arrays: tracemalloc peak < 4 KiB over a
    480-row frame (a float source row is 15 KiB, an output row's float work 2.3 KiB + int32 copy),
    and nothing is retained."""
    spec = TensorSpec("input", (1, 96, 96, 3), np.dtype(np.int8), 1 / 255.0, -128)
    p = build_preprocessor({"kind": "image", "image": {"resize": "area"}}, spec)
    frame = RNG.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    p(frame)
    rows = iter([frame[:1]] + [frame[y] for y in range(1, 480)])
    streams: list = []

    def push() -> None:
        if not streams:  # the stream starts under tracing (the buffers it makes are then traced too)
            streams.append(p.rows(480, 640))
        streams[0].push(next(rows))

    grown, peak = traced_allocations(push, 479, traced_warmup=1)
    assert streams[0].done
    assert grown < 1024 and peak < 4096, (grown, peak)


@pytest.mark.parametrize("preset, model, side", [("vww", "vww_96_int8.tflite", 96),
                                                 ("ic", "pretrainedResnet_quant.tflite", 32)])
def test_image_presets_fit_the_mlperf_models(mlperf_models: Path, preset: str, model: str, side: int) -> None:
    """vww / ic presets against the real model inputs (LiteRT): a frame already at the model size maps
    pixel p to code p - 128 exactly (vww: p/255 at scale 1/255; ic: raw p at scale 1), and a 4:3
    camera frame is centre-cropped to a square and runs."""
    import edge_runtime

    with edge_runtime.load(str(mlperf_models / model), backend="litert") as m:
        p = build_preprocessor(preset, m.inputs[0])
        img = RNG.integers(0, 256, (side, side, 3), dtype=np.uint8)
        assert np.array_equal(p(img)[0].astype(int), img.astype(int) - 128)
        y = m.run(p(RNG.integers(0, 256, (480, 640, 3), dtype=np.uint8)))[0]
        assert y.dtype == np.int8 and y.shape[0] == 1
