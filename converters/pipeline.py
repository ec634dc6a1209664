"""The converter's stable API: ``convert_model(...) -> ConversionResult``.

One call imports a float ONNX or float/hybrid TFLite model, calibrates it, makes one set of
quantization decisions, writes ``<name>_int8.tflite`` and ``<name>_int8.onnx``, sizes the result
against a device profile and writes the quality report (``report.json``, ``report.md``,
``report.png``). It never raises for a model that does not fit: ``result.fits`` says so, and the
``edge-convert convert`` command turns that into exit code 3.
"""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional, Sequence, Union

import numpy as np

from converters.calibrate import calibrate, float_session
from converters.calibration_data import CalibrationDataError, load_labelled, open_calibration
from converters.ir import Graph
from converters.quantize import plan_quantization
from edge_runtime.errors import (ConfigError, EdgeRuntimeError, ModelFormatError, UnsupportedModelError,
                                 is_out_of_memory)
from edge_runtime.model_file import read_head

FORMATS = ("tflite", "onnx")
HeldOut = Union[None, str, "os.PathLike[str]", np.ndarray, tuple]


@dataclass
class ConversionResult:
    """What :func:`convert_model` produced."""

    tflite_path: Optional[str]
    onnx_path: Optional[str]
    report_path: str
    report: dict[str, Any]
    fits: bool
    graph: Optional[Graph] = field(default=None, repr=False)
    plan: Any = field(default=None, repr=False)


def import_model(path: "str | os.PathLike[str]", input_shapes: Optional[dict[str, tuple[int, ...]]] = None) -> Graph:
    """Read a .onnx or .tflite (recognised by content, not name) into the IR.

    ``input_shapes`` fixes dynamic ONNX input dimensions (``--input-shape NAME=DIMS``); TFLite
    models have static shapes and take none.
    """
    p = os.fspath(path)
    head = read_head(p, 8)
    if len(head) >= 8 and head[4:8] == b"TFL3":
        if input_shapes:
            raise ConfigError(f"{p}: --input-shape applies to ONNX models only; a TFLite model's shapes are fixed")
        from converters.importers.tflite import import_tflite

        return import_tflite(p)
    if p.lower().endswith(".tflite"):
        raise ModelFormatError(f"{p}: not a TFLite model (no 'TFL3' identifier)")
    from converters.importers.onnx import import_onnx

    return import_onnx(p, input_shapes=input_shapes)


def per_channel_fc(profile: Any) -> bool:
    """Per-channel FULLY_CONNECTED weights, except for profiles with a TFLite delegate (Edge TPU, NPU):
    their compilers are documented for per-tensor FC weights (what TF's converter writes) and cannot be
    checked here. LiteRT's CPU kernels and TFLite Micro run per-channel FC weights."""
    return not any(a.kind == "tflite_delegate" for a in getattr(profile, "accelerators", []))


def _refuse_non_finite_weights(model: Any, graph: Graph) -> None:
    """One clear error when a constant (weight, bias, ...) of the imported graph holds NaN or infinity."""
    for t in graph.tensors.values():
        d = t.data
        if d is not None and np.asarray(d).dtype.kind == "f" and not np.all(np.isfinite(d)):
            bad = int(np.count_nonzero(~np.isfinite(d)))
            raise UnsupportedModelError(f"{model}: constant '{t.name}' holds {bad} NaN or infinite value(s); "
                                        "the float model is broken (retrain or fix its weights)")


def _output_dir(out_dir: Any) -> str:
    """Create the output folder, or say in one line why it cannot be one."""
    out = os.fspath(out_dir)
    try:
        os.makedirs(out, exist_ok=True)
    except FileExistsError:
        raise ConfigError(f"{out}: exists and is not a folder; give -o a folder") from None
    except NotADirectoryError:
        raise ConfigError(f"{out}: a parent of this path is a file, not a folder") from None
    except OSError as exc:
        raise ConfigError(f"{out}: cannot create the output folder: {exc.strerror or exc}") from None
    if not os.path.isdir(out):
        raise ConfigError(f"{out}: exists and is not a folder; give -o a folder")
    return out


@contextmanager
def _one_line(model: Any, step: str) -> Iterator[None]:
    """Turn an unexpected exception in ``step`` into one UnsupportedModelError line (a converter bug to
    report) instead of a traceback; ``EDGE_RUNTIME_DEBUG=1`` and memory shortages let it through."""
    try:
        yield
    except EdgeRuntimeError:
        raise
    except Exception as exc:
        if os.environ.get("EDGE_RUNTIME_DEBUG") or is_out_of_memory(exc):
            raise
        msg = " ".join(str(exc).split())[:240]
        raise UnsupportedModelError(
            f"{os.fspath(model)}: {step} failed ({type(exc).__name__}: {msg}); this is a converter bug: please "
            f"report it with the model (EDGE_RUNTIME_DEBUG=1 shows the traceback)") from None


