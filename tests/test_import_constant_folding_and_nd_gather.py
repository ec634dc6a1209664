"""Importers: constant folding of TFLite shape arithmetic, SELECT_V2 between two constants, and GATHER with
N-D constant indices (TFLite and ONNX).

- Folding (:mod:`converters.importers.tflite_ops.fold`): every folded value is compared with LiteRT running
  the same operator on the same constants (``np.array_equal``, dtype and shape too); a Keras-style dynamic
  reshape (SHAPE -> STRIDED_SLICE -> REDUCE_PROD/PACK -> RESHAPE) then converts.
- Conversions are measured by :func:`benchmarks.tflite_op_breadth.measure_case` (SQNR of our int8 .tflite on
  LiteRT against the float model on LiteRT, and micro == tflite-micro, ``np.array_equal``, on the written
  .tflite) or, for ONNX, :func:`benchmarks.onnx_node_tests.measure_case` against onnxruntime's float output.
- What is not supported (an index out of range, a constant integer division by zero) is refused in one line
  naming the operator.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pytest
from test_import_tflite_litert_ops import (
    _measure,  # one SQNR / exactness check for both files
)

from converters.importers.tflite import import_tflite
from edge_runtime.errors import UnsupportedModelError

tb = pytest.importorskip("tflite_builder")
pytest.importorskip("tflite_micro")
litert = pytest.importorskip("ai_edge_litert.interpreter")
breadth = pytest.importorskip("benchmarks.tflite_op_breadth")
Case, Net, opts = breadth.Case, breadth.Net, tb.opts


def _model(tmp_path: Any, build: Callable[[Any], None]) -> str:
    mb = tb.ModelBuilder()
    build(mb.subgraph("main"))
    return str(mb.write(tmp_path / "m.tflite"))


def _refusal(path: str, *words: str) -> str:
    with pytest.raises(UnsupportedModelError) as e:
        import_tflite(path)
    msg = str(e.value)
    assert "\n" not in msg and "operator" in msg, msg
    for w in words:
        assert w in msg, msg
    return msg


# ---------------------------------------------------------------- folded values == LiteRT
def _fold_vs_litert(tmp_path: Any, build: Callable[[Any], list[int]]) -> int:
    """Build constant-only ops (``build(net)`` returns the tensors to check), run them in LiteRT and fold every
    op with :func:`fold_constant_op`; each checked tensor must equal LiteRT's. Returns how many were checked."""
    from converters.importers.tflite_ops.context import TFLiteContext
    from converters.importers.tflite_ops.fold import fold_constant_op
    from edge_runtime.formats.tflite import TFLiteModel

    holder: dict[str, list[int]] = {}

    def full(sg: Any) -> None:
        n = Net(sg)
        n.x([1])
        holder["outs"] = build(n)
        n.done(*holder["outs"])
    path = _model(tmp_path, full)
    it = litert.Interpreter(model_path=path, num_threads=1)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], np.zeros([1], np.float32))
    it.invoke()
    expect = {d["index"]: it.get_tensor(d["index"]) for d in it.get_output_details()}
    sg = TFLiteModel.open(path).main
    ctx = TFLiteContext(path, sg)
    for op in sg.operators:
        assert fold_constant_op(ctx, op), f"{op.name} was not folded"
    for k in holder["outs"]:
        got, want = ctx.tensors[ctx.name(k)].data, expect[k]
        assert got.dtype == want.dtype and got.shape == want.shape, \
            f"{got.dtype}{got.shape} vs LiteRT {want.dtype}{want.shape}"
        assert np.array_equal(got, want), f"{got.ravel()[:8]} vs LiteRT {want.ravel()[:8]}"
    return len(holder["outs"])


