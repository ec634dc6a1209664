"""The ONNX importer and both writers on a hand-built graph with every supported op family.

The model is built with ``onnx.helper`` (no torch): asymmetric stride-2 padding (becomes PAD +
VALID conv), BatchNormalization (folded), Clip(0, 6), depthwise conv, Concat, Sigmoid, Tanh,
MaxPool, AveragePool counting padding, a Cast in a constant chain (folded by ONNX Runtime's basic
optimizer), GlobalAveragePool, Flatten, Gemm and Softmax.
References: the float model in onnxruntime; tflite-micro for the written .tflite.
"""
from __future__ import annotations

import numpy as np
import pytest

from converters.pipeline import convert_model
from converters.report import TFLiteRunner
from edge_runtime.formats.tflite import TFLiteModel
from helpers import micro_available


def _build(path) -> None:  # type: ignore[no-untyped-def]
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = []

    def w(name: str, *shape: int, scale: float = 0.3) -> str:
        inits.append(numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name))
        return name

    def c(name: str, arr: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(arr, name))
        return name

    n = helper.make_node
    nodes = [
        n("Conv", ["x", w("w1", 8, 3, 3, 3), w("b1", 8)], ["c1"], name="conv1", strides=[2, 2], pads=[1, 1, 1, 1],
          kernel_shape=[3, 3]),
        n("BatchNormalization", ["c1", c("g", np.full(8, 1.5, np.float32)), w("be", 8), w("mu", 8),
                                 c("var", np.full(8, 0.8, np.float32))], ["bn"], name="bn1"),
        n("Clip", ["bn", c("zero", np.array(0, np.float32)), c("six", np.array(6, np.float32))], ["r1"], name="relu6"),
        n("Conv", ["r1", w("w2", 8, 1, 3, 3), w("b2", 8)], ["dw"], name="dwconv", group=8, pads=[1, 1, 1, 1],
          kernel_shape=[3, 3]),
        n("Concat", ["r1", "dw"], ["cat"], name="concat", axis=1),
        n("Conv", ["cat", w("w3", 8, 16, 1, 1), w("b3", 8)], ["c3"], name="pw", kernel_shape=[1, 1]),
        n("Sigmoid", ["c3"], ["sg"], name="sigmoid"),
        n("Constant", [], ["pads32"], name="pads_const",
          value=numpy_helper.from_array(np.array([0, 0, 0, 0, 0, 0, 1, 1], np.int32))),
        n("Cast", ["pads32"], ["pads64"], name="cast_pads", to=TensorProto.INT64),
        n("Pad", ["sg", "pads64"], ["pd"], name="pad"),
        n("Conv", ["pd", w("w4", 8, 8, 3, 3), w("b4", 8)], ["c4"], name="conv4", strides=[2, 2], kernel_shape=[3, 3]),
        n("Tanh", ["c4"], ["th"], name="tanh"),
        n("MaxPool", ["th"], ["mp"], name="maxpool", kernel_shape=[2, 2], strides=[1, 1]),
        n("AveragePool", ["mp"], ["ap"], name="avgpool", kernel_shape=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1),
        n("GlobalAveragePool", ["ap"], ["gp"], name="gap"),
        n("Flatten", ["gp"], ["fl"], name="flatten", axis=1),
        n("Gemm", ["fl", w("wf", 5, 8, scale=2.0), w("bf", 5)], ["logits"], name="fc", transB=1),
        n("Softmax", ["logits"], ["y"], name="softmax", axis=-1),
    ]
    g = helper.make_graph(nodes, "allops", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    onnx.save(model, path)


@pytest.fixture(scope="module")
def allops(tmp_path_factory):
    d = tmp_path_factory.mktemp("allops")
    _build(d / "allops.onnx")
    rng = np.random.default_rng(1)
    x = rng.random((96, 1, 3, 16, 16), dtype=np.float32)
    res = convert_model(d / "allops.onnx", "rpi4-4gb", x[:48], d / "out", held_out=x[48:])
    return d, x, res


def test_all_op_families_convert_and_match_float(allops):
    _, _, res = allops
    ops = res.report["ops"]
    assert ops["PAD"] >= 2 and ops["DEPTHWISE_CONV_2D"] == 1 and ops["CONCATENATION"] == 1
    assert ops["LOGISTIC"] == 1 and ops["TANH"] == 1 and ops["MAX_POOL_2D"] == 1
    for k in ("tflite", "onnx"):
        s = res.report["held_out"][k]
        assert s["output_sqnr_db"] > 25, (k, s)
        assert s["top1_agreement_with_float"] >= 0.9


def test_fixed_and_shared_parameters(allops):
    _, _, res = allops
    m = TFLiteModel.open(res.tflite_path)
    t = m.main.tensors
    for op in m.main.operators:
        q_out = t[op.outputs[0]].quantization
        if op.name in ("LOGISTIC", "SOFTMAX"):
            assert (q_out.scale[0], q_out.zero_point[0]) == (np.float32(1 / 256), -128)
        if op.name == "TANH":
            assert (q_out.scale[0], q_out.zero_point[0]) == (np.float32(1 / 128), 0)
        if op.name in ("CONCATENATION", "PAD", "MAX_POOL_2D", "AVERAGE_POOL_2D"):
            for i in op.inputs:
                if t[i].data is None:
                    assert t[i].quantization.scale[0] == q_out.scale[0]
                    assert t[i].quantization.zero_point[0] == q_out.zero_point[0]


def test_reference_float_matches_onnxruntime_on_the_original(allops):
    """The IR (run as float ONNX) equals the original model: layout, BN folding and padding are exact."""
    import onnxruntime as ort

    from converters.calibrate import float_session, run_float

    d, x, res = allops
    orig = ort.InferenceSession(str(d / "allops.onnx"), providers=["CPUExecutionProvider"])
    sess = float_session(res.graph)
    for xi in x[:8]:
        want = orig.run(None, {"x": xi})[0]
        got = run_float(sess, res.graph, res.graph.to_ir_layout("x", xi))["y"]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_allops_runs_in_tflite_micro(allops):
    runtime = pytest.importorskip("tflite_micro.python.tflite_micro.runtime",
                                  reason="tflite-micro is a dev dependency on x86_64")
    import edge_runtime

    _, x, res = allops
    tflm = runtime.Interpreter.from_file(res.tflite_path)
    lite = TFLiteRunner(res.tflite_path, preserve=True)
    micro = edge_runtime.load(res.tflite_path, backend="micro") if micro_available() else None
    for xi in x[:16]:
        q = TFLiteRunner._q(xi.transpose(0, 2, 3, 1), lite.inp)
        tflm.set_input(q, 0)
        tflm.invoke()
        ref = tflm.get_output(0)
        assert np.abs(ref.astype(int) - lite.run_raw(q).astype(int)).max() <= 2
        if micro is not None:
            assert np.array_equal(micro.run(q)[0], ref)


def test_matmul_plus_bias_add_folds_into_fully_connected(tmp_path):
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(2)
    w = rng.standard_normal((6, 4)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["mm"], name="matmul"),
             helper.make_node("Add", ["mm", "b"], ["ad"], name="bias_add"),
             helper.make_node("Relu", ["ad"], ["y"], name="relu")]
    g = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
                          [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), tmp_path / "mlp.onnx")
    x = rng.standard_normal((64, 1, 6)).astype(np.float32)
    res = convert_model(tmp_path / "mlp.onnx", "rpi4-4gb", x, tmp_path / "o", formats=("onnx",))
    assert res.report["ops"] == {"FULLY_CONNECTED": 1}
    assert res.graph.ops[0].act == "RELU"
    ref = ort.InferenceSession(str(tmp_path / "mlp.onnx"), providers=["CPUExecutionProvider"])
    q = ort.InferenceSession(res.onnx_path, providers=["CPUExecutionProvider"])
    qi, qo = res.plan.activations["x"], res.plan.activations["y"]
    for xi in x[:16]:
        want = ref.run(None, {"x": xi})[0]
        got = qo.dequantize(q.run(None, {"x": qi.quantize(xi)})[0])
        assert np.abs(got - want).max() <= 3 * qo.scale + 2 * qi.scale * np.abs(w).sum(0).max()
    assert res.tflite_path is None and not list((tmp_path / "o").glob("*.tflite"))
