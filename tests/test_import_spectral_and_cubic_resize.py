"""Spectral ops and every Resize mode as constant linear maps (``onnx_ops/spectral.py``, ``onnx_ops/resize.py``).

DFT (opset 17 ``axis`` attribute and opset 20 ``axis`` input, one-sided, inverse, complex input, a
``dft_length`` that pads or truncates), STFT with a window, a log-mel chain (STFT -> |.|^2 -> MatMul by a
MelWeightMatrix -> Log, with the HannWindow and MelWeightMatrix folded to constants), and cubic / antialiased
/ tf_crop_and_resize Resize at random shapes and scales. Each model goes through
:func:`test_import_breadth_onnx.check_graph`: the float IR against the reference (onnxruntime on the source
model; the onnx package's reference evaluator for the one-sided inverse DFT, which onnxruntime lacks), the
int8 .tflite (LiteRT) and QDQ .onnx (onnxruntime) above a minimum SQNR against it, and micro == tflite-micro
(``np.array_equal``). The per-axis interpolation matrices and the window/mel constants are also checked
directly against the onnx reference implementation, and what stays unsupported is refused in one line.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator
from test_import_breadth_onnx import check_graph, ir_layout, onnx_reference, uniform

from converters.importers.onnx import import_onnx
from converters.importers.onnx_ops.resize import (
    BILINEAR_ATOL,
    interpolation_matrix,
    tflite_bilinear_matrix,
)
from converters.importers.onnx_ops.spectral import mel_matrix, window_values
from edge_runtime.errors import ModelFormatError, UnsupportedModelError


def _save(nodes: list, inputs: list, outputs: list, path: Path, inits: tuple = (), opset: int = 17,
          check: bool = True) -> str:
    """A float model of ``nodes``, checked (unless ``check`` is False: a deliberately invalid model) and saved."""
    g = helper.make_graph(nodes, "spectral", inputs, outputs, list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    if check:
        onnx.checker.check_model(m, full_check=True)
    onnx.save(m, str(path))
    return str(path)


def _vi(name: str, shape: tuple, elem: int = TensorProto.FLOAT) -> object:
    return helper.make_tensor_value_info(name, elem, list(shape) if shape is not None else None)


def _const(name: str, value: np.ndarray) -> object:
    return numpy_helper.from_array(np.asarray(value), name)


def _reference_evaluator(path: str):
    """The onnx package's reference implementation on the source model, outputs in IR layout."""
    ref = ReferenceEvaluator(path)
    name = onnx.load(path).graph.input[0].name
    return lambda x: [ir_layout(np.asarray(v, np.float32), True) for v in ref.run(None, {name: x})]


def _loud(shape: tuple, seed: int) -> np.ndarray:
    """Samples in [-1, 1) whose calibration part starts with full-scale constants (+1, -1): the largest
    spectrum values, so held-out samples are not clipped by a min/max range seen on noise only."""
    data = uniform(shape, seed=seed)
    data[0], data[1] = 1.0, -1.0
    return data


def _shape_of(path: str) -> tuple:
    """The output shape onnx shape inference gives."""
    m = onnx.shape_inference.infer_shapes(onnx.load(path), strict_mode=True)
    return tuple(d.dim_value for d in m.graph.output[0].type.tensor_type.shape.dim)


# ---------------------------------------------------------------- DFT
DFT_CASES = [
    # (seed, opset, channels, inverse, onesided, dft_length change)
    (0, 17, 1, 0, 0, 0),     # real forward, axis attribute
    (1, 20, 1, 0, 1, 0),     # rfft, axis input (negative)
    (2, 20, 2, 1, 0, 0),     # inverse of a complex spectrum
    (3, 17, 2, 0, 0, 3),     # complex forward, zero-padded
    (4, 20, 1, 0, 0, -2),    # truncated
    (5, 20, 2, 1, 1, 0),     # irfft: half spectrum -> real signal (onnx reference)
]


