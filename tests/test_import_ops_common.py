"""Shared harness for the ``test_import_ops_*`` tests (no tests of its own).

:func:`check_onnx` takes a small float ONNX model (built with ``onnx.helper``), imports it, and checks:

1. layout/semantics: the float IR (run in onnxruntime) equals onnxruntime on the original model;
2. the int8 .tflite runs on LiteRT with a sensible SQNR against the original float model;
3. tflite-micro runs it and agrees with LiteRT to a few LSB; the project's micro backend is
   bit-exact with tflite-micro where it has every kernel the model uses;
4. the QDQ .onnx runs on onnxruntime with a sensible SQNR.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
from helpers import micro_available

from converters.calibrate import calibrate, float_session, run_float
from converters.calibration_data import open_calibration
from converters.importers.onnx import import_onnx
from converters.ir import Graph
from converters.quantize import plan_quantization
from converters.report import OnnxRunner, TFLiteRunner
from converters.writers.onnx import write_onnx
from converters.writers.tflite import write_tflite

HELD_OUT = 8
CALIB = 24


@dataclass
class Checked:
    """What :func:`check_onnx` measured."""

    graph: Graph
    tflite_sqnr: float
    onnx_sqnr: float
    tflm_ran: bool
    micro_exact: Optional[bool]
    tflite_path: str
    plan: Any = None


def sqnr(ref: np.ndarray, got: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio in dB."""
    noise = float(np.mean((ref.astype(np.float64) - got) ** 2))
    signal = float(np.mean(ref.astype(np.float64) ** 2))
    return 99.0 if noise == 0 else 10 * np.log10(max(signal, 1e-20) / noise)


def make_model(nodes: list, inputs: list, outputs: list, inits: Optional[list] = None, opset: int = 13,
               name: str = "test") -> Any:
    """An ONNX model from ``onnx.helper`` parts, checked."""
    import onnx
    from onnx import helper

    g = helper.make_graph(nodes, name, inputs, outputs, inits or [])
    extra = sorted({nd.domain for nd in nodes if nd.domain not in ("", "ai.onnx")})
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)] + [helper.make_opsetid(d, 1) for d in extra])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def save_model(path: "os.PathLike[str]", nodes: list, inputs: list, outputs: list, inits: Optional[list] = None,
               opset: int = 13) -> Any:
    """:func:`make_model` saved to ``path`` (the graph named after the file's stem); returns ``path``."""
    import onnx

    onnx.save(make_model(nodes, inputs, outputs, inits, opset, name=os.path.splitext(os.path.basename(path))[0]),
              os.fspath(path))
    return path


def _ir_to_src(graph: Graph, name: str, v: np.ndarray) -> np.ndarray:
    """IR outputs are NHWC for 4-D tensors; the ONNX model's are NCHW."""
    return v.transpose(0, 3, 1, 2) if v.ndim == 4 else v


def check_onnx(model: Any, tmp_path: Any, input_shape: tuple[int, ...], *, low: float = -1.0, high: float = 1.0,
               min_sqnr: float = 20.0, atol: float = 1e-4, seed: int = 0, tflm: bool = True) -> Checked:
    """Convert ``model`` and run every check; returns the measurements. ``atol`` bounds the float IR's
    difference from onnxruntime (models with GELU need about 2e-3: the IR computes its tanh form);
    ``tflm=False`` skips tflite-micro."""
    import onnx
    import onnxruntime as ort

    path = os.path.join(str(tmp_path), "model.onnx")
    onnx.save(model, path)
    graph = import_onnx(path)
    rng = np.random.default_rng(seed)
    data = (rng.random((CALIB + HELD_OUT, 1) + tuple(input_shape[1:]), dtype=np.float32) * (high - low) + low)
    in_name = graph.inputs[0]
    orig = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    sess = float_session(graph)
    refs = []
    for x in data[CALIB:]:
        want = orig.run(None, {orig.get_inputs()[0].name: x})
        got = run_float(sess, graph, graph.to_ir_layout(in_name, x))
        for o, w in zip(graph.outputs, want):
            np.testing.assert_allclose(_ir_to_src(graph, o, got[o]), w, rtol=1e-4, atol=atol,
                                       err_msg=f"float IR output {o} differs from onnxruntime")
        refs.append(want[0].transpose(0, 2, 3, 1) if want[0].ndim == 4 else want[0])  # the original, IR layout
    calib = open_calibration(data[:CALIB], graph.source_shape(in_name), in_name)
    ranges = calibrate(graph, calib, "minmax", session=sess)
    plan = plan_quantization(graph, ranges)
    tfl = os.path.join(str(tmp_path), "model_int8.tflite")
    qdq = os.path.join(str(tmp_path), "model_int8.onnx")
    write_tflite(graph, plan, tfl)
    write_onnx(graph, plan, qdq)
    lite = TFLiteRunner(tfl, preserve=True)
    onnx_run = OnnxRunner(qdq, plan, graph)
    lite_out = np.stack([lite.run(graph.to_ir_layout(in_name, x))[0] for x in data[CALIB:]])
    onnx_out = np.stack([onnx_run.run(x)[0] for x in data[CALIB:]])
    ref = np.stack(refs)
    s_lite = sqnr(ref, lite_out.reshape(ref.shape))
    s_onnx = sqnr(ref, onnx_out.reshape(ref.shape))
    assert s_lite >= min_sqnr, f"LiteRT int8 SQNR {s_lite:.1f} dB < {min_sqnr}"
    assert s_onnx >= min_sqnr, f"QDQ ONNX SQNR {s_onnx:.1f} dB < {min_sqnr}"
    tflm_ran, micro_exact = (_check_micro(tfl, lite, graph, data[CALIB:CALIB + 4]) if tflm else (False, None))
    return Checked(graph, s_lite, s_onnx, tflm_ran, micro_exact, tfl, plan)


