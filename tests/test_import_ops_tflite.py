"""Float TFLite input: builtins beyond the basic CNN set, fp16 weights, MediaPipe's custom transposed
convolution, and clear refusals for other custom ops."""
from __future__ import annotations

import struct

import numpy as np
import pytest
from test_import_ops_common import check_tflite

tb = pytest.importorskip("tflite_builder")
T, opts = tb.T, tb.opts
RNG = np.random.default_rng(11)


def f32(*shape: int, scale: float = 0.3) -> np.ndarray:
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def _model(tmp_path, build):  # type: ignore[no-untyped-def]
    mb = tb.ModelBuilder()
    sg = mb.subgraph("main")
    build(sg)
    return str(mb.write(tmp_path / "float.tflite"))


def _vision(sg) -> None:  # type: ignore[no-untyped-def]
    """HARD_SWISH -> RESIZE_BILINEAR (half pixel) -> RESIZE_NEAREST -> TRANSPOSE_CONV (fp16 weights, SAME)."""
    x = sg.tensor(T([1, 4, 4, 8], "float32", name="x"))
    hs = sg.tensor(T([1, 4, 4, 8], "float32", name="hs"))
    rb = sg.tensor(T([1, 8, 8, 8], "float32", name="rb"))
    rn = sg.tensor(T([1, 16, 16, 8], "float32", name="rn"))
    w16 = sg.tensor(T([4, 3, 3, 8], "float16", data=f32(4, 3, 3, 8).astype(np.float16), name="w16"))
    w = sg.tensor(T([4, 3, 3, 8], "float32", name="w"))
    shape = sg.tensor(T([4], "int32", data=np.array([1, 32, 32, 4], np.int32), name="oshape"))
    b = sg.tensor(T([4], "float32", data=f32(4), name="b"))
    y = sg.tensor(T([1, 32, 32, 4], "float32", name="y"))
    size8 = sg.tensor(T([2], "int32", data=np.array([8, 8], np.int32), name="s8"))
    size16 = sg.tensor(T([2], "int32", data=np.array([16, 16], np.int32), name="s16"))
    sg.op("HARD_SWISH", [x], [hs])
    sg.op("RESIZE_BILINEAR", [hs, size8], [rb], opts("ResizeBilinearOptions", halfPixelCenters=True))
    sg.op("RESIZE_NEAREST_NEIGHBOR", [rb, size16], [rn], opts("ResizeNearestNeighborOptions"))
    sg.op("DEQUANTIZE", [w16], [w])
    sg.op("TRANSPOSE_CONV", [shape, w, rn, b], [y], opts("TransposeConvOptions", padding=0, strideW=2, strideH=2),
          version=3)
    sg.io([x], [y])


def _elementwise(sg) -> None:  # type: ignore[no-untyped-def]
    x = sg.tensor(T([1, 4, 4, 8], "float32", name="x"))
    names = ["a", "b", "c", "d", "e", "f", "g"]
    t = {k: sg.tensor(T([1, 4, 4, 8], "float32", name=k)) for k in names}
    k1 = sg.tensor(T([8], "float32", data=f32(8), name="k1"))
    alpha = sg.tensor(T([1, 1, 8], "float32", data=np.abs(f32(1, 1, 8)), name="alpha"))
    sg.op("SUB", [x, k1], [t["a"]], opts("SubOptions"))
    sg.op("MAXIMUM", [t["a"], x], [t["b"]])
    sg.op("SQUARED_DIFFERENCE", [t["b"], x], [t["c"]])
    sg.op("LEAKY_RELU", [t["a"]], [t["d"]], opts("LeakyReluOptions", alpha=0.1))
    sg.op("PRELU", [t["d"], alpha], [t["e"]])
    sg.op("NEG", [t["e"]], [t["f"]])
    sg.op("ADD", [t["f"], t["c"]], [t["g"]], opts("AddOptions"))
    sg.io([x], [t["g"]])


