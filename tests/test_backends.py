"""LiteRT and ONNX Runtime backends: specs, options, profile-driven session settings, int8 QDQ correctness."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import edge_runtime
from device_profiles.schema import CPU, DeviceProfile
from edge_runtime.backends import onnx as onnx_backend
from edge_runtime.backends.litert import import_interpreter
from edge_runtime.errors import BackendUnavailableError, ConfigError, InputError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from delegate.tflite_builder import T, Op, add_mul_fc_model, add_mul_fc_reference, build_model  # noqa: E402

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def board(budget_mib: int, threads: int = 2) -> DeviceProfile:
    """A test board with the given inference RAM budget."""
    return DeviceProfile(
        name="tb", display_name="Test board", arch="aarch64",
        cpu=CPU(model="Cortex-A53", cores=4, clock_mhz=1200, simd=["neon"]),
        ram_bytes=4 << 30, storage_bytes=8 << 30, inference_ram_budget_bytes=budget_mib << 20,
        model_flash_budget_bytes=1 << 30, python=True, backends=["litert", "onnx"], default_threads=threads,
    )


# -- LiteRT ------------------------------------------------------------------------
@pytest.fixture()
def amf(tmp_path):
    data, consts = add_mul_fc_model()
    p = tmp_path / "amf.tflite"
    p.write_bytes(data)
    return p, consts


def test_litert_specs_and_info(amf):
    p, _ = amf
    with edge_runtime.load(p, backend="litert", threads=2) as m:
        assert m.backend == "litert"
        assert [(s.name, s.shape, s.dtype) for s in m.inputs] == [("a", (1, 8), np.float32)] * 1 + [
            ("b", (1, 8), np.float32), ("c", (1, 8), np.float32)]
        assert [(s.name, s.shape) for s in m.outputs] == [("y", (1, 4))]
        assert m.info["library"] in ("ai-edge-litert", "tflite-runtime") and m.info["threads"] == 2
        assert m.info["memory_mapped"] is True and m.info["format"] == "tflite"


def test_litert_threads_from_profile(amf):
    p, _ = amf
    with edge_runtime.load(p, profile=board(256, threads=3)) as m:
        assert m.info["threads"] == 3 and m.info["profile"] == "tb"


def test_litert_quantized_spec_and_int8_model(tmp_path):
    # int8 ADD: y = x + x, per-tensor quantized; reference: the TFLite int8 ADD math in numpy.
    tensors = [T("x", (1, 16), np.int8, scale=0.5, zero_point=-3), T("y", (1, 16), np.int8, scale=1.0, zero_point=2)]
    p = tmp_path / "add_int8.tflite"
    p.write_bytes(build_model(tensors, [Op("ADD", [0, 0], [1])], inputs=[0], outputs=[1]))
    x = np.arange(-8, 8, dtype=np.int8).reshape(1, 16) * 7
    outs = {}
    for resolver in ("default", "reference"):
        with edge_runtime.load(p, op_resolver=resolver) as m:
            s = m.inputs[0]
            assert (s.scale, s.zero_point, s.dtype) == (0.5, -3, np.int8)
            outs[resolver] = m.run(x)[0]
    real = 2 * (x.astype(np.float64) + 3) * 0.5
    ref = np.clip(np.round(real / 1.0) + 2, -128, 127).astype(np.int8)
    assert np.array_equal(outs["reference"], ref)  # reference: numpy requantization (values exact here)
    assert np.array_equal(outs["default"], outs["reference"])  # XNNPACK vs LiteRT reference kernels


def test_litert_input_validation(amf):
    p, _ = amf
    with edge_runtime.load(p) as m:
        good = [np.zeros((1, 8), np.float32)] * 3
        with pytest.raises(InputError, match="dtype float64"):
            m.run([np.zeros((1, 8))] + good[1:])
        with pytest.raises(InputError, match=r"shape \(8,\)"):
            m.run([np.zeros(8, np.float32)] + good[1:])
        with pytest.raises(InputError, match="missing \\['c'\\]"):
            m.run({"a": good[0], "b": good[1]})
        with pytest.raises(InputError, match="takes 3 input"):
            m.run(good[:2])


def test_litert_rejects_bad_options(amf):
    p, _ = amf
    with pytest.raises(ConfigError, match="op_resolver"):
        edge_runtime.load(p, op_resolver="fast")
    with pytest.raises(ConfigError, match="threads"):
        edge_runtime.load(p, threads=0)


def test_tflite_backend_without_tflite_runtime(amf):
    p, consts = amf
    try:
        import tflite_runtime  # noqa: F401
    except ImportError:
        with pytest.raises(BackendUnavailableError, match=r"edge-runtime\[tflite\]"):
            edge_runtime.load(p, backend="tflite")
        return
    with edge_runtime.load(p, backend="tflite") as m:  # pragma: no cover - only where tflite-runtime exists
        assert m.info["library"] == "tflite-runtime"


def test_import_interpreter_rejects_unknown_library():
    with pytest.raises(ConfigError):
        import_interpreter("tensorflow")


def test_closed_model_refuses_to_run(amf):
    p, _ = amf
    m = edge_runtime.load(p)
    m.close()
    m.close()
    with pytest.raises(ConfigError, match="closed"):
        m.run([np.zeros((1, 8), np.float32)] * 3)


# -- ONNX Runtime ------------------------------------------------------------------
def qdq_matmul_model(w_q: np.ndarray, sx: float, sw: float, sy: float, zy: int) -> bytes:
    """x(float) -Q/DQ(int8)-> MatMul with DQ(int8 W) -> Q/DQ(int8) -> y: a standard QDQ int8 model."""
    k, n = w_q.shape
    inits = [
        numpy_helper.from_array(np.array(sx, np.float32), "sx"), numpy_helper.from_array(np.array(0, np.int8), "zx"),
        numpy_helper.from_array(np.array(sw, np.float32), "sw"), numpy_helper.from_array(np.array(0, np.int8), "zw"),
        numpy_helper.from_array(np.array(sy, np.float32), "sy"), numpy_helper.from_array(np.array(zy, np.int8), "zy"),
        numpy_helper.from_array(w_q.astype(np.int8), "w_q"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "sx", "zx"], ["x_q"]),
        helper.make_node("DequantizeLinear", ["x_q", "sx", "zx"], ["x_dq"]),
        helper.make_node("DequantizeLinear", ["w_q", "sw", "zw"], ["w_dq"]),
        helper.make_node("MatMul", ["x_dq", "w_dq"], ["y_f"]),
        helper.make_node("QuantizeLinear", ["y_f", "sy", "zy"], ["y_q"]),
        helper.make_node("DequantizeLinear", ["y_q", "sy", "zy"], ["y"]),
    ]
    g = helper.make_graph(nodes, "qdq_matmul", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", k])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", n])], initializer=inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=8).SerializeToString()


def qdq_reference(x: np.ndarray, w_q: np.ndarray, sx: float, sw: float, sy: float, zy: int) -> np.ndarray:
    """numpy: quantize x (round half to even, as ONNX QuantizeLinear), exact int32 matmul, requantize, dequantize."""
    x_q = np.clip(np.rint(x / np.float32(sx)), -128, 127).astype(np.int32)
    acc = x_q @ w_q.astype(np.int32)
    y_q = np.clip(np.rint(acc.astype(np.float64) * sx * sw / sy) + zy, -128, 127)
    return ((y_q - zy) * sy).astype(np.float32)


@pytest.mark.parametrize("quant_precision", ["auto", "exact"])
def test_onnx_qdq_int8_large_weights_match_numpy(tmp_path, quant_precision):
    # Weights at +-127 and inputs at the int8 extremes: on x86 without VNNI, ORT's U8S8 kernel adds pairs of
    # 255*127 products in 16 bits and saturates. The settings chosen here must keep results right.
    rng = np.random.default_rng(0)
    k, n = 64, 16
    w_q = rng.choice(np.array([-127, 127], np.int8), size=(k, n))
    sx, sw = 0.05, 0.01
    sy, zy = 1.0, 0  # the output range is wide enough that requantization does not clamp
    p = tmp_path / "qdq.onnx"
    p.write_bytes(qdq_matmul_model(w_q, sx, sw, sy, zy))
    x = rng.choice(np.array([-128 * sx, 127 * sx], np.float32), size=(8, k)).astype(np.float32)
    with edge_runtime.load(p, quant_precision=quant_precision) as m:
        assert m.inputs[0].shape == (-1, k)
        y = m.run(x)[0]
        if quant_precision == "exact":
            assert m.info["x64quantprecision"] is True
    ref = qdq_reference(x, w_q, sx, sw, sy, zy)
    # reference: numpy integer math; allow one output quantization step for float rounding inside ORT
    assert np.max(np.abs(y - ref)) <= sy + 1e-6
    assert np.mean(y == ref) > 0.95
    # The model really ran on ORT's fused int8 kernel under these session settings.
    import onnxruntime as ort

    so = onnx_backend._session_options(ort, onnx_backend.session_settings(None, quant_precision=quant_precision))
    so.optimized_model_filepath = str(tmp_path / "qdq_optimized.onnx")
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    ort.InferenceSession(str(p), sess_options=so, providers=["CPUExecutionProvider"])
    assert "QLinearMatMul" in [nd.op_type for nd in onnx.load(str(tmp_path / "qdq_optimized.onnx")).graph.node]


def test_exact_quant_decision():
    assert onnx_backend.needs_exact_quant("x86_64", {"avx2", "fma"}) is True
    assert onnx_backend.needs_exact_quant("x86_64", {"avx512f", "avx512bw"}) is True
    assert onnx_backend.needs_exact_quant("x86_64", {"avx2", "avx512_vnni"}) is False
    assert onnx_backend.needs_exact_quant("x86_64", {"avx2", "avx_vnni"}) is False
    assert onnx_backend.needs_exact_quant("x86_64", set()) is True  # unknown: correctness first
    assert onnx_backend.needs_exact_quant("aarch64", {"asimd"}) is False


def test_onnx_session_settings_from_profile(tmp_path):
    small = onnx_backend.session_settings(board(128, threads=4))
    assert small["threads"] == 4 and small["memory_arena"] is False and small["memory_pattern"] is False
    assert small["graph_optimization"] == "extended"
    big = onnx_backend.session_settings(board(2048, threads=2), graph_optimization="basic")
    assert big["memory_arena"] is True and big["memory_pattern"] is True and big["graph_optimization"] == "basic"
    with pytest.raises(ConfigError, match="graph_optimization"):
        onnx_backend.session_settings(None, graph_optimization="max")
    # The settings reach the session and Model.info.
    p = tmp_path / "relu.onnx"
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])])
    p.write_bytes(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    with edge_runtime.load(p, profile=board(128, threads=1)) as m:
        assert m.info["threads"] == 1 and m.info["memory_arena"] is False and m.info["library"] == "onnxruntime"
        x = np.array([[-1, 0, 2], [3, -4, 5]], np.float32)
        assert np.array_equal(m.run(x)[0], np.maximum(x, 0))  # reference: numpy
        with pytest.raises(InputError, match="expects \\(2, 3\\)"):
            m.run(np.zeros((3, 2), np.float32))


def test_onnx_dynamic_dims_validation(tmp_path):
    w_q = np.ones((4, 2), np.int8)
    p = tmp_path / "dyn.onnx"
    p.write_bytes(qdq_matmul_model(w_q, 0.1, 0.1, 0.1, 0))
    with edge_runtime.load(p) as m:
        assert m.run(np.zeros((5, 4), np.float32))[0].shape == (5, 2)
        with pytest.raises(InputError, match=r"expects \('\?', 4\)|expects \(\?, 4\)"):
            m.run(np.zeros((5, 3), np.float32))
        with pytest.raises(InputError, match="dtype"):
            m.run(np.zeros((5, 4), np.float64))


def test_onnx_rejects_tflite_only_options(tmp_path):
    p = tmp_path / "dyn.onnx"
    p.write_bytes(qdq_matmul_model(np.ones((4, 2), np.int8), 0.1, 0.1, 0.1, 0))
    with pytest.raises(ConfigError, match="op_resolver"):
        edge_runtime.load(p, op_resolver="reference")
    with pytest.raises(ConfigError, match="quant_precision"):
        edge_runtime.load(p, quant_precision="turbo")


def test_onnx_structural_check_catches_bad_raw_data(tmp_path):
    from edge_runtime.errors import ModelFormatError

    w = numpy_helper.from_array(np.ones((4, 2), np.float32), "w")
    w.raw_data = w.raw_data[:-4]  # 28 bytes for a 4x2 float tensor
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], initializer=[w])
    p = tmp_path / "bad.onnx"
    p.write_bytes(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    with pytest.raises(ModelFormatError, match="raw_data holds 28 bytes"):
        edge_runtime.load(p)


def test_onnx_external_data_outside_folder_is_refused(tmp_path):
    from edge_runtime.errors import ModelFormatError

    w = numpy_helper.from_array(np.ones((4, 2), np.float32), "w")
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    e = w.external_data.add()
    e.key, e.value = "location", "../../etc/passwd"
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], initializer=[w])
    p = tmp_path / "ext.onnx"
    p.write_bytes(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    with pytest.raises(ModelFormatError, match="leaves the model's folder"):
        edge_runtime.load(p)


def test_litert_and_numpy_agree_on_add_mul_fc(amf):
    p, consts = amf
    rng = np.random.default_rng(11)
    with edge_runtime.load(p, op_resolver="no_default_delegates") as m:
        for _ in range(5):
            x = [rng.integers(-4, 5, size=(1, 8)).astype(np.float32) for _ in range(3)]
            assert np.array_equal(m.run(x)[0], add_mul_fc_reference(*x, consts["W"], consts["bias"]))  # numpy


def test_no_tflite_interpreter_installed(monkeypatch, amf):
    # Simulate a device with neither ai-edge-litert nor tflite-runtime: a clear error naming both and the extra.
    p, _ = amf
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", None)
    with pytest.raises(BackendUnavailableError) as ei:
        edge_runtime.load(p, backend="litert")
    msg = str(ei.value)
    assert "ai-edge-litert" in msg and "tflite-runtime" in msg and "edge-runtime[litert]" in msg
