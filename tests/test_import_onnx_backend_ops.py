"""ONNX patterns from the onnx package's own backend-test models (``benchmarks/onnx_backend_models.py``)
that the importer used to refuse: Elu with alpha != 1, Pad mode 'edge', ConvTranspose whose
output_padding reaches past the full output, Shrink, LRN (the light AlexNet and GoogLeNet) and dilated
MaxPool; and a PRelu slope that does not broadcast is refused at import in one line.

Each pattern is built with ``onnx.helper`` and goes through :func:`check_graph` (import, calibration, the
int8 .tflite on LiteRT and the QDQ .onnx on onnxruntime, SQNR against the float model on onnxruntime, and
micro == tflite-micro with ``np.array_equal``). The last test converts the onnx wheel's own files for
these ops with ``convert_model`` and compares with their golden outputs (skipped when the wheel ships no
test data).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from test_import_breadth_onnx import check_graph, onnx_reference, uniform

from converters.importers.onnx import import_onnx
from edge_runtime.errors import UnsupportedModelError


def _save(nodes: list, in_shape: list[int], out_shape: list[int], path: Path, opset: int = 13,
          inits: tuple = ()) -> str:
    """A one-input, one-output float model, checked and saved."""
    g = helper.make_graph(nodes, "pattern", [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)], list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, str(path))
    return str(path)


def _conv(rng: np.random.Generator, cin: int, cout: int) -> tuple[object, object]:
    """A 3x3 'same' Conv node before the pattern (so the pattern reads a computed activation) and its weights."""
    w = numpy_helper.from_array((rng.standard_normal((cout, cin, 3, 3)) * 0.4).astype(np.float32), "w")
    return helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]), w


@pytest.mark.parametrize("alpha", [0.0, 0.3, 2.0])
def test_elu_with_any_alpha(alpha, tmp_path):
    """Elu(alpha) = ELU(x) + (alpha - 1) * min(ELU(x), 0): int8 ops only, close to float onnxruntime."""
    rng = np.random.default_rng(1)
    conv, w = _conv(rng, 3, 4)
    path = _save([conv, helper.make_node("Elu", ["c"], ["y"], name="elu", alpha=alpha)], [1, 3, 8, 8], [1, 4, 8, 8],
                 tmp_path / "elu.onnx", inits=(w,))
    graph = import_onnx(path)
    counts = graph.op_counts()
    assert counts.get("ELU") == 1 and counts.get("MINIMUM") == 1, counts
    m = check_graph(graph, uniform((1, 3, 8, 8)) * 2, onnx_reference(path), tmp_path, min_sqnr=30.0)
    assert m.tflite["y"] >= 30.0


def test_elu_alpha_one_is_one_op(tmp_path):
    """alpha 1 (the default) stays one ELU op, as before."""
    path = _save([helper.make_node("Elu", ["x"], ["y"], name="elu")], [1, 4, 5], [1, 4, 5], tmp_path / "elu1.onnx")
    assert import_onnx(path).op_counts() == {"ELU": 1}


@pytest.mark.parametrize("opset", [10, 13])
@pytest.mark.parametrize("pads", [[0, 0, 1, 2, 0, 0, 3, 1], [0, 1, 2, 0, 0, 2, 0, 4]])
def test_pad_edge(opset, pads, tmp_path):
    """Pad mode 'edge' (attribute pads at opset 10, input pads at 13), on height/width and on channels:
    one GATHER per padded axis, exact copies of the edge values."""
    rng = np.random.default_rng(2)
    conv, w = _conv(rng, 3, 4)
    out_shape = [1 + pads[0] + pads[4], 4 + pads[1] + pads[5], 6 + pads[2] + pads[6], 7 + pads[3] + pads[7]]
    inits = [w]
    if opset >= 11:
        inits.append(numpy_helper.from_array(np.array(pads, np.int64), "pads"))
        pad = helper.make_node("Pad", ["c", "pads"], ["y"], name="pad", mode="edge")
    else:
        pad = helper.make_node("Pad", ["c"], ["y"], name="pad", mode="edge", pads=pads)
    path = _save([conv, pad], [1, 3, 6, 7], out_shape, tmp_path / "pad.onnx", opset, tuple(inits))
    graph = import_onnx(path)
    assert graph.op_counts().get("GATHER") == sum(1 for i in range(4) if pads[i] or pads[i + 4])
    m = check_graph(graph, uniform((1, 3, 6, 7)), onnx_reference(path), tmp_path, min_sqnr=30.0)
    assert m.tflite["y"] >= 30.0


def test_pad_edge_on_3d_and_negative_pads(tmp_path):
    """A 3-D input (no layout change) with a crop on one side and edge padding on the other."""
    pads = numpy_helper.from_array(np.array([0, -1, 2, 0, 3, -2], np.int64), "pads")
    path = _save([helper.make_node("Pad", ["x", "pads"], ["y"], name="pad", mode="edge")], [1, 5, 9], [1, 7, 9],
                 tmp_path / "pad3.onnx", inits=(pads,))
    check_graph(import_onnx(path), uniform((1, 5, 9)), onnx_reference(path), tmp_path, min_sqnr=35.0)


def test_pad_wrap_is_refused_in_one_line(tmp_path):
    """Pad mode 'wrap' (opset 19) is still refused, naming the op and the modes that work."""
    pads = numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads")
    path = _save([helper.make_node("Pad", ["x", "pads"], ["y"], name="pad", mode="wrap")], [1, 2, 4, 4],
                 [1, 2, 6, 6], tmp_path / "wrap.onnx", 19, (pads,))
    with pytest.raises(UnsupportedModelError) as exc:
        import_onnx(path)
    msg = str(exc.value)
    assert "\n" not in msg and "Pad mode 'wrap'" in msg and "edge" in msg


@pytest.mark.parametrize("case", [
    # (input hw, kernel, stride, pads, output_padding): the output reaches past the full (unpadded) output
    ((4, 5), (3, 3), (3, 3), (1, 1, 1, 1), (2, 2)),
    ((3, 4), (2, 3), (2, 3), (0, 1, 0, 0), (1, 2)),
    ((5, 3), (3, 3), (2, 2), (0, 0, 0, 0), (1, 0)),
])
def test_conv_transpose_output_padding_past_full_output(case, tmp_path):
    """ConvTranspose whose output_padding adds rows/columns beyond the last tap (they hold only the bias):
    zero input rows/columns are padded at the end so the full output covers them, then cropped."""
    (h, w_), k, s, p, op = case
    rng = np.random.default_rng(3)
    w = numpy_helper.from_array((rng.standard_normal((3, 2, *k)) * 0.4).astype(np.float32), "w")
    b = numpy_helper.from_array(np.array([0.3, -0.5], np.float32), "b")
    oh = (h - 1) * s[0] + k[0] - p[0] - p[2] + op[0]
    ow = (w_ - 1) * s[1] + k[1] - p[1] - p[3] + op[1]
    node = helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], name="deconv", kernel_shape=list(k),
                            strides=list(s), pads=list(p), output_padding=list(op))
    path = _save([node], [1, 3, h, w_], [1, 2, oh, ow], tmp_path / "deconv.onnx", inits=(w, b))
    graph = import_onnx(path)
    assert graph.op_counts().get("TRANSPOSE_CONV") == 1
    m = check_graph(graph, uniform((1, 3, h, w_)), onnx_reference(path), tmp_path, min_sqnr=30.0)
    assert m.tflite["y"] >= 30.0


@pytest.mark.parametrize("lambd,bias", [(0.5, 0.0), (0.4, 0.4), (0.3, 0.1), (0.0, 0.2)])
def test_shrink(lambd, bias, tmp_path):
    """Shrink (hard-shrink, soft-shrink and between): two comparisons and two SELECT_V2."""
    rng = np.random.default_rng(4)
    conv, w = _conv(rng, 3, 4)
    node = helper.make_node("Shrink", ["c"], ["y"], name="shrink", lambd=lambd, bias=bias)
    path = _save([conv, node], [1, 3, 6, 6], [1, 4, 6, 6], tmp_path / "shrink.onnx", inits=(w,))
    graph = import_onnx(path)
    counts = graph.op_counts()
    assert counts.get("SELECT_V2") == 2 and counts.get("GREATER") == 1 and counts.get("LESS") == 1, counts
    m = check_graph(graph, uniform((1, 3, 6, 6)) * 2, onnx_reference(path), tmp_path, min_sqnr=25.0)
    assert m.tflite["y"] >= 25.0


# -- the onnx wheel's own files ----------------------------------------------------------------------
WHEEL_MODELS = [("pytorch-converted", "test_ELU"), ("pytorch-converted", "test_ReplicationPad2d"),
                ("pytorch-converted", "test_MaxPool2d_stride_padding_dilation"),
                ("pytorch-converted", "test_MaxPool1d_stride_padding_dilation"),
                ("pytorch-operator", "test_operator_convtranspose"), ("simple", "test_shrink")]


@pytest.mark.parametrize("folder,name", WHEEL_MODELS)
def test_onnx_wheel_models_now_convert(folder, name):
    """The backend-test models that exposed these patterns convert, match their golden output (SQNR on
    LiteRT) and run identically on micro and tflite-micro."""
    from benchmarks.onnx_backend_models import data_root, measure

    path = data_root() / folder / name / "model.onnx"
    if not path.is_file():
        pytest.skip(f"the installed onnx package ships no {folder}/{name}")
    row = measure(name, folder, path)
    assert row.get("ok"), row.get("error")
    assert min(row["ours_db"]) >= 30.0, row["ours_db"]
    assert row["micro"] == "equal", row["micro"]


@pytest.mark.parametrize("size,beta,bias",
                         [(5, 0.75, 1.0), (3, 0.5, 2.0), (3, 1.0, 1.0), (5, 0.25, 1.5), (1, 0.75, 1.0)])
def test_lrn(size, beta, bias, tmp_path):
    """LRN across channels (AlexNet / GoogLeNet): MUL, a banded 1x1 CONV_2D, RSQRT and MULs, all int8
    (onnxruntime runs odd sizes only: the even-size window is checked on the band matrix below)."""
    rng = np.random.default_rng(5)
    conv, w = _conv(rng, 3, 7)
    node = helper.make_node("LRN", ["c"], ["y"], name="lrn", size=size, alpha=0.05, beta=beta, bias=bias)
    path = _save([conv, node], [1, 3, 6, 6], [1, 7, 6, 6], tmp_path / "lrn.onnx", inits=(w,))
    graph = import_onnx(path)
    assert graph.op_counts().get("RSQRT") in (1, 2) and "LOCAL_RESPONSE_NORMALIZATION" not in graph.op_counts()
    m = check_graph(graph, uniform((1, 3, 6, 6)) * 3, onnx_reference(path), tmp_path, min_sqnr=30.0)
    assert m.tflite["y"] >= 30.0


def test_lrn_band_matches_the_onnx_window():
    """The banded matrix sums channels c - floor((size-1)/2) .. c + ceil((size-1)/2), as the ONNX spec says."""
    from converters.importers.onnx_ops.lrn import band

    for size in (1, 2, 3, 4, 5):
        b = band(6, size, 1.0)
        lo, hi = (size - 1) // 2, -(-(size - 1) // 2)
        for c in range(6):
            assert np.flatnonzero(b[c]).tolist() == list(range(max(0, c - lo), min(6, c + hi + 1)))


def test_lrn_other_beta_is_refused_in_one_line(tmp_path):
    path = _save([helper.make_node("LRN", ["x"], ["y"], name="lrn", size=3, beta=0.6)], [1, 4, 5, 5], [1, 4, 5, 5],
                 tmp_path / "lrn_beta.onnx")
    with pytest.raises(UnsupportedModelError) as exc:
        import_onnx(path)
    msg = str(exc.value)
    assert "\n" not in msg and "LRN with beta=0.6" in msg


def test_prelu_slope_that_does_not_broadcast_is_refused_in_one_line(tmp_path):
    """An opset-6 style per-channel slope ``[C]`` on a ``[1, C, L]`` input, upgraded without reshaping (as
    onnx.version_converter leaves it), is refused at import, naming the shapes, not at calibration."""
    slope = numpy_helper.from_array(np.array([0.1, 0.2, 0.3], np.float32), "slope")
    m = helper.make_model(helper.make_graph(
        [helper.make_node("PRelu", ["x", "slope"], ["y"], name="prelu")], "p",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4])], [slope]),
        opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    path = str(tmp_path / "prelu.onnx")
    onnx.save(m, path)  # not check_model'ed: shape inference would (rightly) reject it
    with pytest.raises(UnsupportedModelError) as exc:
        import_onnx(path)
    msg = str(exc.value)
    assert "\n" not in msg and "PRelu slope of shape (3,)" in msg and "(1, 3, 4)" in msg


@pytest.mark.parametrize("slope_shape", [(3, 1), (1, 3, 1), (4,), (1,)])
def test_prelu_slopes_that_broadcast_still_convert(slope_shape, tmp_path):
    """Per-channel, full-rank and per-last-axis slopes keep converting (SQNR vs float onnxruntime)."""
    rng = np.random.default_rng(7)
    slope = numpy_helper.from_array(rng.uniform(0.05, 0.4, slope_shape).astype(np.float32), "slope")
    path = _save([helper.make_node("PRelu", ["x", "slope"], ["y"], name="prelu")], [1, 3, 4], [1, 3, 4],
                 tmp_path / "prelu_ok.onnx", inits=(slope,))
    check_graph(import_onnx(path), uniform((1, 3, 4)), onnx_reference(path), tmp_path, min_sqnr=30.0)


@pytest.mark.parametrize("kernel,dil,stride,pads,ceil", [
    ((3, 3), (2, 2), (1, 1), (2, 2, 2, 2), 0),
    ((3, 2), (2, 3), (2, 1), (1, 0, 2, 1), 0),
    ((2, 3), (3, 2), (2, 2), (1, 1, 1, 1), 1),
    ((3, 3), (2, 2), (3, 3), (0, 0, 0, 0), 0),
])
def test_dilated_max_pool(kernel, dil, stride, pads, ceil, tmp_path):
    """Dilated MaxPool: separable MAXIMUMs of strided slices / gathers; padding taps read the window's own
    first or last real tap, so no -inf reaches calibration and the int8 result stays exact."""
    import onnxruntime as ort

    rng = np.random.default_rng(8)
    conv, w = _conv(rng, 3, 4)
    node = helper.make_node("MaxPool", ["c"], ["y"], name="pool", kernel_shape=list(kernel), dilations=list(dil),
                            strides=list(stride), pads=list(pads), ceil_mode=ceil)
    g = helper.make_graph([conv, node], "p", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 11, 12])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    m = onnx.shape_inference.infer_shapes(m)
    path = str(tmp_path / "dpool.onnx")
    onnx.save(m, path)
    ort.InferenceSession(path, providers=["CPUExecutionProvider"])  # a valid pooling for the reference
    graph = import_onnx(path)
    counts = graph.op_counts()
    assert "MAX_POOL_2D" not in counts and counts.get("MAXIMUM") == kernel[0] + kernel[1] - 2, counts
    m_ = check_graph(graph, uniform((1, 3, 11, 12)) * 2, onnx_reference(path), tmp_path, min_sqnr=35.0)
    assert m_.tflite["y"] >= 35.0


def test_dilated_max_pool_1d(tmp_path):
    """The 1-D form (lifted to a height of 1)."""
    node = helper.make_node("MaxPool", ["x"], ["y"], name="pool", kernel_shape=[4], dilations=[3], strides=[2],
                            pads=[2, 3])
    path = _save([node], [1, 2, 30], [1, 2, 13], tmp_path / "dpool1.onnx")
    check_graph(import_onnx(path), uniform((1, 2, 30)), onnx_reference(path), tmp_path, min_sqnr=40.0)


def test_dilated_average_pool_converts(tmp_path):
    """Dilated AveragePool (once refused): a dilated DEPTHWISE_CONV_2D with weights 1/area."""
    node = helper.make_node("AveragePool", ["x"], ["y"], name="pool", kernel_shape=[2, 2], dilations=[2, 2])
    path = _save([node], [1, 2, 8, 8], [1, 2, 6, 6], tmp_path / "apool.onnx", 19)
    graph = import_onnx(path)
    assert graph.op_counts().get("DEPTHWISE_CONV_2D") == 1
    check_graph(graph, uniform((1, 2, 8, 8)), onnx_reference(path), tmp_path, min_sqnr=35.0)


def test_conv_transpose_output_padding_past_full_output_grouped_and_1d(tmp_path):
    """The same with groups (one TRANSPOSE_CONV per group over the grown input) and in 1-D."""
    rng = np.random.default_rng(9)
    w = numpy_helper.from_array((rng.standard_normal((4, 3, 3, 2)) * 0.4).astype(np.float32), "w")
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="deconv", kernel_shape=[3, 2], strides=[3, 2],
                            pads=[1, 0, 0, 1], output_padding=[2, 1], group=2)
    oh, ow = (4 - 1) * 3 + 3 - 1 + 2, (5 - 1) * 2 + 2 - 1 + 1
    path = _save([node], [1, 4, 4, 5], [1, 6, oh, ow], tmp_path / "deconv_g.onnx", inits=(w,))
    graph = import_onnx(path)
    assert graph.op_counts().get("TRANSPOSE_CONV") == 2
    check_graph(graph, uniform((1, 4, 4, 5)), onnx_reference(path), tmp_path, min_sqnr=30.0)
    w1 = numpy_helper.from_array((rng.standard_normal((3, 2, 3)) * 0.4).astype(np.float32), "w")
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="deconv1d", kernel_shape=[3], strides=[3],
                            pads=[1, 1], output_padding=[2])
    path = _save([node], [1, 3, 7], [1, 2, (7 - 1) * 3 + 3 - 2 + 2], tmp_path / "deconv_1d.onnx", inits=(w1,))
    check_graph(import_onnx(path), uniform((1, 3, 7)), onnx_reference(path), tmp_path, min_sqnr=30.0)


@pytest.mark.parametrize("pads", [[0, 0, 7, 9, 0, 0, 8, 1], [0, 0, 0, 20, 0, 0, 0, 0]])
def test_pad_edge_wider_than_the_input(pads, tmp_path):
    """Edge pads may be wider than the axis they pad: the edge value repeats as far as asked."""
    p = numpy_helper.from_array(np.array(pads, np.int64), "p")
    out = [1, 2, 4 + pads[2] + pads[6], 3 + pads[3] + pads[7]]
    path = _save([helper.make_node("Pad", ["x", "p"], ["y"], name="pad", mode="edge")], [1, 2, 4, 3], out,
                 tmp_path / "pad_wide.onnx", inits=(p,))
    check_graph(import_onnx(path), uniform((1, 2, 4, 3)), onnx_reference(path), tmp_path, min_sqnr=35.0)
