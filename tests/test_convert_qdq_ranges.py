"""A QDQ ONNX model keeps its own activation ranges and int8 weights when converted
(converters/importers/qdq.py reads them, converters/qdq_source.py applies them).

A small conv net (Conv+Relu, depthwise Conv+Relu, 1x1 Conv, GlobalAveragePool, Flatten, Gemm) quantized by
onnxruntime's ``quantize_static`` (QDQ, per-channel int8 weights) and converted:

- every activation a QuantizeLinear/DequantizeLinear pair fixes has the pair's scale and zero point in the written
  .tflite (read back with LiteRT) and in the written QDQ .onnx;
- the .tflite's int8 weights and per-channel scales are the model's int8 initializers (in TFLite's layout);
- the .tflite on LiteRT is within 1 LSB of onnxruntime running the QDQ model (the reference) on held-out inputs;
- micro equals tflite-micro (``np.array_equal``);
- ``recalibrate_qdq=True`` (``--recalibrate-qdq``) writes the calibrated ranges and re-quantized weights instead;
- uint8 activations keep their scale with the zero point shifted by -128; uint8 (asymmetric) weights, which
  TFLite's kernels do not take, are re-quantized with one log line naming them;
- a model with symmetric int16 activations converted with ``activations="int16"``: every int16 tensor of the
  .tflite has the model's int16 scale, micro equals tflite-micro, and the output is closer to onnxruntime's run
  of the QDQ model than the re-calibrated conversion's.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from helpers import micro_available
from onnx import TensorProto, helper, numpy_helper
from test_import_ops_common import make_model

n = helper.make_node
CALIB, HELD = 24, 24


def _float_model() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    f = np.float32
    inits = [numpy_helper.from_array((rng.standard_normal((8, 3, 3, 3)) * 0.3).astype(f), "w1"),
             numpy_helper.from_array((rng.standard_normal(8) * 0.1).astype(f), "b1"),
             numpy_helper.from_array((rng.standard_normal((8, 1, 3, 3)) * 0.3).astype(f), "w2"),
             numpy_helper.from_array((rng.standard_normal(8) * 0.1).astype(f), "b2"),
             numpy_helper.from_array((rng.standard_normal((12, 8, 1, 1)) * 0.3).astype(f), "w3"),
             numpy_helper.from_array((rng.standard_normal(12) * 0.1).astype(f), "b3"),
             numpy_helper.from_array((rng.standard_normal((12, 5)) * 0.3).astype(f), "fw"),
             numpy_helper.from_array((rng.standard_normal(5) * 0.1).astype(f), "fb")]
    nodes = [n("Conv", ["x", "w1", "b1"], ["c1"], pads=[1] * 4, strides=[2, 2], name="conv1"),
             n("Relu", ["c1"], ["r1"], name="relu1"),
             n("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1] * 4, group=8, name="dw"),
             n("Relu", ["c2"], ["r2"], name="relu2"),
             n("Conv", ["r2", "w3", "b3"], ["c3"], name="pw"), n("GlobalAveragePool", ["c3"], ["g"], name="gap"),
             n("Flatten", ["g"], ["fl"], name="flat"), n("Gemm", ["fl", "fw", "fb"], ["y"], name="fc")]
    return make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 12, 12])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])], inits, opset=13)


def _data() -> np.ndarray:
    return np.random.default_rng(1).standard_normal((CALIB + HELD, 1, 3, 12, 12)).astype(np.float32)


def _quantize(tmp: Path, data: np.ndarray, uint8: bool = False, int16: bool = False) -> Path:
    """onnxruntime's ``quantize_static`` of the float model: QDQ, per-channel weights, int8 (or uint8) types; with
    ``int16``, symmetric int16 activations and int8 weights."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(data[:CALIB])

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self.it, None)
            return None if x is None else {"x": x}

    src, out = tmp / "float.onnx", tmp / ("qdq_u8.onnx" if uint8 else "qdq_16.onnx" if int16 else "qdq.onnx")
    onnx.save(_float_model(), str(src))
    qt = QuantType.QUInt8 if uint8 else QuantType.QInt8
    logging.getLogger().setLevel(logging.ERROR)  # onnxruntime's "consider pre-processing" warnings
    quantize_static(str(src), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt16 if int16 else qt, weight_type=qt,
                    extra_options={"ActivationSymmetric": True} if int16 else None)
    return out


