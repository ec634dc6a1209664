"""`edge-convert inspect` on real .tflite models (checked against LiteRT) and on ONNX models
(checked against onnxruntime), plus its errors on bad files."""
from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from converters.cli import main as convert_main
from converters.commands.inspect import inspect_model
from edge_runtime.errors import ModelFormatError

MLPERF = ["kws_ref_model.tflite", "vww_96_int8.tflite", "pretrainedResnet_quant.tflite", "ad01_int8.tflite",
          "str_ww_ref_model.tflite", "kws_ref_model_float32.tflite", "ad01_fp32.tflite"]


@pytest.mark.parametrize("name", MLPERF)
def test_tflite_matches_litert(mlperf_models: Path, name: str) -> None:
    """Ops, tensor count and I/O quantization equal what LiteRT's interpreter reports."""
    from ai_edge_litert.interpreter import Interpreter

    path = str(mlperf_models / name)
    info = inspect_model(path)
    interp = Interpreter(path)
    assert info["format"] == "tflite"
    assert info["ops"] == dict(Counter(op["op_name"] for op in interp._get_ops_details()))
    assert info["tensor_count"] == len(interp.get_tensor_details())
    for ours, ref in ((info["inputs"], interp.get_input_details()), (info["outputs"], interp.get_output_details())):
        assert [t["name"] for t in ours] == [r["name"] for r in ref]
        for t, r in zip(ours, ref):
            assert t["shape"] == list(r["shape"])
            assert t["dtype"] == np.dtype(r["dtype"]).name
            scale, zp = r["quantization"]
            if scale:
                assert t["quantization"] == {"scale": pytest.approx(scale, rel=1e-7), "zero_point": zp}
            else:
                assert t["quantization"] is None


def test_kws_documented_facts(mlperf_models: Path) -> None:
    """Golden data: ../shared/models/README.md's table for kws_ref_model.tflite."""
    info = inspect_model(str(mlperf_models / "kws_ref_model.tflite"))
    assert info["ops"] == {"CONV_2D": 5, "DEPTHWISE_CONV_2D": 4, "AVERAGE_POOL_2D": 1, "FULLY_CONNECTED": 1,
                           "RESHAPE": 1, "SOFTMAX": 1}
    assert info["inputs"][0]["quantization"]["zero_point"] == 83
    assert info["outputs"][0]["quantization"] == {"scale": 1 / 256, "zero_point": -128}
    # weights: every constant buffer, which the file must contain
    assert 0 < info["weight_bytes"] < info["file_bytes"]


