"""ONNX math ops lowered to ops tflite-micro runs: the inverse trigonometric and hyperbolic functions, Tan,
Sinh, Cosh (``onnx_ops.trig``, ``onnx_ops.hyperbolic``), Det, ReverseSequence and OneHot.

Each case converts a small hand-built model (random shape, values drawn over the op's domain) and checks,
through :func:`test_import_ops_common.check_onnx`: the float IR against onnxruntime on the original model,
the int8 SQNR of LiteRT and of the QDQ model (onnxruntime) against onnxruntime's float output, and micro
bit-exact with tflite-micro (``np.array_equal``).
"""
from __future__ import annotations

import numpy as np
import pytest
from helpers import micro_available
from test_import_ops_common import check_onnx, make_model

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

#: op -> (input low, input high, min SQNR dB). Ranges reach far beyond 1 where the domain allows (the
#: lowerings keep their int8 intermediates bounded, so wide ranges keep the small values); the SQNR floors
#: sit ~4 dB under what each measured (Tan's is bounded by its own steepness near +-1.4: one int8 step of
#: the input moves tan(1.4) by 0.2, four output steps).
UNARY = {
    "Atan": (-20.0, 20.0, 38.0),
    "Asin": (-1.0, 1.0, 37.0),
    "Acos": (-1.0, 1.0, 42.0),
    "Tan": (-1.4, 1.4, 24.0),
    "Sinh": (-3.0, 3.0, 32.0),
    "Cosh": (-3.0, 3.0, 34.0),
    "Asinh": (-50.0, 50.0, 38.0),
    "Acosh": (1.0, 20.0, 36.0),
    "Atanh": (-0.99, 0.99, 32.0),
}


def _shape(seed: int) -> tuple[int, ...]:
    rng = np.random.default_rng(seed)
    rank = int(rng.integers(1, 5))
    return (1,) + tuple(int(v) for v in rng.integers(2, 7, size=rank - 1)) if rank > 1 else (int(rng.integers(3, 9)),)


def _unary_model(op: str, shape: tuple[int, ...]):
    return make_model([helper.make_node(op, ["x"], ["y"])],
                      [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shape))])


def _exact(r) -> None:
    assert r.tflm_ran
    if micro_available():
        assert r.micro_exact, "micro differs from tflite-micro"


@pytest.mark.parametrize("op", sorted(UNARY))
def test_math_unary(op: str, tmp_path) -> None:
    lo, hi, floor = UNARY[op]
    seed = sorted(UNARY).index(op)
    shape = _shape(seed)
    r = check_onnx(_unary_model(op, shape), tmp_path, shape, low=lo, high=hi, min_sqnr=floor, atol=2e-4, seed=seed)
    _exact(r)
    kinds = {o.kind for o in r.graph.ops}
    assert not kinds & {"GELU", "RELU_N1_TO_1"}, kinds  # only ops every runtime has


def _float_ir(op: str, xs: np.ndarray, tmp_path) -> np.ndarray:
    """The converted float IR of a one-op model run on ``xs`` (a 1-D input)."""
    from converters.calibrate import float_session, run_float
    from converters.importers.onnx import import_onnx

    path = str(tmp_path / f"{op}.onnx")
    onnx.save(_unary_model(op, xs.shape), path)
    graph = import_onnx(path)
    return run_float(float_session(graph), graph, xs.astype(np.float32))[graph.outputs[0]]


def test_out_of_domain_inputs_give_the_nearest_end(tmp_path) -> None:
    """ONNX gives NaN outside the domain; the lowerings give the value at the nearer end, finite."""
    xs = np.array([-3.0, -1.5, 1.5, 3.0], np.float32)
    np.testing.assert_allclose(_float_ir("Asin", xs, tmp_path), np.pi / 2 * np.sign(xs), atol=2e-3)
    np.testing.assert_allclose(_float_ir("Acos", xs, tmp_path), np.where(xs < 0, np.pi, 0.0), atol=2e-3)
    np.testing.assert_allclose(_float_ir("Acosh", np.array([-2.0, 0.0, 0.5], np.float32), tmp_path), 0.0, atol=1e-5)
    at = _float_ir("Atanh", xs, tmp_path)  # log(2) - log(MIN_LOG_ARG), halved
    np.testing.assert_allclose(at, np.sign(xs) * 0.5 * np.log(2 / (2 / 255)), rtol=1e-4)


