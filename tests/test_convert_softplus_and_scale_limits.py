"""Softplus / Mish in int8 (bounded lowering) and the scale-ratio limits of tflite-micro's int8 kernels.

References: onnxruntime on the float ONNX model (float IR and int8 SQNR, via ``check_onnx``), tflite-micro
(micro must be bit-exact with it, and LiteRT within a few LSB).
"""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from test_import_ops_common import _check_micro, check_onnx, make_model

from converters.quantize import PRODUCT_LIMIT, RESCALE_LIMIT

SHAPE = (1, 8, 6, 6)
X = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(SHAPE))
Y = helper.make_tensor_value_info("y", TensorProto.FLOAT, list(SHAPE))

#: int8 SQNR floors (dB, LiteRT and QDQ ONNX against onnxruntime), a few dB under what the bounded lowering
#: reaches (measured: Softplus 47.4 / 47.3 / 53.7, Mish 40.5 / 42.4 / 41.5). The old log(1 + exp(x)) form
#: reached -5.3 / 38.9 / 0.3 (Softplus) and 27.0 / 35.0 / 40.9 (Mish) on LiteRT, 5-13 dB as QDQ ONNX.
FLOORS = {("Softplus", -10, 10): 44.0, ("Softplus", -3, 3): 44.0, ("Softplus", 0, 20): 50.0,
          ("Mish", -10, 10): 37.0, ("Mish", -3, 3): 39.0, ("Mish", 0, 20): 38.0}


def _c(name: str, arr: object) -> object:
    return numpy_helper.from_array(np.asarray(arr, np.float32), name)


def _exact_on_micro(res: object) -> None:
    if not res.tflm_ran:  # type: ignore[attr-defined]
        pytest.skip("tflite-micro is not installed")
    exact = res.micro_exact  # type: ignore[attr-defined]
    assert exact is True, "micro is not bit-exact with tflite-micro (or refused the model)"


@pytest.mark.parametrize("op,low,high", sorted(FLOORS))
def test_softplus_mish_int8_sqnr(op: str, low: float, high: float, tmp_path: object) -> None:
    model = make_model([helper.make_node(op, ["x"], ["y"])], [X], [Y], opset=18)
    res = check_onnx(model, tmp_path, SHAPE, low=low, high=high, min_sqnr=FLOORS[(op, low, high)])
    _exact_on_micro(res)


def test_conv_mish_conv_int8_sqnr(tmp_path: object) -> None:
    """YOLOv4-style conv -> Mish -> conv (the old lowering: 22.7 dB LiteRT, 5.2 dB QDQ; now 33.2 dB)."""
    rng = np.random.default_rng(5)
    w1 = _c("w1", rng.standard_normal((8, 8, 3, 3)) * 0.5)
    w2 = _c("w2", rng.standard_normal((8, 8, 1, 1)) * 0.4)
    model = make_model([helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1]),
                        helper.make_node("Mish", ["a"], ["b"]), helper.make_node("Conv", ["b", "w2"], ["y"])],
                       [X], [Y], [w1, w2], opset=18)
    _exact_on_micro(check_onnx(model, tmp_path, SHAPE, min_sqnr=30.0))


@pytest.mark.parametrize("op", ["Softplus", "Mish"])
def test_softplus_mish_float_graph_equals_onnxruntime_at_large_inputs(op: str, tmp_path: object) -> None:
    """|x| up to 100: exp(x) overflows float32 beyond 88, the bounded form must not."""
    import onnx
    import onnxruntime as ort

    from converters.calibrate import float_session, run_float
    from converters.importers.onnx import import_onnx

    path = str(tmp_path / "m.onnx")  # type: ignore[operator]
    onnx.save(make_model([helper.make_node(op, ["x"], ["y"])], [X], [Y], opset=18), path)
    graph = import_onnx(path)
    x = np.linspace(-100, 100, int(np.prod(SHAPE)), dtype=np.float32).reshape(SHAPE)
    want = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = run_float(float_session(graph), graph, graph.to_ir_layout("x", x))[graph.outputs[0]].transpose(0, 3, 1, 2)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def _micro_accepts(model: object, tmp_path: object) -> None:
    """Convert ``model`` as ``check_onnx`` does and load it with micro's .tflite checks first: outside the
    limits they fail with one clear error, where LiteRT and tflite-micro abort the whole test process."""
    import onnx

    import edge_runtime
    from converters.calibrate import calibrate, float_session
    from converters.calibration_data import open_calibration
    from converters.importers.onnx import import_onnx
    from converters.quantize import plan_quantization
    from converters.writers.tflite import write_tflite

    path = str(tmp_path / "pre.onnx")  # type: ignore[operator]
    onnx.save(model, path)
    graph = import_onnx(path)
    data = np.random.default_rng(0).uniform(-1, 1, (16, 1) + SHAPE[1:]).astype(np.float32)
    ranges = calibrate(graph, open_calibration(data, graph.source_shape("x"), "x"), "minmax",
                       session=float_session(graph))
    out = str(tmp_path / "pre_int8.tflite")  # type: ignore[operator]
    write_tflite(graph, plan_quantization(graph, ranges), out)
    edge_runtime.load(out, backend="micro")