def _ic(n: Any, v: Any) -> int:
    return n.c(np.asarray(v, np.int32), "int32")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_folded_integer_ops_equal_litert(tmp_path, seed):
    rng = np.random.default_rng(seed)
    shape = [int(v) for v in rng.integers(2, 6, 3)]
    a = rng.integers(-20, 20, shape).astype(np.int32)
    b = rng.integers(1, 7, shape[-1:]).astype(np.int32) * rng.choice([-1, 1], shape[-1:]).astype(np.int32)

    def build(n: Any) -> list[int]:
        outs = []

        def op(name: str, ins: list[int], out_shape: Any, options: Any = None, dtype: str = "int32") -> int:
            y = n.t(list(out_shape), dtype)
            n.op(name, ins, [y], options)
            outs.append(y)
            return y
        ca, cb = _ic(n, a), _ic(n, b)
        # STRIDED_SLICE: negative begin, begin/end masks, a negative stride and a shrunk axis
        beg, end = [int(rng.integers(-shape[0], 0)), 0, shape[2] - 1], [shape[0], 0, 0]
        sl = a[beg[0]:, 0, ::-1].shape  # the output tensor's shape; the values' reference is LiteRT
        op("STRIDED_SLICE", [ca, _ic(n, beg), _ic(n, end), _ic(n, [1, 1, -1])], sl,
           opts("StridedSliceOptions", beginMask=0b010, endMask=0b100, shrinkAxisMask=0b010))
        op("PACK", [ca, ca], [shape[0], 2] + shape[1:], opts("PackOptions", valuesCount=2, axis=1))
        ax = int(rng.integers(0, 3))
        op("CONCATENATION", [ca, ca], [s * (2 if d == ax else 1) for d, s in enumerate(shape)],
           opts("ConcatenationOptions", axis=ax - 3))
        idx = rng.integers(0, shape[1], (2, 3)).astype(np.int32)
        op("GATHER", [ca, _ic(n, idx)], [shape[0], 2, 3, shape[2]], opts("GatherOptions", axis=1))
        op("REDUCE_PROD", [ca, _ic(n, [-1])], shape[:2] + [1], opts("ReducerOptions", keepDims=True))
        op("SUM", [ca, _ic(n, [0, 2])], [shape[1]], opts("ReducerOptions", keepDims=False))
        for kind in ("FLOOR_DIV", "FLOOR_MOD", "MAXIMUM", "MINIMUM"):
            op(kind, [ca, cb], shape)
        for kind, o in (("ADD", "AddOptions"), ("SUB", "SubOptions"), ("MUL", "MulOptions")):
            op(kind, [ca, cb], shape, opts(o))
        op("CAST", [ca], shape, opts("CastOptions", inDataType=2, outDataType=0), dtype="float32")
        op("RESHAPE", [ca, _ic(n, [-1, shape[2]])], [shape[0] * shape[1], shape[2]])
        op("TRANSPOSE", [ca, _ic(n, [2, 0, 1])], [shape[2], shape[0], shape[1]])
        op("EXPAND_DIMS", [ca, _ic(n, -1)], shape + [1])
        mask = op("LESS", [ca, cb], shape, dtype="bool")
        op("SELECT_V2", [mask, ca, cb], shape)
        sizes = [1, -1]
        y0, y1 = n.t([1] + shape[1:], "int32"), n.t([shape[0] - 1] + shape[1:], "int32")
        n.op("SPLIT_V", [ca, _ic(n, sizes), _ic(n, 0)], [y0, y1], opts("SplitVOptions", numSplits=2))
        outs += [y0, y1]
        parts = [n.t([shape[0], shape[2]], "int32") for _ in range(shape[1])]
        n.op("UNPACK", [ca], parts, opts("UnpackOptions", num=shape[1], axis=1))
        outs += parts
        return outs
    assert _fold_vs_litert(tmp_path, build) > 20


# ---------------------------------------------------------------- shape arithmetic in a convertible model
@pytest.mark.parametrize("seed", [0, 1])
def test_dynamic_reshape_shape_arithmetic_converts(seed):
    """Keras' dynamic reshape: SHAPE(x) -> batch (STRIDED_SLICE, shrink), h*w (REDUCE_PROD of a slice), packed
    with a constant channel count into RESHAPE's new shape; then a float op."""
    rng = np.random.default_rng(seed)
    h, w, c = (int(v) for v in rng.integers(2, 6, 3))

    def build(sg: Any) -> None:
        n = Net(sg)
        x = n.x([1, h, w, c])
        s, b, hw_v, hw, ns = n.t([4], "int32"), n.t([], "int32"), n.t([2], "int32"), n.t([], "int32"), n.t([3], "int32")
        n.op("SHAPE", [x], [s], opts("ShapeOptions", outType=2))
        n.op("STRIDED_SLICE", [s, _ic(n, [0]), _ic(n, [1]), _ic(n, [1])], [b],
             opts("StridedSliceOptions", shrinkAxisMask=1))
        n.op("STRIDED_SLICE", [s, _ic(n, [1]), _ic(n, [3]), _ic(n, [1])], [hw_v], opts("StridedSliceOptions"))
        n.op("REDUCE_PROD", [hw_v, _ic(n, [0])], [hw], opts("ReducerOptions", keepDims=False))
        n.op("PACK", [b, hw, _ic(n, c)], [ns], opts("PackOptions", valuesCount=3, axis=0))
        r, y = n.t([1, h * w, c]), n.t([1, h * w, c])
        n.op("RESHAPE", [x, ns], [r])
        n.op("TANH", [r], [y])
        n.done(y)
    _measure(Case(f"dynamic_reshape_{seed}", "RESHAPE", build))


def test_constant_integer_division_by_zero_is_refused(tmp_path):
    def build(sg: Any) -> None:
        n = Net(sg)
        x = n.x([1, 4])
        s, q, y = n.t([2], "int32"), n.t([2], "int32"), n.t([1, 4])
        n.op("SHAPE", [x], [s], opts("ShapeOptions", outType=2))
        n.op("FLOOR_DIV", [s, _ic(n, [1, 0])], [q])
        n.op("RESHAPE", [x, q], [y])
        n.done(y)
    _refusal(_model(tmp_path, build), "FLOOR_DIV", "division by zero")