def _held_out(held_out: HeldOut, shape: tuple[int, ...]) -> tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    if held_out is None:
        return None, None
    y = None
    if isinstance(held_out, tuple):
        x, y = held_out[0], (held_out[1] if len(held_out) > 1 else None)
    elif isinstance(held_out, np.ndarray):
        x = held_out
    else:
        x, y = load_labelled(held_out, "held-out", CalibrationDataError, mmap=True)
    x = np.asarray(x)
    per = int(np.prod(shape))
    if x.size % per or x.size == 0:
        raise CalibrationDataError(f"held-out data of shape {x.shape} does not split into samples of shape {shape}")
    x = x.reshape((-1,) + tuple(shape))
    if y is not None:
        y = np.asarray(y).reshape(-1)
        if len(y) != len(x):
            raise CalibrationDataError(f"held-out data has {len(x)} samples but {len(y)} labels")
    return x, y


def convert_model(model: "str | os.PathLike[str]", profile: Any, calib: Any, out_dir: "str | os.PathLike[str]",
                  formats: Sequence[str] = FORMATS, method: str = "auto", held_out: HeldOut = None,
                  progress: bool = False, *, limit: Optional[int] = None, bin_scale: Optional[float] = None,
                  bin_zero_point: int = 0, preprocessor: Optional[Callable[[str], np.ndarray]] = None,
                  preprocess: Optional[str] = None,
                  io_dtype: Optional[str] = None, report_samples: int = 32,
                  input_shapes: Optional[dict[str, tuple[int, ...]]] = None, task: str = "auto",
                  analyze: bool = False, bias_correction: bool = True,
                  fc_per_channel: Optional[bool] = None) -> ConversionResult:
    """Convert ``model`` to int8 for ``profile`` using calibration data ``calib``; write into ``out_dir``.

    ``profile``: a shipped profile name, a YAML path or a ``DeviceProfile``. ``calib``: see
    :func:`converters.calibration_data.open_calibration`. ``method``: ``auto`` (MSE-optimal),
    ``minmax``, ``percentile`` or ``mse``. ``held_out``: ``(x, y)``, ``x``, or a .npz with ``x``
    (and ``y``) in the source model's input layout. ``io_dtype`` overrides the profile's.
    ``preprocess``: an :mod:`edge_runtime.preprocess` preset or YAML turning .wav/image calibration
    files into inputs (or pass your own ``preprocessor`` callable). ``input_shapes``: fixed shapes
    for dynamic ONNX inputs, e.g. ``{"input": (1, 3, 224, 224)}`` (a dynamic batch alone becomes 1).
    ``task``: ``auto``, ``classify`` or ``regress``: which outputs get top-1 in the report (see
    :mod:`converters.quality.metrics`). ``analyze``: add the per-layer sensitivity analysis
    (:mod:`converters.quality.sensitivity`) to the report. ``bias_correction`` (default on): fold the
    mean weight-quantization error into the biases (:mod:`converters.quality.bias_correction`).
    ``fc_per_channel``: per-channel FULLY_CONNECTED weights (default: :func:`per_channel_fc` of the profile).
    """
    from device_profiles import load_profile

    from converters.fit import fit_model
    from converters.quality.metrics import compare_outputs, output_kinds
    from converters.report import OnnxRunner, TFLiteRunner, compare_on_samples, evaluate_held_out, write_report

    formats = tuple(formats)
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ConfigError(f"unknown output format(s) {bad or formats}; choose from {', '.join(FORMATS)}")
    from converters.quality.metrics import TASKS

    if task not in TASKS:
        raise ConfigError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
    prof = load_profile(profile)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    with _one_line(model, "importing the model"):
        graph = import_model(model, input_shapes)
    _refuse_non_finite_weights(model, graph)
    if len(graph.inputs) != 1:
        raise ConfigError(f"{model}: models with {len(graph.inputs)} inputs are not supported (one input only)")
    in_name = graph.inputs[0]
    src_shape = graph.source_shape(in_name)
    if preprocess is not None and preprocessor is None:
        from converters.calibration_data import preprocessor_from_config

        preprocessor = preprocessor_from_config(preprocess, in_name, src_shape)
    data = open_calibration(calib, src_shape, in_name, limit=limit, bin_scale=bin_scale,
                            bin_zero_point=bin_zero_point, preprocessor=preprocessor)
    timings["import_s"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    with _one_line(model, "calibrating the imported graph"):
        sess = float_session(graph)
        ranges = calibrate(graph, data, method, progress=progress, session=sess)
        pc_fc = per_channel_fc(prof) if fc_per_channel is None else fc_per_channel
        plan = plan_quantization(graph, ranges, io_dtype or prof.io_dtype, per_channel_fc=pc_fc)
        bias_info = None
        if bias_correction:
            from converters.quality.bias_correction import correct_biases, input_means

            means = input_means(graph, sess, (x for i, x in enumerate(data) if i < 256))
            bias_info = correct_biases(graph, plan, means)
    timings["calibrate_s"] = time.perf_counter() - t1
    out = _output_dir(out_dir)
    tfl_path = os.path.join(out, f"{graph.name}_int8.tflite")
    onnx_path = os.path.join(out, f"{graph.name}_int8.onnx") if "onnx" in formats else None
    t2 = time.perf_counter()
    from converters.writers.tflite import write_tflite

    with _one_line(model, "writing the int8 models"):
        write_tflite(graph, plan, tfl_path)  # always written: sizing and the report use it
        if onnx_path:
            from converters.writers.onnx import write_onnx

            write_onnx(graph, plan, onnx_path)
    timings["write_s"] = time.perf_counter() - t2
    hx, hy = _held_out(held_out, src_shape)
    with _one_line(model, f"sizing and running the written {os.path.basename(tfl_path)}"):
        fit = fit_model(tfl_path, prof)
        t3 = time.perf_counter()
        layer_rows, cal_f, cal_q = compare_on_samples(graph, sess, TFLiteRunner(tfl_path, preserve=True),
                                                      (x for i, x in enumerate(data) if i < report_samples))
        cal_outputs = compare_outputs(graph.outputs, output_kinds(graph, task, hy), cal_f, cal_q)
    sensitivity = None
    if analyze:
        from converters.quality.sensitivity import SAMPLES
        from converters.quality.sensitivity import analyze as analyze_layers

        n_sens = min(report_samples, SAMPLES)
        with _one_line(model, "analysing per-layer sensitivity"):
            sensitivity = analyze_layers(graph, plan, (x for i, x in enumerate(data) if i < n_sens))
    held_stats = None
    if hx is not None:
        with _one_line(model, "running the int8 models on the held-out data"):
            runners: dict[str, Callable] = {"tflite": TFLiteRunner(tfl_path).run}
            if onnx_path:
                runners["onnx"] = OnnxRunner(onnx_path, plan, graph).run
            held_stats, _ = evaluate_held_out(graph, sess, runners, hx, hy, task)
    timings["report_s"] = time.perf_counter() - t3
    timings["total_s"] = time.perf_counter() - t0
    method_used = "mse" if method == "auto" else method
    report: dict[str, Any] = {
        "model": graph.name, "source": os.fspath(model), "source_format": graph.source_format,
        "profile": prof.name, "io_dtype": plan.io_dtype,
        "ops": graph.op_counts(),
        "calibration": {"samples": len(data), "source": data.describe, "method": method_used},
        "outputs": {"tflite": tfl_path if "tflite" in formats else None, "onnx": onnx_path},
        "input": {"name": in_name, "shape": list(src_shape), "layout": graph.input_layouts.get(in_name, "NHWC"),
                  "scale": plan.activations[in_name].scale, "zero_point": plan.activations[in_name].zero_point},
        "output": [{"name": o, "scale": plan.activations[o].scale, "zero_point": plan.activations[o].zero_point}
                   for o in graph.outputs],
        "fit": dict(fit.to_dict(), summary=fit.summary()),
        "fits": fit.fits,
        "quantization": {"fc_per_channel": pc_fc, "bias_correction": bias_info},
        "calibration_outputs": cal_outputs,
        "held_out": held_stats,
        "sensitivity": sensitivity,
        "timings": {k: round(v, 3) for k, v in timings.items()},
    }
    if not fit.fits:
        from converters.fit import profiles_that_fit

        report["fit"]["fits_profiles"] = profiles_that_fit(tfl_path)
    report_path = write_report(out, report, layer_rows)
    if "tflite" not in formats:
        os.remove(tfl_path)
        tfl_path = None  # type: ignore[assignment]
    return ConversionResult(tfl_path, onnx_path, report_path, report, fit.fits, graph, plan)