@pytest.mark.parametrize("seed,opset,channels,inverse,onesided,extra", DFT_CASES)
def test_dft_is_a_constant_matrix(seed, opset, channels, inverse, onesided, extra, tmp_path):
    """DFT at random shapes and axes: one FULLY_CONNECTED by the DFT matrix, int8 close to float."""
    rng = np.random.default_rng(seed)
    rank = int(rng.integers(3, 5))
    shape = [1] + [int(v) for v in rng.integers(3, 9, rank - 2)] + [channels]
    axis = int(rng.integers(1, rank - 1))
    n = shape[axis]
    length = n + extra
    inits, ins = [], ["x"]
    if extra:
        inits.append(_const("len", np.array(length, np.int64)))
        ins.append("len")
    attrs = {"inverse": inverse, "onesided": onesided}
    if opset >= 20:
        ins += [""] * (2 - len(ins)) + ["axis"]
        inits.append(_const("axis", np.array(axis - rank, np.int64)))
    else:
        attrs["axis"] = axis
    out_len = length if extra else (2 * (n - 1) if inverse and onesided else n)
    k = out_len // 2 + 1 if onesided and not inverse else out_len
    out_shape = list(shape)
    out_shape[axis], out_shape[-1] = k, 1 if inverse and onesided else 2
    node = helper.make_node("DFT", ins, ["y"], name="dft", **attrs)
    path = _save([node], [_vi("x", tuple(shape))], [_vi("y", tuple(out_shape))], tmp_path / "dft.onnx",
                 tuple(inits), opset=opset)
    graph = import_onnx(path)
    assert graph.op_counts().get("FULLY_CONNECTED") == 1, graph.op_counts()
    ref = _reference_evaluator(path) if inverse and onesided else onnx_reference(path)
    check_graph(graph, _loud(tuple(shape), seed), ref, tmp_path, min_sqnr=30.0, atol=1e-3)


# ---------------------------------------------------------------- STFT and a log-mel chain
@pytest.mark.parametrize("seed,channels", [(6, 1), (7, 2)])
def test_stft_with_window(seed, channels, tmp_path):
    """STFT of a real or complex signal with a constant window, frame step and length: GATHER of the frames and
    one FULLY_CONNECTED."""
    rng = np.random.default_rng(seed)
    frame, step = int(rng.integers(6, 12)), int(rng.integers(2, 6))
    length = frame + step * int(rng.integers(3, 7)) + int(rng.integers(0, step))
    frames = 1 + (length - frame) // step
    win = rng.uniform(0.2, 1.0, frame).astype(np.float32)
    inits = (_const("step", np.array(step, np.int64)), _const("win", win), _const("flen", np.array(frame, np.int64)))
    node = helper.make_node("STFT", ["x", "step", "win", "flen"], ["y"], name="stft", onesided=0)
    path = _save([node], [_vi("x", (1, length, channels))], [_vi("y", (1, frames, frame, 2))], tmp_path / "stft.onnx",
                 inits)
    graph = import_onnx(path)
    assert graph.op_counts().get("GATHER") == 1 and graph.op_counts().get("FULLY_CONNECTED") == 1
    check_graph(graph, _loud((1, length, channels), seed), onnx_reference(path), tmp_path, min_sqnr=30.0, atol=1e-3)


def test_log_mel_chain(tmp_path):
    """STFT(HannWindow) -> re^2 + im^2 -> MatMul(MelWeightMatrix) -> Log(1 + .) converts: the window and the
    mel matrix fold to constants (the window into the DFT weights), int8 close to onnxruntime's float. (With
    a tiny epsilon instead of 1 the log amplifies int8's absolute error on near-silent bins: ~16 dB.)"""
    frame, step, length, mels, rate = 16, 8, 72, 6, 8000
    frames, bins = 1 + (length - frame) // step, frame // 2 + 1
    inits = (_const("step", np.array(step, np.int64)), _const("flen", np.array(frame, np.int64)),
             _const("nmel", np.array(mels, np.int64)), _const("dlen", np.array(frame, np.int64)),
             _const("rate", np.array(rate, np.int64)), _const("lo", np.array(50.0, np.float32)),
             _const("hi", np.array(3800.0, np.float32)), _const("eps", np.array(1.0, np.float32)),
             _const("axes", np.array([-1], np.int64)))
    nodes = [helper.make_node("HannWindow", ["flen"], ["win"], periodic=1),
             helper.make_node("STFT", ["x", "step", "win", "flen"], ["spec"], name="stft", onesided=1),
             helper.make_node("Mul", ["spec", "spec"], ["sq"]),
             helper.make_node("ReduceSum", ["sq", "axes"], ["power"], keepdims=0),
             helper.make_node("MelWeightMatrix", ["nmel", "dlen", "rate", "lo", "hi"], ["mel"]),
             helper.make_node("MatMul", ["power", "mel"], ["melspec"]),
             helper.make_node("Add", ["melspec", "eps"], ["shifted"]),
             helper.make_node("Log", ["shifted"], ["y"])]
    path = _save(nodes, [_vi("x", (1, length, 1))], [_vi("y", (1, frames, mels))], tmp_path / "logmel.onnx", inits)
    graph = import_onnx(path)
    counts = graph.op_counts()
    assert counts.get("FULLY_CONNECTED") == 2 and "LOG" in counts, counts
    assert _shape_of(path)[-1] == mels and bins == 9
    check_graph(graph, uniform((1, length, 1), seed=7), onnx_reference(path), tmp_path, min_sqnr=20.0, atol=1e-3)