def _pairs(model: onnx.ModelProto) -> dict[str, tuple[float, int, Any]]:
    """ONNX tensor -> (scale, zero point, zero point dtype) of each activation QuantizeLinear of ``model``."""
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    out = {}
    for nd in model.graph.node:
        if nd.op_type == "QuantizeLinear" and nd.input[0] not in inits:
            z = inits[nd.input[2]]
            out[nd.input[0]] = (float(inits[nd.input[1]]), int(z), z.dtype)
    return out


def _int8_weights(model: onnx.ModelProto) -> list[tuple[np.ndarray, np.ndarray]]:
    """(int8 values in TFLite's layout, scales) of every DequantizeLinear of an int8 initializer."""
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    out = []
    for nd in model.graph.node:
        if nd.op_type == "DequantizeLinear" and inits.get(nd.input[0], np.zeros((0, 0), np.int32)).dtype == np.int8 \
                and inits[nd.input[0]].ndim > 1:
            w = inits[nd.input[0]]
            if w.ndim == 4:  # OIHW -> OHWI; a depthwise [C, 1, kh, kw] -> [1, kh, kw, C]
                w = w.transpose(1, 2, 3, 0) if w.shape[1] == 1 else w.transpose(0, 2, 3, 1)
            else:  # Gemm [in, out] -> FULLY_CONNECTED [out, in]
                w = w.T
            out.append((np.ascontiguousarray(w), inits[nd.input[1]].reshape(-1)))
    return out


def _tflite_tensors(path: str) -> dict[str, dict]:
    from converters.report import litert_interpreter

    it = litert_interpreter(path)
    return {d["name"]: dict(d, value=it.get_tensor(d["index"]) if d["dtype"] == np.int8 and
                            d["quantization_parameters"]["scales"].size > 1 else None)
            for d in it.get_tensor_details()}


def _onnx_qparams(path: str) -> dict[str, tuple[float, int]]:
    """IR tensor -> (scale, zero point) of the QuantizeLinear our ONNX writer put on it."""
    m = onnx.load(path)
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    return {nd.input[0].removesuffix("/float"): (float(inits[nd.input[1]]), int(inits[nd.input[2]]))
            for nd in m.graph.node if nd.op_type == "QuantizeLinear"}


def _ir_name(name: str, tensors: dict[str, Any]) -> str | None:
    """The written tensor holding ONNX activation ``name``: itself, or the Relu the importer put back after it."""
    for cand in (name, f"{name}/relu_from_qdq", name.removesuffix("_QuantizeLinear_Input")):
        if cand in tensors:
            return cand
    return None


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from converters.pipeline import convert_model

    tmp = tmp_path_factory.mktemp("qdq_ranges")
    data = _data()
    path = _quantize(tmp, data)
    kept = convert_model(str(path), "rpi4-4gb", data[:CALIB], str(tmp / "kept"), report_samples=4)
    recal = convert_model(str(path), "rpi4-4gb", data[:CALIB], str(tmp / "recal"), report_samples=4,
                          recalibrate_qdq=True)
    return {"path": path, "data": data, "kept": kept, "recal": recal, "model": onnx.load(str(path))}


def test_activation_scales_and_zero_points_are_the_models(converted: dict[str, Any]) -> None:
    res = converted["kept"]
    pairs = _pairs(converted["model"])
    tensors = _tflite_tensors(res.tflite_path)
    written_onnx = _onnx_qparams(res.onnx_path)
    checked = 0
    for name, (scale, zp, _) in pairs.items():
        ir = _ir_name(name, tensors)
        assert ir is not None, name
        assert tensors[ir]["quantization"] == (np.float32(scale), zp), (name, tensors[ir]["quantization"])
        if ir in written_onnx:  # (the ONNX writer quantizes the input after the convolution's padding)
            assert written_onnx[ir] == (np.float32(scale), zp), (name, written_onnx[ir])
            checked += 1
    assert len(pairs) == 7 and checked >= 6  # input, two Relus, 1x1 conv, pool, flatten, output
    assert written_onnx["x/pad_for/conv1"] == (np.float32(pairs["x"][0]), pairs["x"][1])
    q = res.report["qdq"]
    assert q["ranges"] == "model" and not q["changed_by_constraints"] and not q["model_pairs_not_kept"]
    assert {"x", "y", "c3", "g", "fl", "r1/relu_from_qdq"} <= set(q["activations_from_model"])


