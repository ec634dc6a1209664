"""The MLPerf Tiny models converted by our converter to int8 (.onnx QDQ and .tflite), with int8 test inputs.

Runs in the project's main venv (the converter needs it). Calibration data: the kws01
inputs for KWS, half the ad01 windows for the anomaly detector, the converter's
synthetic images for the two image models, the 45 sww calibration spectrograms for the
streaming wake-word model. shared/ holds only the int8 ``str_ww_ref_model.tflite``, which
the converter refuses (already quantized), so it is first dequantized into a float ONNX
(:func:`float_onnx_from_int8_tflite`: the converter's own TFLite importer, with int8
activations read as float32 and weights and biases dequantized), then converted.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

PROFILE = "intel-n100"
#: Models in shared/ that are not run, and why (none: str_ww is dequantized first).
NOT_CONVERTIBLE: dict[str, str] = {}


@dataclass(frozen=True)
class Converted:
    """One converted model and its quantized test inputs (``inputs.npz`` holds ``x``: int8 batch)."""

    name: str
    source: str
    onnx: str
    tflite: str
    inputs: str
    n_inputs: int
    #: the same ONNX model with the quantized tensor feeding its softmax as a second output (None: no softmax)
    logits_onnx: str | None = None


def _calibration(name: str, n_test: int) -> tuple[str, np.ndarray, np.ndarray]:
    """(source file, float calibration data, float test inputs) for one model (sww: up to 45 inputs)."""
    from converters.calibration_data import synthetic_images
    from edge_runtime.reference_data import (
        KWS_INPUT_SCALE,
        KWS_INPUT_ZERO_POINT,
        load_ad01_windows,
        load_kws01,
    )

    if name == "kws":
        x, _, _ = load_kws01(100 + n_test)
        xf = ((x.astype(np.float32) - KWS_INPUT_ZERO_POINT) * np.float32(KWS_INPUT_SCALE)).reshape(-1, 49, 10, 1)
        return "kws_ref_model_float32.tflite", xf[:100], xf[100:]
    if name == "ad01":
        w = load_ad01_windows().reshape(-1, 640)
        return "ad01_fp32.tflite", w[::2], w[1::2][:n_test]
    if name == "vww":
        return "vww_96_float.tflite", synthetic_images(100, 96, 96, seed=0), synthetic_images(n_test, 96, 96, seed=1)
    if name == "resnet":
        return ("pretrainedResnet.tflite", synthetic_images(100, 32, 32, seed=0) * 255,
                synthetic_images(n_test, 32, 32, seed=1) * 255)
    if name == "sww":
        from edge_runtime.reference_data import mlperf_data

        specs = np.load(mlperf_data("sww", "sww_calibration_samples.npz"))["specs"].astype(np.float32)
        return "str_ww_ref_model.tflite", specs, specs[:n_test]
    raise ValueError(f"unknown model '{name}'")


MODELS = ("kws", "ad01", "vww", "resnet", "sww")


def float_onnx_from_int8_tflite(path: Path, out: Path) -> str:
    """Write a fully int8 .tflite as a float ONNX: int8 activations become float32, constants are dequantized.

    Uses the converter's TFLite importer on the parsed model with its activation tensors retyped,
    and its ONNX writer without a quantization plan.
    """
    from types import SimpleNamespace
    from unittest import mock

    import onnx

    import converters.importers.tflite as importer
    from converters.writers.onnx import build_onnx
    from edge_runtime.formats.tflite import TFLiteModel

    model = TFLiteModel.open(path)
    for t in model.main.tensors:
        if t.data is None and t.type_name in ("INT8", "UINT8"):
            t.type_code, t.quantization = 0, None  # FLOAT32, no quantization
    with mock.patch.object(importer, "TFLiteModel", SimpleNamespace(open=lambda _p: model)):
        graph = importer.import_tflite(path)
    onnx.save(build_onnx(graph), str(out))
    return str(out)


def convert_all(models_dir: Path, out: Path, n_test: int = 50) -> list[Converted]:
    """Convert each of :data:`MODELS` for the ``intel-n100`` profile into ``out/<name>/``."""
    import edge_runtime
    from converters.pipeline import convert_model

    done = []
    for name in MODELS:
        src, calib, test = _calibration(name, n_test)
        d = out / name
        source = models_dir / src
        if name == "sww":
            d.mkdir(parents=True, exist_ok=True)
            source = Path(float_onnx_from_int8_tflite(source, d / "str_ww_ref_model_dequantized.onnx"))
        res = convert_model(source, PROFILE, calib, d)
        with edge_runtime.load(res.tflite_path, backend="litert", accelerator="none") as m:
            spec = m.inputs[0]
            x = spec.quantize(test.reshape((-1,) + tuple(spec.shape[1:]))).reshape((-1,) + tuple(spec.shape))
        np.savez(d / "inputs.npz", x=x)
        done.append(Converted(name, src, str(res.onnx_path), str(res.tflite_path), str(d / "inputs.npz"), len(x),
                              with_logits_output(res.onnx_path, d / f"{name}_logits.onnx")))
    return done


def with_logits_output(onnx_path: str, out: Path) -> str | None:
    """Write ``onnx_path`` with the int8 tensor that its Softmax dequantizes added as a graph output.

    A softmax turns a 1-LSB difference in int8 logits into several LSBs of probability, so
    implementations are compared on the logits as well. Returns None for a model without Softmax.
    """
    import onnx
    from onnx import helper

    m = onnx.load(onnx_path)
    producers = {o: n for n in m.graph.node for o in n.output}
    soft = [n for n in m.graph.node if n.op_type == "Softmax"]
    if not soft:
        return None
    dq = producers.get(soft[-1].input[0])
    if dq is None or dq.op_type != "DequantizeLinear":
        raise ValueError(f"{onnx_path}: the Softmax input is not a DequantizeLinear output")
    m.graph.output.append(helper.make_tensor_value_info(dq.input[0], onnx.TensorProto.INT8, None))
    onnx.save(m, str(out))
    return str(out)
