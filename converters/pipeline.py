"""The converter's stable API: ``convert_model(...) -> ConversionResult``.

One call imports a float ONNX or float/hybrid TFLite model, calibrates it, makes one set of
quantization decisions, writes ``<name>_int8.tflite`` and ``<name>_int8.onnx``, sizes the result
against a device profile and writes the quality report (``report.json`` with per-phase ``timings``,
``report.md``; ``report.png`` only with ``plot=True`` or when matplotlib is already loaded). One float
ONNX Runtime session serves calibration, bias correction and the report. It never raises for a
model that does not fit: ``result.fits`` says so, and the ``edge-convert convert`` command turns that
into exit code 3.
"""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional, Sequence, Union

import numpy as np

from converters.calibrate import FloatRuns, calibrate, float_session
from converters.calibration_data import (
    CalibrationDataError,
    InputSpec,
    load_labelled,
    open_calibration,
    open_calibration_inputs,
)
from converters.ir import Graph, index_limits
from converters.quantize import plan_quantization
from edge_runtime.errors import (
    ConfigError,
    EdgeRuntimeError,
    ModelFormatError,
    UnsupportedModelError,
    is_out_of_memory,
)
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


def import_model(path: "str | os.PathLike[str]", input_shapes: Optional[dict[str, tuple[int, ...]]] = None,
                 input_values: Optional[dict[str, np.ndarray]] = None,
                 outputs: Optional[Sequence[str]] = None) -> Graph:
    """Read a .onnx or .tflite (recognised by content, not name) into the IR.

    ``input_shapes`` fixes dynamic ONNX input dimensions (``--input-shape NAME=DIMS``); TFLite
    models have static shapes and take none. ``input_values`` freezes ONNX inputs as constants
    (``--input-value NAME=VALUE``). ``outputs`` (``--outputs``) keeps only the tensors it names as outputs, in
    that order, or cuts the graph at inner tensors (:mod:`converters.importers.select_outputs`).
    """
    p = os.fspath(path)
    head = read_head(p, 8)
    if len(head) >= 8 and head[4:8] == b"TFL3":
        if input_shapes:
            raise ConfigError(f"{p}: --input-shape applies to ONNX models only; a TFLite model's shapes are fixed")
        if input_values:
            raise ConfigError(f"{p}: --input-value applies to ONNX models only")
        from converters.importers.tflite import import_tflite

        return import_tflite(p, outputs=outputs)
    if p.lower().endswith(".tflite"):
        raise ModelFormatError(f"{p}: not a TFLite model (no 'TFL3' identifier)")
    from converters.importers.onnx import import_onnx

    return import_onnx(p, input_shapes=input_shapes, input_values=input_values, outputs=outputs)


def per_channel_fc(profile: Any) -> bool:
    """Per-channel FULLY_CONNECTED weights, except for profiles with a TFLite delegate (Edge TPU, NPU):
    their compilers are documented for per-tensor FC weights (what TF's converter writes) and cannot be
    checked here. LiteRT's CPU kernels and TFLite Micro run per-channel FC weights."""
    return not any(a.kind == "tflite_delegate" for a in getattr(profile, "accelerators", []))


def _refuse_non_finite_weights(model: Any, graph: Graph) -> None:
    """One clear error when a constant (weight, bias, ...) of the imported graph holds NaN or infinity
    (an attention mask's -inf before a softmax is not one: :func:`converters.masked_softmax.mask_constants`)."""
    from converters.masked_softmax import mask_constants

    masks = mask_constants(graph)
    for t in graph.tensors.values():
        d = t.data
        if d is not None and t.name not in masks and np.asarray(d).dtype.kind == "f" and not np.all(np.isfinite(d)):
            bad = int(np.count_nonzero(~np.isfinite(d)))
            raise UnsupportedModelError(f"{model}: constant '{t.name}' holds {bad} NaN or infinite value(s); "
                                        "the float model is broken (retrain or fix its weights)")