@pytest.mark.parametrize("op_type", ["HannWindow", "HammingWindow", "BlackmanWindow"])
def test_window_constants_match_the_onnx_reference(op_type):
    """The importer's own window values (used when a window op reaches it unfolded) are the spec's."""
    for size in (1, 5, 16):
        for periodic in (0, 1) if size > 1 else (1,):  # a symmetric window of 1 divides by 0 in the spec
            node = helper.make_node(op_type, ["n"], ["w"], periodic=periodic)
            m = helper.make_model(helper.make_graph([node], "w", [_vi("n", (), TensorProto.INT64)], [_vi("w", None)]),
                                  opset_imports=[helper.make_opsetid("", 17)])
            want = ReferenceEvaluator(m).run(None, {"n": np.array(size, np.int64)})[0]
            np.testing.assert_allclose(window_values(op_type, size, bool(periodic)), want, rtol=0, atol=1e-6)


def test_mel_matrix_matches_the_onnx_reference():
    """MelWeightMatrix's triangular filter bank at random band settings equals the reference's."""
    rng = np.random.default_rng(8)
    names = ["bins", "dlen", "rate", "lo", "hi"]
    node = helper.make_node("MelWeightMatrix", names, ["m"])
    ins = [_vi(n, (), TensorProto.INT64) for n in names[:3]] + [_vi(n, (), TensorProto.FLOAT) for n in names[3:]]
    ref = ReferenceEvaluator(helper.make_model(helper.make_graph([node], "mel", ins, [_vi("m", None)]),
                                               opset_imports=[helper.make_opsetid("", 17)]))
    for _ in range(6):
        bins, dlen, rate = int(rng.integers(2, 12)), int(rng.integers(16, 128)), int(rng.choice([8000, 16000]))
        lo, hi = float(rng.uniform(0, 300)), float(rng.uniform(1000, rate / 2))
        want = ref.run(None, {"bins": np.array(bins), "dlen": np.array(dlen), "rate": np.array(rate),
                              "lo": np.array(lo, np.float32), "hi": np.array(hi, np.float32)})[0]
        np.testing.assert_allclose(mel_matrix(bins, dlen, rate, np.float32(lo), np.float32(hi)), want, atol=1e-6)


# ---------------------------------------------------------------- Resize
def _identity_resize(n_in: int, attrs: dict, scale: float | None, size: int | None, roi: tuple) -> np.ndarray:
    """The onnx reference Resize of the identity along axis 0: its weights, ``[n_out, n_in]``."""
    ins = ["x", "roi", "scales" if scale is not None else "", "sizes" if size is not None else ""]
    inits = [_const("roi", np.array(roi, np.float32))]
    if scale is not None:
        inits.append(_const("scales", np.array([scale, 1.0], np.float32)))
    if size is not None:
        inits.append(_const("sizes", np.array([size, n_in], np.int64)))
    node = helper.make_node("Resize", ins, ["y"], **attrs)
    m = helper.make_model(helper.make_graph([node], "r", [_vi("x", (n_in, n_in))], [_vi("y", None)], inits),
                          opset_imports=[helper.make_opsetid("", 19)])
    return ReferenceEvaluator(m).run(None, {"x": np.eye(n_in, dtype=np.float32)})[0]