def _check_micro(tfl: str, lite: TFLiteRunner, graph: Graph, xs: np.ndarray) -> tuple[bool, Optional[bool]]:
    """tflite-micro against LiteRT (a few LSB), and the micro backend bit-exact against tflite-micro."""
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError:
        return False, None
    tflm = runtime.Interpreter.from_file(tfl, arena_size=8 << 20)
    micro = None
    if micro_available():
        import edge_runtime
        from edge_runtime.errors import UnsupportedModelError

        try:
            micro = edge_runtime.load(tfl, backend="micro")
        except UnsupportedModelError:
            micro = None  # a kernel micro does not have yet
    exact: Optional[bool] = None if micro is None else True
    for x in xs:
        q = TFLiteRunner._q(graph.to_ir_layout(graph.inputs[0], x), lite.inp)
        tflm.set_input(q, 0)
        tflm.invoke()
        ref = tflm.get_output(0)
        got = lite.run_raw(q)
        assert np.abs(ref.astype(int) - got.astype(int)).max() <= 3, "tflite-micro and LiteRT disagree"
        if micro is not None:
            exact = exact and bool(np.array_equal(micro.run(q)[0], ref))
    return True, exact


def check_tflite(path: str, tmp_path: Any, *, low: float = -1.0, high: float = 1.0, min_sqnr: float = 20.0,
                 atol: float = 1e-4, seed: int = 0, tflm: bool = True) -> Checked:
    """The same checks for a float .tflite: the float IR equals LiteRT on the float model, then int8."""
    from converters.importers.tflite import import_tflite
    from converters.report import litert_interpreter

    graph = import_tflite(path)
    it = litert_interpreter(path)
    it.allocate_tensors()
    inp, outs = it.get_input_details()[0], it.get_output_details()
    rng = np.random.default_rng(seed)
    shape = tuple(inp["shape"])
    data = rng.random((CALIB + HELD_OUT, 1) + shape[1:], dtype=np.float32) * (high - low) + low
    sess = float_session(graph)
    refs = []
    for x in data[CALIB:]:
        it.reset_all_variables()  # stateful ops (LSTM) start every sample from zeros
        it.set_tensor(inp["index"], x)
        it.invoke()
        want = [it.get_tensor(d["index"]) for d in outs]
        got = run_float(sess, graph, x)
        for o, wv in zip(graph.outputs, want):
            np.testing.assert_allclose(got[o], wv, rtol=1e-4, atol=atol, err_msg=f"float IR output {o} differs from LiteRT")
        refs.append(got[graph.outputs[0]])
    in_name = graph.inputs[0]
    calib = open_calibration(data[:CALIB], graph.source_shape(in_name), in_name)
    plan = plan_quantization(graph, calibrate(graph, calib, "minmax", session=sess))
    tfl = os.path.join(str(tmp_path), "model_int8.tflite")
    qdq = os.path.join(str(tmp_path), "model_int8.onnx")
    write_tflite(graph, plan, tfl)
    write_onnx(graph, plan, qdq)
    lite = TFLiteRunner(tfl, preserve=True)
    onnx_run = OnnxRunner(qdq, plan, graph)
    ref = np.stack(refs)
    s_lite = sqnr(ref, np.stack([lite.run(x)[0] for x in data[CALIB:]]).reshape(ref.shape))
    s_onnx = sqnr(ref, np.stack([onnx_run.run(x)[0] for x in data[CALIB:]]).reshape(ref.shape))
    assert s_lite >= min_sqnr, f"LiteRT int8 SQNR {s_lite:.1f} dB < {min_sqnr}"
    assert s_onnx >= min_sqnr, f"QDQ ONNX SQNR {s_onnx:.1f} dB < {min_sqnr}"
    tflm_ran, micro_exact = (_check_micro(tfl, lite, graph, data[CALIB:CALIB + 4]) if tflm else (False, None))
    return Checked(graph, s_lite, s_onnx, tflm_ran, micro_exact, tfl, plan)