#: TFLite Micro's broadcasting kernels (ADD, MUL, DIV, MAXIMUM, comparisons, SELECT_V2...) extend both shapes to
#: 6 dimensions (``RuntimeShape::ExtendedShape(6, ...)``, ``NdArrayDesc<6>``): beyond that they are not defined
MAX_BROADCAST_RANK = 6
BROADCASTING_KINDS = ("ADD", "SUB", "MUL", "DIV", "MAXIMUM", "MINIMUM", "SQUARED_DIFFERENCE", "EQUAL", "NOT_EQUAL",
                      "GREATER", "GREATER_EQUAL", "LESS", "LESS_EQUAL", "LOGICAL_AND", "LOGICAL_OR", "SELECT_V2")


def _refuse_deep_broadcasts(model: Any, graph: Graph) -> None:
    """One clear error naming the node when an elementwise op broadcasts tensors of more than
    :data:`MAX_BROADCAST_RANK` dimensions (TFLite Micro's kernels, and micro's, stop at 6)."""
    for op in graph.ops:
        if op.kind not in BROADCASTING_KINDS:
            continue
        shapes = [graph.tensors[i].shape for i in op.inputs]
        rank = max(len(graph.tensors[o].shape) for o in op.outputs)
        if rank > MAX_BROADCAST_RANK and any(s != shapes[0] for s in shapes):
            raise UnsupportedModelError(
                f"{model}: node '{op.name or op.outputs[0]}' ({op.kind}) broadcasts {' with '.join(map(str, shapes))} "
                f"at rank {rank}; TFLite Micro broadcasts at most {MAX_BROADCAST_RANK} dimensions (reshape to fewer)")


def _refuse_litert_only_ops(model: Any, graph: Graph, profile: Any) -> None:
    """One clear error naming the node when a profile that runs TFLite Micro gets an op TFLM has no kernel for
    (:data:`converters.ir.LITERT_ONLY_KINDS`, e.g. TOPK_V2), or a GATHER of int32 values
    (:func:`converters.ir.gathers_integers`: TFLM's kernel is float32/int8 only)."""
    from converters.fit import runs_tflite_micro
    from converters.ir import LITERT_ONLY_KINDS, gathers_integers, integer_tensors

    if not runs_tflite_micro(profile):
        return
    ints = integer_tensors(graph)
    for op in graph.ops:
        if op.kind in LITERT_ONLY_KINDS:
            raise UnsupportedModelError(
                f"{model}: node '{op.name or op.outputs[0]}' ({op.kind}) has no TFLite Micro kernel, and profile "
                f"'{profile.name}' runs TFLite Micro; convert for a profile with LiteRT (e.g. rpi4-4gb)")
        if gathers_integers(graph, op, ints):  # TFLM's GATHER/GATHER_ND take float32 and int8 data only
            raise UnsupportedModelError(
                f"{model}: node '{op.name or op.outputs[0]}' ({op.kind}) gathers int32 values, which TFLite Micro's "
                f"{op.kind} does not support, and profile '{profile.name}' runs TFLite Micro; convert for a profile "
                "with LiteRT (e.g. rpi4-4gb)")


def _give_back_freed_memory() -> None:
    """Return the heap that finished steps freed to the OS (glibc keeps it otherwise), so the next step's
    peak does not stack on it: importing a 2M-parameter model leaves about 20 MB freed. No-op off glibc.
    (A full ``gc.collect()`` first would give back 15 MB more but costs 0.2 s.)"""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


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