def test_interpolation_matrices_match_the_onnx_reference():
    """Per-axis weights for random modes, coordinate transformations, scales and sizes equal onnx's Resize of
    the identity (the extrapolated rows of tf_crop_and_resize are zero there with extrapolation_value 0)."""
    rng = np.random.default_rng(9)
    coords = ["half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "half_pixel_symmetric",
              "tf_crop_and_resize"]
    for trial in range(60):
        n_in = int(rng.integers(1, 9))
        mode = str(rng.choice(["linear", "cubic"]))
        coord = str(rng.choice(coords))
        attrs = {"mode": mode, "coordinate_transformation_mode": coord, "antialias": int(rng.integers(0, 2)),
                 "exclude_outside": int(rng.integers(0, 2)), "cubic_coeff_a": float(rng.uniform(-0.9, -0.4))}
        roi = (float(rng.uniform(-0.2, 0.5)), 0.0, float(rng.uniform(0.5, 1.2)), 1.0)
        if trial % 2:
            scale, size = float(np.float32(rng.uniform(0.3, 3.0))), None
            n_out = int(scale * n_in)
            if n_out < 1:
                continue
        else:
            size = int(rng.integers(1, 12))
            scale, n_out = None, size
        want = _identity_resize(n_in, attrs, scale, size, roi)
        got, outside = interpolation_matrix(n_in, n_out, scale if scale is not None else n_out / n_in, roi[0], roi[2],
                                            coord, mode, attrs["cubic_coeff_a"], bool(attrs["exclude_outside"]),
                                            bool(attrs["antialias"]))
        assert want.shape == got.shape
        np.testing.assert_allclose(got, want, atol=1e-5, err_msg=str((n_in, n_out, attrs, scale, roi)))
        assert not outside.any() or coord == "tf_crop_and_resize"


RESIZE_CASES = [
    # (seed, mode, coordinate_transformation_mode, antialias, exclude_outside, by)
    (10, "cubic", "half_pixel", 0, 0, "scales"),
    (11, "cubic", "align_corners", 0, 1, "sizes"),
    (12, "cubic", "asymmetric", 0, 0, "scales"),
    (13, "cubic", "pytorch_half_pixel", 1, 0, "sizes"),
    (14, "linear", "half_pixel", 1, 0, "sizes"),
    (15, "linear", "half_pixel_symmetric", 0, 0, "scales"),
    (16, "linear", "tf_crop_and_resize", 0, 0, "sizes"),
]


@pytest.mark.parametrize("seed,mode,coord,antialias,exclude,by", RESIZE_CASES)
def test_matrix_resize(seed, mode, coord, antialias, exclude, by, tmp_path):
    """Cubic, antialiased and crop-and-resize Resize at random shapes and scales (``axes`` on some):
    FULLY_CONNECTED along the width and the height, int8 close to onnxruntime's float."""
    rng = np.random.default_rng(seed)
    c, h, w = (int(v) for v in rng.integers(2, 7, 3))
    down = bool(antialias) or rng.random() < 0.5
    factors = rng.uniform(0.4, 0.9, 2) if down else rng.uniform(1.2, 2.6, 2)
    use_axes = seed % 2 == 1
    out_hw = [max(1, int(np.float32(f) * d)) for f, d in zip(factors, (h, w))]
    inits = []
    roi = [0.0, 0.0, float(rng.uniform(0, 0.3)), float(rng.uniform(0, 0.3)),
           1.0, 1.0, float(rng.uniform(0.7, 1.1)), float(rng.uniform(0.7, 1.1))]
    if use_axes:
        roi = roi[2:4] + roi[6:8]
    inits.append(_const("roi", np.array(roi if coord == "tf_crop_and_resize" else [], np.float32)))
    if by == "scales":
        sc = np.array(factors, np.float32)
        inits.append(_const("scales", sc if use_axes else np.concatenate([[1, 1], sc]).astype(np.float32)))
        ins = ["x", "roi", "scales"]
    else:
        sz = np.array(out_hw, np.int64)
        inits.append(_const("sizes", sz if use_axes else np.concatenate([[1, c], sz])))
        ins = ["x", "roi", "", "sizes"]
    attrs = {"mode": mode, "coordinate_transformation_mode": coord, "antialias": antialias,
             "exclude_outside": exclude, "cubic_coeff_a": float(rng.uniform(-0.8, -0.5)),
             "extrapolation_value": 0.5 if coord == "tf_crop_and_resize" else 0.0}
    if use_axes:
        attrs["axes"] = [2, 3]
    node = helper.make_node("Resize", ins, ["y"], name="resize", **attrs)
    path = _save([node], [_vi("x", (1, c, h, w))], [_vi("y", (1, c, *out_hw))], tmp_path / "resize.onnx",
                 tuple(inits), opset=19)
    assert _shape_of(path) == (1, c, *out_hw)
    graph = import_onnx(path)
    counts = graph.op_counts()
    assert "RESIZE_BILINEAR" not in counts and 1 <= counts.get("FULLY_CONNECTED", 0) <= 2, counts
    check_graph(graph, uniform((1, c, h, w), seed=seed), onnx_reference(path), tmp_path, min_sqnr=30.0, atol=1e-4)