def _layout(sg) -> None:  # type: ignore[no-untyped-def]
    """MEAN over channels, SPLIT, STRIDED_SLICE (shrink), GATHER, TRANSPOSE, CONCATENATION, PADV2, MIRROR_PAD."""
    x = sg.tensor(T([1, 6, 6, 8], "float32", name="x"))
    axis3 = sg.tensor(T([1], "int32", data=np.array([3], np.int32), name="axis3"))
    m = sg.tensor(T([1, 6, 6, 1], "float32", name="mean"))
    sg.op("MEAN", [x, axis3], [m], opts("ReducerOptions", keepDims=True))
    split_axis = sg.tensor(T([], "int32", data=np.array(3, np.int32), name="split_axis"))
    s0, s1 = (sg.tensor(T([1, 6, 6, 4], "float32", name=f"s{i}")) for i in range(2))
    sg.op("SPLIT", [split_axis, x], [s0, s1], opts("SplitOptions", numSplits=2))
    idx = sg.tensor(T([3], "int32", data=np.array([3, 0, 2], np.int32), name="idx"))
    g = sg.tensor(T([1, 6, 6, 3], "float32", name="g"))
    sg.op("GATHER", [s1, idx], [g], opts("GatherOptions", axis=3))
    cat = sg.tensor(T([1, 6, 6, 8], "float32", name="cat"))
    sg.op("CONCATENATION", [s0, g, m], [cat], opts("ConcatenationOptions", axis=3))
    perm = sg.tensor(T([4], "int32", data=np.array([0, 2, 1, 3], np.int32), name="perm"))
    tr = sg.tensor(T([1, 6, 6, 8], "float32", name="tr"))
    sg.op("TRANSPOSE", [cat, perm], [tr])
    pads = sg.tensor(T([4, 2], "int32", data=np.array([[0, 0], [1, 1], [2, 0], [0, 0]], np.int32), name="pads"))
    mp = sg.tensor(T([1, 8, 8, 8], "float32", name="mp"))
    sg.op("MIRROR_PAD", [tr, pads], [mp], opts("MirrorPadOptions", mode=0))
    b = sg.tensor(T([4], "int32", data=np.array([0, 1, 0, 0], np.int32), name="begin"))
    e = sg.tensor(T([4], "int32", data=np.array([1, 7, 8, 8], np.int32), name="end"))
    s = sg.tensor(T([4], "int32", data=np.array([1, 2, 1, 1], np.int32), name="strides"))
    y = sg.tensor(T([1, 3, 8, 8], "float32", name="y"))
    sg.op("STRIDED_SLICE", [mp, b, e, s], [y], opts("StridedSliceOptions"))
    sg.io([x], [y])


def _custom_deconv(sg) -> None:  # type: ignore[no-untyped-def]
    x = sg.tensor(T([1, 4, 4, 8], "float32", name="x"))
    w = sg.tensor(T([4, 4, 4, 8], "float32", data=f32(4, 4, 4, 8), name="w"))
    b = sg.tensor(T([4], "float32", data=f32(4), name="b"))
    y = sg.tensor(T([1, 8, 8, 4], "float32", name="y"))
    sg.op("custom:Convolution2DTransposeBias", [x, w, b], [y], custom_options=struct.pack("<3i", 1, 2, 2))
    sg.io([x], [y])


def _attention(sg) -> None:  # type: ignore[no-untyped-def]
    """FULLY_CONNECTED on 3-D tokens, BATCH_MATMUL with adj_y, SOFTMAX."""
    x = sg.tensor(T([1, 6, 8], "float32", name="x"))
    w = sg.tensor(T([8, 8], "float32", data=f32(8, 8), name="wq"))
    q = sg.tensor(T([1, 6, 8], "float32", name="q"))
    sg.op("FULLY_CONNECTED", [x, w, -1], [q], opts("FullyConnectedOptions", keepNumDims=True))
    att = sg.tensor(T([1, 6, 6], "float32", name="att"))
    sg.op("BATCH_MATMUL", [q, x], [att], opts("BatchMatMulOptions", adjY=True))
    y = sg.tensor(T([1, 6, 6], "float32", name="y"))
    sg.op("SOFTMAX", [att], [y], opts("SoftmaxOptions", beta=1.0))
    sg.io([x], [y])


def _lstm(sg) -> None:  # type: ignore[no-untyped-def]
    """A keyword-spotter-style float UNIDIRECTIONAL_SEQUENCE_LSTM (batch-major, zero state)."""
    seq, feat, hid = 6, 5, 8
    x = sg.tensor(T([1, seq, feat], "float32", name="x"))
    ins = [x]
    ins += [sg.tensor(T([hid, feat], "float32", data=f32(hid, feat, scale=0.5), name=f"w{k}")) for k in range(4)]
    ins += [sg.tensor(T([hid, hid], "float32", data=f32(hid, hid, scale=0.5), name=f"r{k}")) for k in range(4)]
    ins += [-1, -1, -1]
    ins += [sg.tensor(T([hid], "float32", data=f32(hid), name=f"b{k}")) for k in range(4)]
    ins += [-1, -1]
    ins += [sg.tensor(T([1, hid], "float32", variable=True, name="h_state")),
            sg.tensor(T([1, hid], "float32", variable=True, name="c_state"))]
    ins += [-1, -1, -1, -1]
    y = sg.tensor(T([1, seq, hid], "float32", name="y"))
    sg.op("UNIDIRECTIONAL_SEQUENCE_LSTM", ins, [y],
          opts("UnidirectionalSequenceLSTMOptions", fusedActivationFunction=4, timeMajor=False))
    sg.io([x], [y])