def test_int8_weights_are_the_models_initializers(converted: dict[str, Any]) -> None:
    res = converted["kept"]
    tensors = _tflite_tensors(res.tflite_path)
    written = [d for d in tensors.values() if d["value"] is not None]
    model_weights = _int8_weights(converted["model"])
    assert len(model_weights) == 4 and len(written) == 4
    for w, scales in model_weights:
        same = [d for d in written if d["value"].shape == w.shape and np.array_equal(d["value"], w)]
        assert same, f"no written weight equals the model's int8 weight of shape {w.shape}"
        written_scales = same[0]["quantization_parameters"]["scales"].astype(np.float32)
        assert np.array_equal(written_scales, scales.astype(np.float32))
        assert not np.any(same[0]["quantization_parameters"]["zero_points"])
    assert len(res.report["qdq"]["weights_from_model"]) == 4 and not res.report["qdq"]["weights_requantized"]


def _ort_outputs(path: Path, xs: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return np.stack([sess.run(None, {"x": x})[0] for x in xs])


def _lite_outputs(res: Any, xs: np.ndarray) -> np.ndarray:
    from converters.report import TFLiteRunner

    runner = TFLiteRunner(res.tflite_path)
    g = res.graph
    return np.stack([runner.run(g.to_ir_layout(g.inputs[0], x))[0] for x in xs])


def test_output_within_one_lsb_of_onnxruntime_running_the_qdq_model(converted: dict[str, Any]) -> None:
    res, held = converted["kept"], converted["data"][CALIB:]
    ref = _ort_outputs(converted["path"], held)  # the reference: onnxruntime running the QDQ model
    scale = res.plan.activations[res.graph.outputs[0]].scale
    lsb = np.abs(_lite_outputs(res, held).reshape(ref.shape).astype(np.float64) - ref) / scale
    assert lsb.max() <= 1.0 + 1e-4, lsb.max()
    recal = converted["recal"]  # the re-calibrated conversion does not reproduce the model's numbers
    lsb_recal = np.abs(_lite_outputs(recal, held).reshape(ref.shape).astype(np.float64) - ref) / scale
    assert lsb_recal.max() > 1.5, lsb_recal.max()


@pytest.mark.skipif(not micro_available(), reason="the micro backend is not installed")
def test_micro_equals_tflite_micro(converted: dict[str, Any]) -> None:
    from tflite_micro.python.tflite_micro import runtime

    import edge_runtime
    from converters.report import TFLiteRunner

    res = converted["kept"]
    g = res.graph
    tflm = runtime.Interpreter.from_file(res.tflite_path)
    micro = edge_runtime.load(res.tflite_path, backend="micro")
    lite = TFLiteRunner(res.tflite_path)
    for x in converted["data"][CALIB:CALIB + 4]:
        q = TFLiteRunner._q(g.to_ir_layout(g.inputs[0], x), lite.inp).reshape(lite.inp["shape"])
        tflm.set_input(q, 0)
        tflm.invoke()
        assert np.array_equal(np.asarray(micro.run(q)[0]), tflm.get_output(0))


def test_recalibrate_qdq_restores_calibrated_ranges(converted: dict[str, Any]) -> None:
    from converters.quantize import qparams_from_range, quantize_weight

    res = converted["recal"]
    pairs = _pairs(converted["model"])
    tensors = _tflite_tensors(res.tflite_path)
    differ = 0
    for name, (scale, zp, _) in pairs.items():
        ir = _ir_name(name, tensors)
        if ir is None:
            continue
        want = qparams_from_range(*res.plan.ranges[ir])  # the calibrated range, as for a float model
        got = tensors[ir]["quantization"]
        assert got == (want.scale, want.zero_point) or ir in res.graph.inputs, (ir, got, want)
        differ += got != (np.float32(scale), zp)
    assert differ >= 4, differ
    q = res.report["qdq"]
    assert q["ranges"].startswith("calibration") and not q["activations_from_model"] and not q["weights_from_model"]
    for op in res.graph.ops:  # weights re-quantized from the dequantized floats (max |w| / 127 per channel)
        if op.kind in ("CONV_2D", "FULLY_CONNECTED"):
            again = quantize_weight(res.graph.tensors[op.inputs[1]].data, 0)
            assert np.array_equal(res.plan.weights[op.inputs[1]].scales, again.scales)


def test_cli_option(converted: dict[str, Any], tmp_path: Path, capsys: Any) -> None:
    import json

    from converters.cli import main

    calib = tmp_path / "calib.npy"
    np.save(calib, converted["data"][:8, 0])
    for extra, want in (([], "model"), (["--recalibrate-qdq"], "calibration (--recalibrate-qdq)")):
        out = tmp_path / ("recal" if extra else "kept")
        main(["convert", str(converted["path"]), "--profile", "rpi4-4gb", "--calib", str(calib), "-o", str(out),
              "--format", "tflite"] + extra)
        report = json.loads((out / "report.json").read_text())
        assert report["qdq"]["ranges"] == want
        assert "QDQ source:" in (out / "report.md").read_text()
    capsys.readouterr()


def test_uint8_activations_shift_and_asymmetric_weights_fall_back(tmp_path: Path, caplog: Any) -> None:
    from converters.pipeline import convert_model

    data = _data()
    path = _quantize(tmp_path, data, uint8=True)
    with caplog.at_level(logging.INFO, logger="converters.importers.onnx"):
        res = convert_model(str(path), "rpi4-4gb", data[:CALIB], str(tmp_path / "out"), formats=("tflite",),
                            report_samples=4)
    pairs = _pairs(onnx.load(str(path)))
    tensors = _tflite_tensors(res.tflite_path)
    checked = 0
    for name, (scale, zp, dtype) in pairs.items():
        ir = _ir_name(name, tensors)
        if ir is None:
            continue
        assert dtype == np.uint8
        assert tensors[ir]["quantization"] == (np.float32(scale), zp - 128), (name, tensors[ir]["quantization"])
        checked += 1
    assert checked >= 6
    left = res.report["qdq"]["weights_requantized"]
    assert len(left) == 4 and all("uint8" in why for why in left.values()), left
    lines = [r.getMessage() for r in caplog.records if "re-quantized instead of kept" in r.getMessage()]
    assert len(lines) == 1 and "4 weight(s)" in lines[0]


def test_int16_pairs_keep_their_scale_where_the_converter_writes_int16(tmp_path: Path) -> None:
    from converters.pipeline import convert_model

    data = _data()
    path = _quantize(tmp_path, data, int16=True)
    kw: dict[str, Any] = {"formats": ("tflite",), "report_samples": 4, "activations": "int16"}
    res = convert_model(str(path), "rpi4-4gb", data[:CALIB], str(tmp_path / "kept"), **kw)
    recal = convert_model(str(path), "rpi4-4gb", data[:CALIB], str(tmp_path / "recal"), recalibrate_qdq=True, **kw)
    pairs = _pairs(onnx.load(str(path)))
    tensors = _tflite_tensors(res.tflite_path)
    recal_tensors = _tflite_tensors(recal.tflite_path)
    checked = differ = 0
    for name, (scale, zp, dtype) in pairs.items():
        ir = _ir_name(name, tensors)
        assert dtype == np.int16 and zp == 0
        if ir is None or tensors[ir]["dtype"] != np.int16:
            continue
        assert tensors[ir]["quantization"] == (np.float32(scale), 0), (name, tensors[ir]["quantization"])
        differ += recal_tensors[ir]["quantization"] != (np.float32(scale), 0)
        checked += 1
    assert checked >= 4 and differ >= 3, (checked, differ)
    assert {"r1", "r2", "c3", "fl"} <= set(res.report["qdq"]["int16_from_model"])
    held = data[CALIB:]
    ref = _ort_outputs(path, held)  # the reference: onnxruntime running the int16 QDQ model
    scale = res.plan.activations[res.graph.outputs[0]].scale
    kept_lsb = np.abs(_lite_outputs(res, held).reshape(ref.shape).astype(np.float64) - ref).max() / scale
    recal_lsb = np.abs(_lite_outputs(recal, held).reshape(ref.shape).astype(np.float64) - ref).max() / scale
    assert kept_lsb < 2.0 and kept_lsb < recal_lsb, (kept_lsb, recal_lsb)
    if micro_available():
        from tflite_micro.python.tflite_micro import runtime

        import edge_runtime
        from converters.report import TFLiteRunner

        tflm = runtime.Interpreter.from_file(res.tflite_path)
        micro = edge_runtime.load(res.tflite_path, backend="micro")
        lite = TFLiteRunner(res.tflite_path)
        for x in held[:3]:
            q = TFLiteRunner._q(res.graph.to_ir_layout(res.graph.inputs[0], x), lite.inp).reshape(lite.inp["shape"])
            tflm.set_input(q, 0)
            tflm.invoke()
            assert np.array_equal(np.asarray(micro.run(q)[0]), tflm.get_output(0))