@pytest.mark.parametrize("op_type,opset", [("Upsample", 9), ("Resize", 10)])
def test_old_opset_linear_resize_by_a_fractional_scale(op_type, opset, tmp_path):
    """Upsample (opset 9) and Resize (opset 10) by scales that are not output / input (asymmetric
    coordinates): the interpolation matrices, not a refusal."""
    rng = np.random.default_rng(17 + opset)
    c, h, w = (int(v) for v in rng.integers(3, 7, 3))
    sc = np.array([1, 1, *np.round(rng.uniform(1.2, 2.7, 2), 2)], np.float32)
    out = (1, c, int(h * sc[2]), int(w * sc[3]))
    node = helper.make_node(op_type, ["x", "scales"], ["y"], name="old_resize", mode="linear")
    path = _save([node], [_vi("x", (1, c, h, w))], [_vi("y", out)], tmp_path / "old.onnx", (_const("scales", sc),),
                 opset=opset)
    graph = import_onnx(path)
    assert "RESIZE_BILINEAR" not in graph.op_counts(), graph.op_counts()
    check_graph(graph, uniform((1, c, h, w), seed=opset), onnx_reference(path), tmp_path, min_sqnr=30.0)


def test_representable_linear_resize_stays_resize_bilinear(tmp_path):
    """A half-pixel 2x bilinear upsample (what TFLite's RESIZE_BILINEAR computes) is not turned into
    matrices; the same resize with antialias while downsampling is. Large non-power-of-2 ratios differ from
    RESIZE_BILINEAR only by its float32 rounding, within the tolerance that keeps them RESIZE_BILINEAR."""
    def graph(scale: float, antialias: int, name: str):
        node = helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="linear", antialias=antialias)
        out = int(8 * scale)
        return import_onnx(_save([node], [_vi("x", (1, 2, 8, 8))], [_vi("y", (1, 2, out, out))], tmp_path / name,
                                 (_const("scales", np.array([1, 1, scale, scale], np.float32)),), opset=19))
    assert graph(2.0, 0, "up.onnx").op_counts() == {"RESIZE_BILINEAR": 1}
    assert graph(2.0, 1, "up_aa.onnx").op_counts() == {"RESIZE_BILINEAR": 1}
    assert "RESIZE_BILINEAR" not in graph(0.5, 1, "down_aa.onnx").op_counts()
    for n_in, n_out, coord, flags in ((200, 600, "half_pixel", (False, True)), (300, 700, "align_corners", (True, False))):
        onnx_w, _ = interpolation_matrix(n_in, n_out, n_out / n_in, 0.0, 1.0, coord, "linear")
        tfl_w = tflite_bilinear_matrix(n_in, n_out, *flags)  # float32 coordinates: ~1e-5 apart, the same map
        assert 0 < np.abs(onnx_w - tfl_w).max() < BILINEAR_ATOL


# ---------------------------------------------------------------- refusals
def _refusal(path: str, *needles: str) -> None:
    with pytest.raises(UnsupportedModelError) as e:
        import_onnx(path)
    msg = str(e.value)
    assert "\n" not in msg and all(n in msg for n in needles), msg