def test_atan_and_asinh_are_accurate_far_out(tmp_path) -> None:
    """The float lowerings themselves (before int8) over 1e-3 .. 1e4."""
    xs = np.concatenate([-np.geomspace(1e-3, 1e4, 40), np.geomspace(1e-3, 1e4, 40)]).astype(np.float32)
    np.testing.assert_allclose(_float_ir("Atan", xs, tmp_path), np.arctan(xs), atol=1.5e-4)
    np.testing.assert_allclose(_float_ir("Asinh", xs, tmp_path), np.arcsinh(xs), atol=1e-5, rtol=1e-5)


def _int8(model, tmp_path, data: np.ndarray):
    """``model`` converted to int8 with ``data`` (``[samples, *input shape]``) as calibration:
    (graph, .tflite path)."""
    from converters.calibrate import calibrate, float_session
    from converters.calibration_data import open_calibration
    from converters.importers.onnx import import_onnx
    from converters.quantize import plan_quantization
    from converters.writers.tflite import write_tflite

    path = str(tmp_path / "model.onnx")
    onnx.save(model, path)
    graph = import_onnx(path, input_shapes={"x": tuple(data.shape[1:])})
    calib = open_calibration(data, graph.source_shape(graph.inputs[0]), graph.inputs[0])
    plan = plan_quantization(graph, calibrate(graph, calib, "minmax", session=float_session(graph)))
    tfl = str(tmp_path / "model_int8.tflite")
    write_tflite(graph, plan, tfl)
    return graph, tfl


def _tflm(tfl: str, q: np.ndarray) -> np.ndarray:
    """tflite-micro's raw output for the raw input ``q``; micro must give the same (``np.array_equal``)."""
    from tflite_micro.python.tflite_micro import runtime

    tflm = runtime.Interpreter.from_file(tfl, arena_size=1 << 20)
    tflm.set_input(q, 0)
    tflm.invoke()
    ref = tflm.get_output(0)
    if micro_available():
        import edge_runtime

        assert np.array_equal(edge_runtime.load(tfl, backend="micro").run(q)[0], ref), "micro differs from tflite-micro"
    return ref


def test_tan_at_its_pole_is_the_top_of_the_range(tmp_path) -> None:
    """The input range [0, pi/2 * 255/200] puts pi/2 on the int8 grid, where int8 cos is 0: the DIV gets
    +-MIN_COS instead (an infinity quantizes to -128 in tflite-micro, the bottom of the range), so tflite-micro,
    micro and LiteRT all give the top of the output range there."""
    from converters.report import TFLiteRunner

    hi = np.pi / 2 * 255 / 200
    grid = np.linspace(0.0, hi, 256, dtype=np.float32)
    data = np.stack([grid[k::8] for k in range(8)])[:, None, :]  # [8, 1, 32], min 0 and max hi
    graph, tfl = _int8(_unary_model("Tan", (1, 32)), tmp_path, data)
    lite = TFLiteRunner(tfl, preserve=True)
    s, z = lite.inp["quantization"]
    q = np.round(np.array([[0.5, 1.0, np.pi / 2 - 0.01, np.pi / 2] + [0.0] * 28]) / s + z).astype(np.int8)
    assert abs((int(q[0, 3]) - z) * s - np.pi / 2) < 1e-4  # pi/2 is on the grid
    ref = _tflm(tfl, q)
    assert np.abs(ref.astype(int) - lite.run_raw(q).astype(int)).max() <= 3
    assert ref[0, 3] >= 120, ref[0, :4]  # the top of the range, not the bottom an infinity gives
    assert ref[0, 0] < ref[0, 1] < ref[0, 2] <= ref[0, 3]


def _model(node, in_shape: tuple[int, ...], out_shape: tuple[int, ...], inits: list = ()):
    return make_model([node], [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape))],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out_shape))], list(inits))


@pytest.mark.parametrize("shape", [(1, 2, 2), (1, 3, 3), (1, 2, 4, 4)])
def test_det(shape: tuple[int, ...], tmp_path) -> None:
    r = check_onnx(_model(helper.make_node("Det", ["x"], ["y"]), shape, shape[:-2]), tmp_path, shape,
                   low=-1.0, high=1.0, min_sqnr={2: 30.0, 3: 30.0, 4: 20.0}[shape[-1]])
    _exact(r)