def _held_out_inputs(held_out: Any, inputs: Sequence[InputSpec]) -> tuple[Optional[list], Optional[np.ndarray]]:
    """Held-out samples (tuples ordered as ``inputs``) and labels of a model with several inputs: ``(x, y)`` or
    ``x`` with ``x`` a dict ``{input name: array}``, or a .npz holding one array per input name (and ``y``)."""
    if held_out is None:
        return None, None
    y = None
    if isinstance(held_out, tuple):
        x, y = held_out[0], (held_out[1] if len(held_out) > 1 else None)
    elif isinstance(held_out, dict):
        x = held_out
    else:
        p = os.fspath(held_out)
        if not os.path.isfile(p) or not p.endswith(".npz"):
            raise CalibrationDataError(f"{p}: held-out data for a model with {len(inputs)} inputs must be a .npz "
                                       f"holding one array per input {[n for n, _, _ in inputs]} (and labels 'y')")
        with np.load(p, allow_pickle=False) as z:
            x = {k: z[k] for k in z.keys() if k != "y"}
            y = z["y"] if "y" in z else None
    if not isinstance(x, dict):
        raise CalibrationDataError(f"held-out data for a model with {len(inputs)} inputs must be a dict "
                                   "{input name: array} (or a .npz holding one array per input)")
    samples = list(open_calibration_inputs(x, inputs, what="held-out data"))
    if y is not None:
        y = np.asarray(y).reshape(-1)
        if len(y) != len(samples):
            raise CalibrationDataError(f"held-out data has {len(samples)} samples but {len(y)} labels")
    return samples, y


def _refuse_several_inputs(model: Any, n_inputs: int, features: dict[str, bool]) -> None:
    """One line naming the first feature asked for that supports single-input models only."""
    for name, asked in features.items():
        if asked:
            raise ConfigError(f"{os.fspath(model)}: {name} supports single-input models only; this model has "
                              f"{n_inputs} inputs")


def _input_entry(graph: Graph, plan: Any, spec: InputSpec) -> dict[str, Any]:
    """The report's description of one model input: name, shape, layout and quantization (an integer input
    is not quantized: its dtype and index limit instead)."""
    name, shape, index_limit = spec
    if name not in graph.input_dtypes:
        return {"name": name, "shape": list(shape), "layout": graph.input_layouts.get(name, "NHWC"),
                "scale": plan.activations[name].scale, "zero_point": plan.activations[name].zero_point}
    return {"name": name, "shape": list(shape), "layout": "NHWC", "scale": None, "zero_point": None,
            "dtype": graph.input_dtypes[name], "index_limit": None if index_limit is True else index_limit}