# ---------------------------------------------------------------- SELECT_V2 between two constants
@pytest.mark.parametrize("vector", [False, True])
def test_select_between_two_constants(vector):
    """``select(x > t, a, b)`` with constant a and b (BirdNET's week mask: ``select(week > 0, 1.0, 0.0)``)."""
    rng = np.random.default_rng(int(vector))
    shape = [1, int(rng.integers(3, 9))]

    def build(sg: Any) -> None:
        n = Net(sg)
        x = n.x(shape)
        c, m, y = n.t(shape, "bool"), n.t(shape), n.t(shape)
        n.op("GREATER", [x, n.c(np.float32(0.2))], [c])
        on = n.c(rng.uniform(-2, 2, shape[-1:]).astype(np.float32)) if vector else n.c(np.float32(1.0))
        n.op("SELECT_V2", [c, on, n.c(np.float32(0.0 if not vector else -0.5))], [m])
        n.op("MUL", [x, m], [y], opts("MulOptions"))
        n.done(y)
    _measure(Case(f"select_consts_{int(vector)}", "SELECT_V2", build))


# ---------------------------------------------------------------- GATHER with N-D constant indices (TFLite)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tflite_gather_nd_indices(seed):
    rng = np.random.default_rng(seed)
    rank = int(rng.integers(2, 4))
    shape = [int(v) for v in rng.integers(3, 9, rank)]
    axis = int(rng.integers(-rank, rank))
    ax = axis % rank
    idx = rng.integers(0, shape[ax], [int(v) for v in rng.integers(2, 4, int(rng.integers(2, 4)))]).astype(np.int32)
    out = shape[:ax] + list(idx.shape) + shape[ax + 1:]

    def build(sg: Any) -> None:
        n = Net(sg)
        x = n.x(shape)
        y = n.t(out)
        n.op("GATHER", [x, _ic(n, idx)], [y], opts("GatherOptions", axis=axis))
        n.done(y)
    _measure(Case(f"gather_nd_{seed}", "GATHER", build))


def test_tflite_gather_audio_framing():
    """EfficientWord-Net's logmelcalc framing: a [frames, window] index table into a padded signal."""
    def build(sg: Any) -> None:
        n = Net(sg)
        x = n.x([1, 96])
        sig, y = n.t([96, 1]), n.t([11, 16, 1])
        n.op("RESHAPE", [x, _ic(n, [96, 1])], [sig])
        n.op("GATHER", [sig, _ic(n, np.arange(11)[:, None] * 8 + np.arange(16))], [y], opts("GatherOptions", axis=0))
        n.done(y)
    _measure(Case("gather_frames", "GATHER", build))


def test_tflite_gather_index_out_of_range_is_refused(tmp_path):
    def build(sg: Any) -> None:
        n = Net(sg)
        x = n.x([5, 3])
        y = n.t([2, 2, 3])
        n.op("GATHER", [x, _ic(n, [[0, 1], [2, 5]])], [y], opts("GatherOptions", axis=0))
        n.done(y)
    _refusal(_model(tmp_path, build), "GATHER", "index 5 is out of range for axis 0 of size 5")


# ---------------------------------------------------------------- Gather with N-D constant indices (ONNX)
def _onnx_gather(xshape: list[int], idx: np.ndarray, axis: int) -> Any:
    from onnx import TensorProto, helper, numpy_helper

    ax = axis % len(xshape)
    out = xshape[:ax] + list(idx.shape) + xshape[ax + 1:]
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Gather", ["r", "i"], ["y"], axis=axis)]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, xshape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, out)],
                          [numpy_helper.from_array(idx.astype(np.int64), "i")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    return m


@pytest.mark.parametrize("xshape,idx_shape,axis", [([1, 120], (7, 16), 1), ([1, 4, 6, 5], (2, 3), -2),
                                                    ([3, 7, 5], (2, 2, 2), -1)])
def test_onnx_gather_nd_indices_against_onnxruntime(xshape, idx_shape, axis):
    ort = pytest.importorskip("onnxruntime")
    node_tests = pytest.importorskip("benchmarks.onnx_node_tests")
    rng = np.random.default_rng(len(xshape))
    size = xshape[axis % len(xshape)]
    idx = rng.integers(-size, size, idx_shape)  # negative indices count from the end
    m = _onnx_gather(xshape, idx, axis)
    x = rng.normal(0, 1, xshape).astype(np.float32)
    ref = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    row = node_tests.measure_case({"name": "gather_nd", "model": m.SerializeToString(), "data_sets": [([x], [ref])]})
    assert row.get("ok"), row.get("error") or row
    assert row["micro"] == "equal", row["micro"]
    assert min(row["db"]) >= 30.0, f"SQNR {row['db']} dB against onnxruntime float"


def test_onnx_gather_index_out_of_range_is_refused():
    from converters.importers.onnx import import_onnx

    with pytest.raises(UnsupportedModelError) as e:
        import_onnx(_onnx_gather([1, 6, 4], np.array([[0, 1], [-7, 2]]), 1))
    msg = str(e.value)
    assert "\n" not in msg and "Gather" in msg and "index -7 is out of range for axis 1 of size 6" in msg, msg