def test_det_refuses_large_matrices(tmp_path) -> None:
    from converters.importers.onnx import import_onnx
    from edge_runtime.errors import UnsupportedModelError

    path = str(tmp_path / "det5.onnx")
    onnx.save(_model(helper.make_node("Det", ["x"], ["y"]), (1, 5, 5), (1,)), path)
    with pytest.raises(UnsupportedModelError, match=r"Det of 5x5 matrices is not supported") as e:
        import_onnx(path)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("shape,lens", [((1, 6, 4), [4]), ((1, 5, 3, 2), [5]), ((1, 7), [0])])
def test_reverse_sequence_batch_major(shape: tuple[int, ...], lens: list[int], tmp_path) -> None:
    lens_t = numpy_helper.from_array(np.array(lens, np.int64), "lens")
    node = helper.make_node("ReverseSequence", ["x", "lens"], ["y"], batch_axis=0, time_axis=1)
    r = check_onnx(_model(node, shape, shape, [lens_t]), tmp_path, shape, min_sqnr=40.0)
    _exact(r)


def test_reverse_sequence_time_major(tmp_path) -> None:
    """time_axis 0, batch_axis 1: int8 output equal to the reversed int8 input (a permutation keeps the
    input's quantization), in tflite-micro, micro and against onnxruntime."""
    import onnxruntime as ort

    lens = np.array([4, 1, 3], np.int64)
    node = helper.make_node("ReverseSequence", ["x", "lens"], ["y"], batch_axis=1, time_axis=0)
    model = _model(node, (5, 3, 2), (5, 3, 2), [numpy_helper.from_array(lens, "lens")])
    rng = np.random.default_rng(3)
    data = rng.uniform(-1, 1, (8, 5, 3, 2)).astype(np.float32)
    graph, tfl = _int8(model, tmp_path, data)
    from converters.report import TFLiteRunner

    lite = TFLiteRunner(tfl, preserve=True)
    s, z = lite.inp["quantization"]
    q = np.clip(np.round(data[0] / s + z), -128, 127).astype(np.int8)
    got = _tflm(tfl, q)
    xq = ((q.astype(np.float32) - z) * s).astype(np.float32)
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": xq})[0]
    so, zo = lite.outs[0]["quantization"]
    np.testing.assert_allclose((got.astype(np.float32) - zo) * so, want, atol=1e-6)


def _one_hot_model(shape: tuple[int, ...], depth: int, values: tuple[float, float], axis: int):
    out = list(shape)
    out.insert(axis % (len(shape) + 1), depth)
    inits = [numpy_helper.from_array(np.array(depth, np.float32), "depth"),
             numpy_helper.from_array(np.array(values, np.float32), "values")]
    node = helper.make_node("OneHot", ["x", "depth", "values"], ["y"], axis=axis)
    return _model(node, shape, tuple(out), inits)


@pytest.mark.parametrize("shape,depth,axis", [((1, 6), 5, -1), ((1, 3, 2), 4, 1), ((1, 2, 3), 3, -2)])
def test_one_hot_float_indices(shape: tuple[int, ...], depth: int, axis: int, tmp_path) -> None:
    """Integer-valued float indices in [-depth - 1, depth] (negative ones count from the end, out-of-range
    ones give a row of ``off``): the int8 output is exactly onnxruntime's in tflite-micro and micro."""
    import onnxruntime as ort

    from converters.report import TFLiteRunner

    model = _one_hot_model(shape, depth, (-0.5, 2.0), axis)
    rng = np.random.default_rng(depth)
    data = rng.integers(-depth - 1, depth + 1, (8,) + shape).astype(np.float32)
    graph, tfl = _int8(model, tmp_path, data)
    assert "SELECT_V2" in {o.kind for o in graph.ops}
    lite = TFLiteRunner(tfl, preserve=True)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for x in data:
        want = sess.run(None, {"x": x})[0]
        got = lite.run(graph.to_ir_layout(graph.inputs[0], x))[0]
        np.testing.assert_allclose(got.reshape(want.shape) if got.ndim != 4 else got.transpose(0, 3, 1, 2), want,
                                   atol=0.01)
        _tflm(tfl, TFLiteRunner._q(graph.to_ir_layout(graph.inputs[0], x), lite.inp))