def convert_model(model: "str | os.PathLike[str]", profile: Any, calib: Any, out_dir: "str | os.PathLike[str]",
                  formats: Sequence[str] = FORMATS, method: str = "auto", held_out: HeldOut = None,
                  progress: bool = False, *, limit: Optional[int] = None, bin_scale: Optional[float] = None,
                  bin_zero_point: int = 0, preprocessor: Optional[Callable[[str], np.ndarray]] = None,
                  preprocess: Optional[str] = None,
                  io_dtype: Optional[str] = None, report_samples: int = 32,
                  input_shapes: Optional[dict[str, tuple[int, ...]]] = None, task: str = "auto",
                  analyze: bool = False, bias_correction: bool = True,
                  fc_per_channel: Optional[bool] = None, equalize: bool = True,
                  adaround: bool = False, activations: str = "int8",
                  target_sqnr: Optional[float] = None, plot: Optional[bool] = None,
                  precision_policy: str = "auto",
                  input_values: Optional[dict[str, np.ndarray]] = None,
                  recalibrate_qdq: bool = False, outputs: Optional[Sequence[str]] = None) -> ConversionResult:
    """Convert ``model`` to int8 for ``profile`` using calibration data ``calib``; write into ``out_dir``.

    ``profile``: a shipped profile name, a YAML path or a ``DeviceProfile``. ``calib``: see
    :func:`converters.calibration_data.open_calibration`. ``method``: ``auto`` (MSE-optimal),
    ``minmax``, ``percentile`` or ``mse``. ``held_out``: ``(x, y)``, ``x``, or a .npz with ``x``
    (and ``y``) in the source model's input layout. ``io_dtype`` overrides the profile's.
    ``preprocess``: an :mod:`edge_runtime.preprocess` preset or YAML turning .wav/image calibration
    files into inputs (or pass your own ``preprocessor`` callable). ``input_shapes``: fixed shapes
    for dynamic ONNX inputs, e.g. ``{"input": (1, 3, 224, 224)}`` (a dynamic batch alone becomes 1);
    ``input_values``: ONNX inputs frozen as constants, e.g. ``{"sr": np.array(16000)}``.
    ``task``: ``auto``, ``classify`` or ``regress``: which outputs get top-1 in the report (see
    :mod:`converters.quality.metrics`). ``analyze``: add the per-layer sensitivity analysis
    (:mod:`converters.quality.sensitivity`) to the report. ``bias_correction`` (default on): fold the
    mean weight-quantization error into the biases (:mod:`converters.quality.bias_correction`).
    ``fc_per_channel``: per-channel FULLY_CONNECTED weights (default: :func:`per_channel_fc` of the profile).
    ``equalize`` (default on): cross-layer equalization of the float graph first
    (:mod:`converters.quality.equalization`; measured in ``benchmarks/quant_techniques.py``).
    ``adaround``: optimise the rounding of the int8 weights on calibration data
    (:mod:`converters.quality.adaround`; off by default, slower).
    ``activations``: ``int8`` or ``int16`` (every op with an int16 kernel in 16x8 form); ``target_sqnr``:
    raise the worst layers (int16, then float islands on profiles with an OS) until every output reaches
    it (:mod:`converters.quality.mixed_precision`; the report's ``mixed_precision`` says what changed).
    ``precision_policy``: ``auto`` (default) raises the ops int8 cannot represent well when neither
    ``activations`` int16 nor ``target_sqnr`` is given (LSTM/GRU recurrences to int16, LayerNorm statistics
    to float islands on profiles with an OS: :mod:`converters.quality.default_precision`); ``int8`` keeps
    every op in int8.
    ``plot``: write report.png (default: only when matplotlib is already loaded, see
    :func:`converters.report.want_plot`). ``report["timings"]`` gives the seconds of each phase.
    A QDQ ONNX source (already quantized) keeps its own scale and zero point on every activation a
    QuantizeLinear/DequantizeLinear pair fixes and its int8 weights where TFLite's kernels take them; only the
    rest is calibrated (no cross-layer equalization: it would move the model's ranges). ``recalibrate_qdq``:
    calibrate every range instead, as for a float model. ``report["qdq"]`` says which came from where.
    ``outputs`` (``--outputs``): convert only these tensors as the outputs, in this order: outputs of the model
    or inner tensors to cut it at (``report["selected_outputs"]``); unknown names are one ConfigError line.
    """
    from converters.fit import fit_model
    from converters.quality.metrics import compare_outputs, output_kinds
    from converters.report import (
        OnnxRunner,
        TFLiteRunner,
        compare_on_samples,
        evaluate_held_out,
        write_report,
    )
    from device_profiles import load_profile

    formats = tuple(formats)
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ConfigError(f"unknown output format(s) {bad or formats}; choose from {', '.join(FORMATS)}")
    from converters.quality.metrics import TASKS

    if task not in TASKS:
        raise ConfigError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
    if plot:
        import importlib.util

        if importlib.util.find_spec("matplotlib") is None:
            raise ConfigError("the plot (--plot) needs matplotlib: pip install matplotlib, or 'edge-runtime[convert]'")
    prof = load_profile(profile)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    with _one_line(model, "importing the model"):
        graph = import_model(model, input_shapes, input_values, outputs)
    if prof.microcontroller:
        # one int8 HARD_SWISH instead of ADD/RELU6, MUL, MUL: fewer ops and intermediates for TFLite Micro,
        # same accuracy; not on OS profiles, where LiteRT's XNNPACK delegate takes the three ops but not an
        # int8 HARD_SWISH (PP-OCR's classifier: 2.43 ms instead of 0.76 ms on LiteRT, 1 thread)
        from converters.importers.hard_swish import fuse_hard_swish

        graph = fuse_hard_swish(graph)
    _refuse_non_finite_weights(model, graph)
    _refuse_deep_broadcasts(model, graph)
    _refuse_litert_only_ops(model, graph, prof)
    _give_back_freed_memory()
    qdq = qdq_fixed = None
    if graph.source_format == "onnx":
        from converters.qdq_source import qdq_source

        with _one_line(model, "reading the QDQ model's quantization parameters"):
            qdq = qdq_source(model, graph, recalibrate_qdq)
        if qdq is not None and not recalibrate_qdq:
            qdq_fixed = qdq
            equalize = False  # equalization rescales weights and activations: the model's ranges would not fit
    eq_info = None
    if equalize:
        from converters.quality.equalization import equalize as equalize_graph

        with _one_line(model, "equalizing the float graph"):
            eq_info = equalize_graph(graph)
    n_in = len(graph.inputs)
    if n_in > 1:
        _refuse_several_inputs(model, n_in, {"--adaround": adaround, "--analyze": analyze,
                                             "--activations int16": activations != "int8",
                                             "--target-sqnr": target_sqnr is not None,
                                             "--preprocess": preprocess is not None or preprocessor is not None,
                                             "--bin-scale (.bin calibration files)": bin_scale is not None})
    in_name = graph.inputs[0]
    src_shape = graph.source_shape(in_name)
    if preprocess is not None and preprocessor is None:
        from converters.calibration_data import preprocessor_from_config

        preprocessor = preprocessor_from_config(preprocess, in_name, src_shape)
    # token ids, bytes, indices: int32 samples below the table size (True: a table of unknown size)
    limits = index_limits(graph) if any(n in graph.input_dtypes for n in graph.inputs) else {}
    specs: list[InputSpec] = [(n, graph.source_shape(n), limits.get(n, True) if n in graph.input_dtypes else None)
                              for n in graph.inputs]
    index_limit = specs[0][2]
    if n_in == 1 and not isinstance(calib, dict):
        data = open_calibration(calib, src_shape, in_name, limit=limit, bin_scale=bin_scale,
                                bin_zero_point=bin_zero_point, preprocessor=preprocessor, index_limit=index_limit)
    else:  # {name: array}, a .npz with one array per input, or a folder of those
        data = open_calibration_inputs(calib, specs, limit=limit)
    timings["import_s"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    with _one_line(model, "calibrating the imported graph"):
        sess = float_session(graph)
        float_runs = FloatRuns(graph, sess)  # one float pass serves ranges, bias correction and the report
        mean_obs = None
        if bias_correction:
            from converters.quality.bias_correction import InputMeans

            mean_obs = InputMeans(graph)
        ranges = calibrate(graph, data, method, progress=progress, runs=float_runs,
                           observers=[mean_obs] if mean_obs is not None else (),
                           fixed=qdq_fixed.ranges if qdq_fixed is not None else None)
        float_runs.release(keep_first=report_samples)
    timings["calibrate_s"] = time.perf_counter() - t1
    t_q = time.perf_counter()
    with _one_line(model, "quantizing the calibrated graph"):
        pc_fc = per_channel_fc(prof) if fc_per_channel is None else fc_per_channel
        kept_weights = None
        if qdq_fixed is not None:
            from converters.qdq_source import fixed_weights

            kept_weights, qdq_fixed.weights_left = fixed_weights(graph, qdq_fixed.params, pc_fc)
            qdq_fixed.weights_kept = sorted(kept_weights)
            qdq_fixed.log()
        plan = plan_quantization(graph, ranges, io_dtype or prof.io_dtype, per_channel_fc=pc_fc,
                                 weights=kept_weights or None)
        bias_info = ada_info = means = None
        if adaround:
            from converters.quality.adaround import adaround as adaround_weights

            ada_info = adaround_weights(graph, plan, sess, data, progress=progress)
            if kept_weights:  # the QDQ model's own int8 weights stay as it rounded them
                plan.weights.update(kept_weights)
        if bias_correction:
            from converters.quality.bias_correction import correct_biases

            means = mean_obs.means() if mean_obs is not None else None
            bias_info = correct_biases(graph, plan, means)
    timings["quantize_s"] = time.perf_counter() - t_q
    out = _output_dir(out_dir)
    from converters.quality import default_precision

    policy = default_precision.choose(graph, not prof.microcontroller, precision_policy, ranges=ranges)
    if policy.precision and activations == "int8" and target_sqnr is None:
        t_dp = time.perf_counter()
        with _one_line(model, "applying the default precision policy"):
            plan = default_precision.apply(graph, sess, data, plan, ranges, pc_fc, means, policy)
        timings["default_precision_s"] = time.perf_counter() - t_dp
    mixed = None
    if activations != "int8" or target_sqnr is not None:
        from converters.quality import mixed_precision

        t_mp = time.perf_counter()
        with _one_line(model, "choosing mixed precision"):
            plan, mixed = mixed_precision.apply(graph, sess, data, plan, ranges, prof, pc_fc, means, activations,
                                                target_sqnr, out, progress, report_samples,
                                                start_precision=policy.precision if activations == "int8" else None,
                                                start_reasons=policy.reasons if activations == "int8" else None)
        timings["mixed_precision_s"] = time.perf_counter() - t_mp
    if qdq_fixed is not None:  # a symmetric int16 pair of the model on a tensor written in int16 keeps its scale
        qdq_fixed.keep_int16(graph, plan, means)
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
    _give_back_freed_memory()
    if n_in > 1 or isinstance(held_out, dict):
        hx, hy = _held_out_inputs(held_out, specs)
    else:
        hx, hy = _held_out(held_out, src_shape)
    if hx is not None and index_limit is not None and n_in == 1 and not isinstance(held_out, dict):
        from converters.calibration_data import as_index_sample

        hx = np.stack([as_index_sample(x, src_shape, in_name, None if index_limit is True else index_limit,
                                       "held-out data") for x in hx])
    with _one_line(model, f"sizing and running the written {os.path.basename(tfl_path)}"):
        t_fit = time.perf_counter()
        fit = fit_model(tfl_path, prof)
        timings["fit_s"] = time.perf_counter() - t_fit
        t3 = time.perf_counter()
        layer_rows, cal_f, cal_q = compare_on_samples(graph, sess, TFLiteRunner(tfl_path, preserve=True),
                                                      (x for i, x in enumerate(data) if i < report_samples),
                                                      float_values=float_runs)
        float_runs.release()
        cal_outputs = compare_outputs(graph.outputs, output_kinds(graph, task, hy), cal_f, cal_q)
        if mixed is not None:
            mixed = mixed_precision.report_section(mixed, tfl_path, fit, graph.name)
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
        "input": _input_entry(graph, plan, specs[0]),
        "output": [{"name": o, "scale": plan.activations[o].scale, "zero_point": plan.activations[o].zero_point}
                   for o in graph.outputs],
        "fit": dict(fit.to_dict(), summary=fit.summary()),
        "fits": fit.fits,
        "quantization": {"fc_per_channel": pc_fc, "bias_correction": bias_info, "equalization": eq_info,
                         "adaround": ada_info, "precision": plan.precision()},
        "mixed_precision": mixed,
        "calibration_outputs": cal_outputs,
        "held_out": held_stats,
        "sensitivity": sensitivity,
        "timings": {k: round(v, 3) for k, v in timings.items()},
    }
    if qdq is not None:
        report["qdq"] = qdq.section(graph, plan)
    if outputs is not None:  # --outputs: the tensors chosen as the model's outputs, in order
        report["selected_outputs"] = list(outputs)
    if n_in > 1:
        report["inputs"] = [_input_entry(graph, plan, spec) for spec in specs]
    if not fit.fits:
        from converters.fit import profiles_that_fit

        report["fit"]["fits_profiles"] = profiles_that_fit(tfl_path)
    report_path = write_report(out, report, layer_rows, plot_png=plot)
    if "tflite" not in formats:
        os.remove(tfl_path)
        tfl_path = None  # type: ignore[assignment]
    return ConversionResult(tfl_path, onnx_path, report_path, report, fit.fits, graph, plan)