def _more(sg) -> None:  # type: ignore[no-untyped-def]
    """ELU, L2_POOL_2D, DEPTH_TO_SPACE, UNPACK/PACK, REVERSE_V2, REDUCE_MIN, ADD_N, L2_NORMALIZATION."""
    x = sg.tensor(T([1, 4, 4, 8], "float32", name="x"))
    e = sg.tensor(T([1, 4, 4, 8], "float32", name="elu"))
    sg.op("ELU", [x], [e])
    lp = sg.tensor(T([1, 4, 4, 8], "float32", name="l2pool"))
    sg.op("L2_POOL_2D", [e], [lp], opts("Pool2DOptions", padding=0, strideW=1, strideH=1, filterWidth=2,
                                        filterHeight=2))
    d2s = sg.tensor(T([1, 8, 8, 2], "float32", name="d2s"))
    sg.op("DEPTH_TO_SPACE", [lp], [d2s], opts("DepthToSpaceOptions", blockSize=2))
    rows = [sg.tensor(T([1, 8, 2], "float32", name=f"row{i}")) for i in range(8)]
    sg.op("UNPACK", [d2s], rows, opts("UnpackOptions", num=8, axis=1))
    packed = sg.tensor(T([1, 8, 8, 2], "float32", name="packed"))
    sg.op("PACK", rows[::-1], [packed], opts("PackOptions", valuesCount=8, axis=2))
    axis = sg.tensor(T([1], "int32", data=np.array([3], np.int32), name="axis"))
    rev = sg.tensor(T([1, 8, 8, 2], "float32", name="rev"))
    sg.op("REVERSE_V2", [packed, axis], [rev])
    mn = sg.tensor(T([1, 8, 8, 1], "float32", name="min"))
    sg.op("REDUCE_MIN", [rev, axis], [mn], opts("ReducerOptions", keepDims=True))
    s = sg.tensor(T([1, 8, 8, 2], "float32", name="addn"))
    sg.op("ADD_N", [rev, d2s, packed], [s])
    both = sg.tensor(T([1, 8, 8, 2], "float32", name="both"))
    sg.op("SUB", [s, mn], [both], opts("SubOptions"))
    y = sg.tensor(T([1, 8, 8, 2], "float32", name="y"))
    sg.op("L2_NORMALIZATION", [both], [y], opts("L2NormOptions"))
    sg.io([x], [y])


CASES = {"more_builtins": _more, "lstm": _lstm, "vision_fp16": _vision, "elementwise": _elementwise, "layout": _layout, "custom_deconv": _custom_deconv,
         "attention": _attention}


@pytest.mark.parametrize("case", sorted(CASES))
def test_float_tflite_ops(case, tmp_path):
    path = _model(tmp_path, CASES[case])
    res = check_tflite(path, tmp_path, low=-2, high=2, min_sqnr=15 if case == "attention" else 20)
    if res.micro_exact is not None:
        assert res.micro_exact, "micro backend differs from tflite-micro"


def test_custom_deconv_becomes_transpose_conv(tmp_path):
    from converters.importers.tflite import import_tflite

    g = import_tflite(_model(tmp_path, _custom_deconv))
    assert g.op_counts().get("TRANSPOSE_CONV") == 1


def test_unknown_custom_op_is_refused_by_name(tmp_path):
    from converters.importers.tflite import import_tflite
    from edge_runtime.errors import UnsupportedModelError

    def build(sg) -> None:  # type: ignore[no-untyped-def]
        x = sg.tensor(T([1, 4], "float32", name="x"))
        y = sg.tensor(T([1, 4], "float32", name="y"))
        sg.op("custom:MySecretOp", [x], [y])
        sg.io([x], [y])

    with pytest.raises(UnsupportedModelError) as info:
        import_tflite(_model(tmp_path, build))
    msg = str(info.value)
    assert "MySecretOp" in msg and "operator 0" in msg and "\n" not in msg


@pytest.mark.parametrize("approximate", [False, True])
def test_float_gelu_becomes_its_tanh_form(approximate, tmp_path):
    """A float GELU (either form): the float IR within 1e-3 of LiteRT's float GELU, six int8 ops
    (MUL x4, ADD, LOGISTIC) that tflite-micro runs, micro bit-exact."""
    def build(sg) -> None:  # type: ignore[no-untyped-def]
        x = sg.tensor(T([1, 6, 8], "float32", name="x"))
        y = sg.tensor(T([1, 6, 8], "float32", name="y"))
        sg.op("GELU", [x], [y], opts("GeluOptions", approximate=approximate))
        sg.io([x], [y])

    res = check_tflite(_model(tmp_path, build), tmp_path, low=-4, high=4, atol=1e-3, min_sqnr=35)
    assert res.graph.op_counts() == {"MUL": 4, "ADD": 1, "LOGISTIC": 1}
    assert res.tflm_ran
    if res.micro_exact is not None:
        assert res.micro_exact, "micro backend differs from tflite-micro"