@pytest.mark.parametrize("shape,axis,exclusive,reverse", [
    ((1, 8, 6), 2, 0, 0), ((1, 8, 6), -1, 1, 0), ((1, 5, 3), 1, 0, 1), ((1, 4, 3, 2), 2, 1, 1),
    ((1, 20), 1, 0, 0), ((1, 3, 19), 2, 1, 1)])  # the last two: longer than SEQUENTIAL_MAX (log-depth scan)
def test_cumprod(shape: tuple[int, ...], axis: int, exclusive: int, reverse: int, tmp_path) -> None:
    """CumProd (opset 26: read as opset 22 with the node kept) against onnxruntime. Several values per position:
    each running product has its own calibrated range, which 24 samples of one value each cover poorly."""
    axis_t = numpy_helper.from_array(np.array(axis, np.int64), "axis")
    node = helper.make_node("CumProd", ["x", "axis"], ["y"], exclusive=exclusive, reverse=reverse)
    model = make_model([node], [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shape))], [axis_t], opset=26)
    r = check_onnx(model, tmp_path, shape, low=0.6, high=1.4, min_sqnr=30.0 if shape[-1] < 19 else 20.0)
    _exact(r)


def test_cumprod_of_growing_values_keeps_the_small_ones(tmp_path) -> None:
    """1..5 (onnx's own case): the running products keep their own int8 ranges, so the first positions are
    not rounded to the step of the largest product (a shared range put 1 at 1.68, 14 dB)."""
    from converters.report import TFLiteRunner

    axis_t = numpy_helper.from_array(np.array(0, np.int64), "axis")
    model = make_model([helper.make_node("CumProd", ["x", "axis"], ["y"])],
                       [helper.make_tensor_value_info("x", TensorProto.FLOAT, [5])],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, [5])], [axis_t], opset=26)
    x = np.arange(1, 6, dtype=np.float32)
    data = np.stack([x * s for s in (1.0, 0.9, 1.05, 1.1)])
    graph, tfl = _int8(model, tmp_path, data)
    got = TFLiteRunner(tfl).run(x)[0]
    assert np.abs(got - np.cumprod(x)).max() <= 1.6, got  # two steps of the output (range 0..193)
    assert np.abs(got[:3] - [1, 2, 6]).max() <= 0.4, got


def _scatter_model(cache: tuple[int, ...], update: np.ndarray, idx: list[int], mode: str, axis: int = -2):
    inits = [numpy_helper.from_array(update.astype(np.float32), "update"),
             numpy_helper.from_array(np.array(idx, np.int64), "idx")]
    node = helper.make_node("TensorScatter", ["x", "update", "idx"], ["y"], mode=mode, axis=axis)
    return make_model([node], [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(cache))],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(cache))], inits, opset=24)


@pytest.mark.parametrize("cache,seq,idx,mode", [((1, 2, 6, 4), 2, [3], "linear"), ((1, 2, 6, 4), 3, [4], "circular"),
                                                ((1, 5, 3), 2, [0], "linear")])
def test_tensor_scatter(cache: tuple[int, ...], seq: int, idx: list[int], mode: str, tmp_path) -> None:
    """TensorScatter (opset 24) with a constant update and write index, against onnxruntime."""
    ushape = list(cache)
    ushape[-2] = seq
    update = np.random.default_rng(seq).uniform(-1, 1, ushape)
    r = check_onnx(_scatter_model(cache, update, idx, mode), tmp_path, cache, min_sqnr=38.0)
    _exact(r)


def test_tensor_scatter_refuses_a_write_past_the_end(tmp_path) -> None:
    from converters.importers.onnx import import_onnx
    from edge_runtime.errors import UnsupportedModelError

    path = str(tmp_path / "ts.onnx")
    onnx.save(_scatter_model((1, 5, 3), np.zeros((1, 2, 3)), [4], "linear"), path)
    with pytest.raises(UnsupportedModelError, match=r"write_indices \[4\] must hold 1 values with index \+ 2 <= 5"):
        import_onnx(path)