def _qdq_onnx(path: Path) -> None:
    """A QDQ int8 model: Q -> DQ -> Conv(weights DQ) -> Relu -> Q -> DQ, plus a MatMul."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = rng.integers(-127, 127, size=(4, 3, 3, 3), dtype=np.int8)
    inits = [
        numpy_helper.from_array(np.array(0.02, np.float32), "in_scale"),
        numpy_helper.from_array(np.array(-3, np.int8), "in_zp"),
        numpy_helper.from_array(w, "w_q"),
        numpy_helper.from_array(np.full(4, 0.01, np.float32), "w_scale"),
        numpy_helper.from_array(np.zeros(4, np.int8), "w_zp"),
        numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "bias"),
        numpy_helper.from_array(np.array(0.05, np.float32), "out_scale"),
        numpy_helper.from_array(np.array(-128, np.int8), "out_zp"),
        numpy_helper.from_array(rng.standard_normal((4 * 6 * 6, 5)).astype(np.float32), "fc_w"),
        numpy_helper.from_array(np.array([0, -1], np.int64), "flat_shape"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "in_scale", "in_zp"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "in_scale", "in_zp"], ["xd"]),
        helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zp"], ["wd"], axis=0),
        helper.make_node("Conv", ["xd", "wd", "bias"], ["c"]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Reshape", ["r", "flat_shape"], ["f"]),
        helper.make_node("MatMul", ["f", "fc_w"], ["m"]),
        helper.make_node("QuantizeLinear", ["m", "out_scale", "out_zp"], ["mq"]),
        helper.make_node("DequantizeLinear", ["mq", "out_scale", "out_zp"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "tiny_qdq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 5])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def test_onnx_qdq_matches_onnxruntime(tmp_path: Path) -> None:
    import onnxruntime as ort

    path = tmp_path / "tiny.onnx"
    _qdq_onnx(path)
    info = inspect_model(str(path))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert info["format"] == "onnx"
    assert [t["name"] for t in info["inputs"]] == [i.name for i in sess.get_inputs()]
    assert [t["name"] for t in info["outputs"]] == [o.name for o in sess.get_outputs()]
    assert info["inputs"][0]["shape"] == list(sess.get_inputs()[0].shape) == ["batch", 3, 8, 8]
    assert info["ops"] == {"DequantizeLinear": 3, "QuantizeLinear": 2, "Conv": 1, "MatMul": 1, "Relu": 1,
                           "Reshape": 1}
    assert info["inputs"][0]["quantization"] == {"scale": pytest.approx(0.02), "zero_point": -3,
                                                 "storage_dtype": "int8"}
    assert info["outputs"][0]["quantization"]["zero_point"] == -128
    # weights: 108 int8 w + 4*4 w_scale + 4 w_zp + 16 bias + 144*5*4 fc + 16 shape + 2 float scales + 2 int8 zps
    assert info["weight_bytes"] == 108 + 16 + 4 + 16 + 144 * 5 * 4 + 16 + 8 + 2
    # tensors: 10 initializers, input x, and 9 node outputs (y among them)
    assert info["tensor_count"] == 20
    # the model really runs with the described input
    out = sess.run(None, {"x": np.zeros((2, 3, 8, 8), np.float32)})[0]
    assert out.shape == (2, 5)


def test_cli_text_and_json(mlperf_models: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(mlperf_models / "ad01_int8.tflite")
    assert convert_main(["inspect", path]) == 0
    text = capsys.readouterr().out
    assert "format:       tflite" in text and "FULLY_CONNECTED" in text and "x10" in text
    assert "scale 0.391015, zero point 89" in text
    assert convert_main(["inspect", path, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ops"] == {"FULLY_CONNECTED": 10}


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "converters.cli", "inspect", *args],
                          capture_output=True, text=True, timeout=120)


def test_bad_files_give_one_clean_error(mlperf_models: Path, tmp_path: Path) -> None:
    kws = (mlperf_models / "kws_ref_model.tflite").read_bytes()
    cases = {
        "empty.tflite": (b"", "the file is empty"),
        "truncated.tflite": (kws[: len(kws) // 3], "not a valid TFLite model"),
        "garbage.onnx": (bytes(range(256)) * 8, "not a valid ONNX model"),
        "renamed.onnx": (kws, "is a TFLite flatbuffer"),
        "text.tflite": (b"hello world, not a model", "not a TFLite model"),
    }
    for name, (data, problem) in cases.items():
        p = tmp_path / name
        p.write_bytes(data)
        with pytest.raises(ModelFormatError, match=problem):
            inspect_model(str(p))
    with pytest.raises(ModelFormatError, match="is a directory"):
        inspect_model(str(tmp_path))
    with pytest.raises(ModelFormatError, match="no such file"):
        inspect_model(str(tmp_path / "missing.tflite"))
    r = _run_cli(str(tmp_path / "truncated.tflite"))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 1 and "truncated.tflite" in r.stderr



def test_onnx_int8_io_model(tmp_path: Path) -> None:
    """An int8-input QDQ model: the input's scale/zero point come from the DequantizeLinear that reads it;
    onnxruntime (reference) runs it with int8 input and output."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(np.array(0.5, np.float32), "s"), numpy_helper.from_array(np.array(3, np.int8), "z")]
    nodes = [helper.make_node("DequantizeLinear", ["x", "s", "z"], ["xf"]),
             helper.make_node("Relu", ["xf"], ["r"]),
             helper.make_node("QuantizeLinear", ["r", "s", "z"], ["y"])]
    g = helper.make_graph(nodes, "io8", [helper.make_tensor_value_info("x", TensorProto.INT8, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.INT8, [1, 4])], inits)
    path = tmp_path / "io8.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    info = inspect_model(str(path))
    assert info["inputs"][0]["dtype"] == "int8" == info["outputs"][0]["dtype"]
    assert info["inputs"][0]["quantization"] == {"scale": 0.5, "zero_point": 3, "storage_dtype": "int8"}
    assert info["outputs"][0]["quantization"]["zero_point"] == 3
    out = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"x": np.array([[-5, 3, 4, 100]], np.int8)})[0]
    assert out.dtype == np.int8 and np.array_equal(out, [[3, 3, 4, 100]])


def test_onnx_weights_in_constant_nodes_are_counted(tmp_path: Path) -> None:
    """Weights held by Constant nodes (tensor and list attributes) count as weights, like initializers."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    w = rng.standard_normal((64, 32, 3, 3)).astype(np.float32)
    b = rng.standard_normal(64).astype(np.float16)
    nodes = [helper.make_node("Constant", [], ["w"], value=numpy_helper.from_array(w)),
             helper.make_node("Constant", [], ["b16"], value=numpy_helper.from_array(b)),
             helper.make_node("Cast", ["b16"], ["b"], to=TensorProto.FLOAT),
             helper.make_node("Constant", [], ["pads"], value_ints=[0, 0, 0, 0]),
             helper.make_node("Constant", [], ["s"], value_float=2.0),
             helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[3, 3]),
             helper.make_node("Mul", ["c", "s"], ["y"])]
    g = helper.make_graph(nodes, "consts", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 32, 5, 5])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64, 3, 3])],
                          [numpy_helper.from_array(np.ones(7, np.int64), "unused")])
    path = tmp_path / "consts.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    info = inspect_model(str(path))
    assert info["weight_bytes"] == w.nbytes + b.nbytes + 4 * 8 + 4 + 7 * 8
    assert info["ops"]["Constant"] == 4
    assert convert_main(["inspect", str(path)]) == 0