def test_dft_run_time_length_is_one_line(tmp_path):
    """A dft_length computed at run time (here from a graph input) is refused in one line naming the node."""
    nodes = [helper.make_node("ReduceMax", ["n"], ["len"], keepdims=0),
             helper.make_node("DFT", ["x", "len"], ["y"], name="dft_dyn", axis=1)]
    path = _save(nodes, [_vi("x", (1, 8, 1)), _vi("n", (1,), TensorProto.INT64)], [_vi("y", (1, 8, 2))],
                 tmp_path / "dft_dyn.onnx")
    with pytest.raises(UnsupportedModelError) as e:
        import_onnx(path, input_shapes={"x": (1, 8, 1), "n": (1,)})
    assert "dft_dyn" in str(e.value) and "\n" not in str(e.value)  # the prepare pass: a data-dependent shape


def test_dft_refusals_name_node_and_reason(tmp_path):
    """The component axis as the DFT axis (already caught by shape inference), and a one-sided DFT of a complex
    input, are one line each naming the node."""
    node = helper.make_node("DFT", ["x"], ["y"], name="dft_last", axis=2)
    path = _save([node], [_vi("x", (1, 8, 1))], [_vi("y", (1, 8, 2))], tmp_path / "a.onnx", check=False)
    with pytest.raises((UnsupportedModelError, ModelFormatError)) as e:  # shape inference already says so
        import_onnx(path)
    assert "dft_last" in str(e.value) and "axis" in str(e.value) and "\n" not in str(e.value)
    node = helper.make_node("DFT", ["x"], ["y"], name="dft_cplx", axis=1, onesided=1)
    path = _save([node], [_vi("x", (1, 8, 2))], [_vi("y", (1, 5, 2))], tmp_path / "b.onnx", check=False)
    with pytest.raises((UnsupportedModelError, ModelFormatError)) as e:
        import_onnx(path)
    assert "dft_cplx" in str(e.value) and "one-sided" in str(e.value).replace("onesided", "one-sided")
    assert "\n" not in str(e.value)


def test_stft_run_time_window_is_one_line(tmp_path):
    """An STFT window that is a computed activation is refused naming the node and the window."""
    inits = (_const("step", np.array(4, np.int64)),)
    nodes = [helper.make_node("Sigmoid", ["w"], ["win"]),
             helper.make_node("STFT", ["x", "step", "win"], ["y"], name="stft_dyn", onesided=1)]
    path = _save(nodes, [_vi("x", (1, 32, 1)), _vi("w", (8,))], [_vi("y", (1, 7, 5, 2))], tmp_path / "stft_dyn.onnx",
                 inits)
    with pytest.raises(UnsupportedModelError) as e:
        import_onnx(path, input_shapes={"x": (1, 32, 1), "w": (8,)})
    assert "stft_dyn" in str(e.value) and "window" in str(e.value) and "\n" not in str(e.value)


def test_cubic_resize_with_run_time_scales_is_one_line(tmp_path):
    """Cubic weights need the scale values: a scales input computed at run time is refused in one line naming
    the node."""
    nodes = [helper.make_node("Abs", ["s"], ["scales"]),
             helper.make_node("Resize", ["x", "", "scales"], ["y"], name="cubic_dyn", mode="cubic")]
    path = _save(nodes, [_vi("x", (1, 2, 4, 4)), _vi("s", (4,))], [_vi("y", (1, 2, 8, 8))], tmp_path / "rs.onnx",
                 opset=19)
    with pytest.raises(UnsupportedModelError) as e:
        import_onnx(path, input_shapes={"x": (1, 2, 4, 4), "s": (4,)})
    assert "cubic_dyn" in str(e.value) and "\n" not in str(e.value)  # the prepare pass: a data-dependent shape


def test_dft_too_large_for_a_dense_matrix_is_one_line(tmp_path):
    """A 3,000-point complex DFT (36 M weights) is refused before any matrix is built, naming the node."""
    node = helper.make_node("DFT", ["x"], ["y"], name="dft_big", axis=1)
    _refusal(_save([node], [_vi("x", (1, 3000, 2))], [_vi("y", (1, 3000, 2))], tmp_path / "big.onnx"),
             "dft_big", "too large")