def _loads_then_exact(res: object, low: float = -1.0, high: float = 1.0) -> None:
    """micro's .tflite checks accept the model (a clean error, not tflite-micro aborting the test process,
    when the scales are outside the limits), then micro == tflite-micro on random inputs."""
    import edge_runtime
    from converters.report import TFLiteRunner

    edge_runtime.load(res.tflite_path, backend="micro")  # type: ignore[attr-defined]
    xs = np.random.default_rng(1).uniform(low, high, (4,) + SHAPE).astype(np.float32)
    path, graph = res.tflite_path, res.graph  # type: ignore[attr-defined]
    tflm_ran, exact = _check_micro(path, TFLiteRunner(path, preserve=True), graph, xs)
    if not tflm_ran:
        pytest.skip("tflite-micro is not installed")
    assert exact is True, "micro is not bit-exact with tflite-micro"


def _ratios(res: object, kind: str) -> list[float]:
    """max input scale / output scale of every ``kind`` op in the plan."""
    plan, graph = res.plan, res.graph  # type: ignore[attr-defined]
    out = []
    for op in graph.ops:
        if op.kind == kind:
            s_in = max(plan.activations[i].scale for i in op.inputs if i in plan.activations)
            out.append(s_in / plan.activations[op.outputs[0]].scale)
    return out


def test_add_of_cancelling_wide_inputs_stays_within_tflm_limits(tmp_path: object) -> None:
    """x*1e4 + x*(-9999.99): inputs ~1e6x wider than the output, beyond tflite-micro's ADD limit; the output
    scale is widened so the model loads and runs on micro == tflite-micro (the value itself is lost to the
    inputs' int8 step, as in any int8 runtime)."""
    model = make_model([helper.make_node("Mul", ["x", "a"], ["p"]), helper.make_node("Mul", ["x", "b"], ["n"]),
                        helper.make_node("Add", ["p", "n"], ["y"])], [X], [Y],
                       [_c("a", [1e4]), _c("b", [-9999.99])], opset=13)
    _micro_accepts(model, tmp_path)
    res = check_onnx(model, tmp_path, SHAPE, min_sqnr=-1e9, atol=5e-3, tflm=False)
    ratios = _ratios(res, "ADD")
    assert ratios and max(ratios) < RESCALE_LIMIT, ratios
    assert max(ratios) > RESCALE_LIMIT / 2, "the output was widened further than the limit needs"
    _loads_then_exact(res)


def test_add_of_a_tiny_input_widens_that_input(tmp_path: object) -> None:
    """x*1000 + x*1e-4: the output is ~1e7x wider than one input (the other direction of the same limit)."""
    model = make_model([helper.make_node("Mul", ["x", "a"], ["p"]), helper.make_node("Mul", ["x", "b"], ["t"]),
                        helper.make_node("Add", ["p", "t"], ["y"])], [X], [Y],
                       [_c("a", [1000.0]), _c("b", [1e-4])], opset=13)
    _micro_accepts(model, tmp_path)
    res = check_onnx(model, tmp_path, SHAPE, min_sqnr=40.0, tflm=False)
    plan, graph = res.plan, res.graph
    add = next(op for op in graph.ops if op.kind == "ADD")
    s_out = plan.activations[add.outputs[0]].scale
    assert all(s_out / plan.activations[i].scale < RESCALE_LIMIT for i in add.inputs)
    for op in graph.ops:  # the MUL writing the widened input stays within its own (product) limit
        if op.kind == "MUL":
            ins = [plan.activations.get(i, plan.operands.get(i)).scale for i in op.inputs]
            assert ins[0] * ins[1] / plan.activations[op.outputs[0]].scale < PRODUCT_LIMIT
    _loads_then_exact(res)
