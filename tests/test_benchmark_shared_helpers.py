"""Helpers the benchmarks and tests share: ORT's ``quantize_static`` baseline (:mod:`benchmarks._ort_quantize`)
and the float-in/float-out LiteRT run (:func:`benchmarks.real_models_tflite.litert_float_outputs`)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks._ort_quantize import quantize_static_qdq
from benchmarks.real_models_tflite import litert_float_outputs
from tests.tflite_builder import ModelBuilder, T, litert


def _conv_onnx(path: Path, rng: np.random.Generator, c_in: int, c_out: int, hw: int) -> str:
    """x [1, c_in, hw, hw] -> Conv 3x3 (c_out filters, bias) -> Relu: a float ONNX model."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(rng.normal(0, 0.5, (c_out, c_in, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.normal(0, 0.1, c_out).astype(np.float32), "b")
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c_in, hw, hw])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, c_out, hw, hw])], [w, b])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return str(path)


def _weight_scale(path: str) -> np.ndarray:
    """The scale of the DequantizeLinear that feeds Conv's weight in ORT's QDQ model at ``path``."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(path)
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    by_out = {o: n for n in m.graph.node for o in n.output}
    conv = next(n for n in m.graph.node if n.op_type == "Conv")
    deq = by_out[conv.input[1]]
    assert deq.op_type == "DequantizeLinear"
    return inits[deq.input[1]]


@pytest.mark.parametrize("seed", range(2))
def test_quantize_static_qdq_writes_a_per_channel_qdq_model(tmp_path: Path, seed: int) -> None:
    pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(seed)
    c_in, c_out, hw = int(rng.integers(1, 4)), int(rng.integers(2, 6)), int(rng.integers(4, 9))
    src = _conv_onnx(tmp_path / "f.onnx", rng, c_in, c_out, hw)
    calib = rng.normal(0, 1, (6, 1, c_in, hw, hw)).astype(np.float32)
    out = str(tmp_path / "q.onnx")
    assert quantize_static_qdq(src, out, "x", calib) == "per-channel"
    assert _weight_scale(out).shape == (c_out,)  # one weight scale per output channel
    import onnx
    import onnxruntime as ort

    assert any(n.op_type == "QuantizeLinear" for n in onnx.load(out).graph.node)
    y = ort.InferenceSession(out, providers=["CPUExecutionProvider"]).run(None, {"x": calib[0]})[0]
    assert y.shape == (1, c_out, hw, hw) and np.all(y >= 0)


def test_quantize_static_qdq_falls_back_per_tensor_only_when_asked(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A per-channel ``ValueError`` (ORT's bias-scale check on some graphs) retries per tensor with the flag;
    without it the error reaches the caller."""
    quant = pytest.importorskip("onnxruntime.quantization")
    real = quant.quantize_static

    def per_channel_fails(*args, per_channel: bool = False, **kw):  # type: ignore[no-untyped-def]
        if per_channel:
            raise ValueError("per-channel bias scale check failed")
        return real(*args, per_channel=per_channel, **kw)

    monkeypatch.setattr(quant, "quantize_static", per_channel_fails)
    rng = np.random.default_rng(5)
    src = _conv_onnx(tmp_path / "f.onnx", rng, 2, 3, 5)
    calib = rng.normal(0, 1, (4, 1, 2, 5, 5)).astype(np.float32)
    out = str(tmp_path / "q.onnx")
    with pytest.raises(ValueError, match="bias scale"):
        quantize_static_qdq(src, out, "x", calib)
    assert quantize_static_qdq(src, out, "x", calib, per_tensor_fallback=True) == "per-tensor"
    assert _weight_scale(out).size == 1  # one scale for the whole weight


def _two_output_int8_model(path: Path, sx: float, zx: int, s2: float, z2: int) -> Path:
    """int8 x -> QUANTIZE (requantized to s2, z2) as output "z_req", and DEQUANTIZE as output "a_float"."""
    mb = ModelBuilder()
    sg = mb.subgraph("main")
    x = sg.tensor(T((1, 16), "int8", scale=sx, zp=zx, name="x"))
    z = sg.tensor(T((1, 16), "int8", scale=s2, zp=z2, name="z_req"))
    a = sg.tensor(T((1, 16), "float32", name="a_float"))
    sg.op("QUANTIZE", [x], [z])
    sg.op("DEQUANTIZE", [x], [a])
    sg.io([x], [z, a])
    return mb.write(path)


@pytest.mark.parametrize("seed", range(3))
def test_litert_float_outputs_quantizes_the_input_and_dequantizes_outputs(tmp_path: Path, seed: int) -> None:
    """Reference: the int8 input computed here by round-half-to-even of x / scale + zero point, clipped."""
    rng = np.random.default_rng(seed)
    sx, zx = float(rng.uniform(0.01, 0.1)), int(rng.integers(-20, 20))
    s2, z2 = float(rng.uniform(0.01, 0.1)), int(rng.integers(-20, 20))
    path = _two_output_int8_model(tmp_path / "m.tflite", sx, zx, s2, z2)
    x = rng.normal(0, 4, (1, 16)).astype(np.float32)  # wide enough to clip at both ends on some draws
    q = np.clip(np.round(x / np.float32(sx)) + zx, -128, 127)
    want = ((q - zx) * np.float32(sx)).astype(np.float32)
    it = litert.Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    z, a = litert_float_outputs(it, x)  # the model's output order
    assert a.dtype == np.float32 and z.dtype == np.float32
    np.testing.assert_allclose(a, want, rtol=0, atol=1e-6)
    assert np.max(np.abs(z - np.clip(want, (-128 - z2) * s2, (127 - z2) * s2))) <= s2 / 2 + 1e-6
    a2, z2_ = litert_float_outputs(it, x, by_name=True)  # "a_float" < "z_req"
    assert np.array_equal(a2, a) and np.array_equal(z2_, z)
