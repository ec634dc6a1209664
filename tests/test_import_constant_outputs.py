"""A graph output that is a constant (anchors, a fixed table) is written by an ADD of zero
(converters/importers/onnx_ops/control.py: constant_output), so TFLite has an op producing it.

The graph is built with the importer's own context (an input, a RELU, and the constant output), quantized and
written; LiteRT gives the constant back within half an int8 step of its own scale, tflite-micro agrees, and
micro == tflite-micro on every output. A non-float constant output is refused in one line.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

from converters.importers.onnx import dispatch
from converters.importers.onnx_ops.context import ImportContext
from converters.importers.onnx_ops.control import constant_output
from converters.ir import TO_NHWC, Graph
from edge_runtime.errors import UnsupportedModelError


def _graph(value: np.ndarray) -> Graph:
    ctx = ImportContext("m.onnx", {"anchors": value}, {"x": (1, 8)}, dispatch)
    ctx.output(None, "x")
    ctx.emit("RELU", ["x"], "y", {}, shape=(1, 8))
    out = constant_output(ctx, "anchors")
    return Graph(name="m", tensors=ctx.tensors, ops=ctx.ops, inputs=["x"], outputs=["y", out], source_format="onnx")


@pytest.mark.parametrize("shape", [(1, 3, 2, 5), (6, 4), (7,), ()])
def test_constant_output_is_written_and_runs_everywhere(tmp_path, shape):
    from converters.calibrate import calibrate, float_session
    from converters.calibration_data import open_calibration
    from converters.quantize import plan_quantization
    from converters.report import TFLiteRunner
    from converters.writers.tflite import write_tflite

    rng = np.random.default_rng(len(shape))
    value = rng.uniform(-2, 3, shape).astype(np.float32)
    graph = _graph(value)
    want = value.transpose(TO_NHWC) if value.ndim == 4 else value.reshape(value.shape or (1,))
    assert graph.tensors[graph.outputs[1]].shape == want.shape
    data = rng.uniform(-1, 1, (16, 1, 8)).astype(np.float32)
    sess = float_session(graph)
    plan = plan_quantization(graph, calibrate(graph, open_calibration(data, (1, 8), "x"), "minmax", session=sess))
    path = os.path.join(str(tmp_path), "m_int8.tflite")
    write_tflite(graph, plan, path)
    lite = TFLiteRunner(path, preserve=True)
    got = np.asarray(lite.run(data[0])[1], np.float32).reshape(want.shape)
    step = max(float(np.ptp(want)), float(np.abs(want).max())) / 255  # the constant's own int8 scale, at most
    assert np.abs(got - want).max() <= 0.5 * step + 1e-6, "LiteRT int8 output differs from the constant"
    tflm_runtime = pytest.importorskip("tflite_micro.python.tflite_micro.runtime")
    import edge_runtime

    q = TFLiteRunner._q(data[1], lite.inp)
    tflm = tflm_runtime.Interpreter.from_file(path, arena_size=1 << 20)
    tflm.set_input(q, 0)
    tflm.invoke()
    micro = edge_runtime.load(path, backend="micro").run(q)
    for k in range(2):
        assert np.array_equal(tflm.get_output(k), micro[k]), f"micro output {k} differs from tflite-micro"
    assert np.array_equal(tflm.get_output(1), lite.run_raw(q, output=1)), "tflite-micro and LiteRT disagree"


def test_integer_constant_output_is_refused_in_one_line():
    ctx = ImportContext("m.onnx", {"shape": np.array([1, 8], np.int64)}, {"x": (1, 8)}, dispatch)
    with pytest.raises(UnsupportedModelError) as info:
        constant_output(ctx, "shape")
    msg = str(info.value)
    assert "\n" not in msg and "'shape' (graph output)" in msg and "int64" in msg, msg
