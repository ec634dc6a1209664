"""How good a model is on the user's data, and how much a compression step cost.

One metric is chosen from the data and the model, and used before and after:

- ``accuracy`` (percent top-1) when labels are given;
- ``anomaly_score`` for autoencoders (output shaped like the input): the mean over samples of the
  MSE between input and output, as in MLPerf Tiny's anomaly detection. Its *drop* is the relative
  change in percent (``|after - before| / before * 100``), so ``--max-drop 6`` means "within 6 %";
- ``agreement`` (percent top-1 agreement with the uncompressed model) otherwise.

The drop is always in points: percentage points of accuracy or agreement, or percent of score.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

from converters.ir import Graph

Runner = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Quality:
    """One measured figure of merit."""

    metric: str
    value: float
    samples: int

    def drop_from(self, before: "Quality") -> float:
        """Points lost going from ``before`` to this (positive = worse)."""
        if self.metric != before.metric:
            raise ValueError(f"cannot compare {self.metric} with {before.metric}")
        if self.metric == "anomaly_score":
            return abs(self.value - before.value) / max(abs(before.value), 1e-12) * 100.0
        return before.value - self.value

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {"metric": self.metric, "value": round(self.value, 6), "samples": self.samples}


def float_runner(graph: Graph) -> Runner:
    """Run the float IR (ONNX Runtime) on one sample in the source layout; return its first output."""
    from converters.calibrate import float_session

    sess = float_session(graph, expose_all=False)
    name = graph.inputs[0]
    shape = graph.tensors[name].shape

    def run(x_src: np.ndarray) -> np.ndarray:
        x = graph.to_ir_layout(name, np.asarray(x_src, np.float32).reshape((1,) + tuple(x_src.shape[-len(shape) + 1:]))
                               if x_src.ndim == len(shape) - 1 else np.asarray(x_src, np.float32))
        return np.asarray(sess.run(None, {name: x.reshape(shape)})[0], np.float32)

    return run


def runtime_runner(path: "str | os.PathLike[str]", backend: str = "litert",
                   source_layout: Optional[str] = None,
                   io_params: Optional[tuple[tuple[float, int], tuple[float, int]]] = None) -> Runner:
    """Run a model file through :func:`edge_runtime.load` on one sample (source layout, float).

    Inputs are converted to the model's layout (``source_layout='NCHW'`` and a .tflite model,
    which is NHWC, means a transpose) and quantized with the model's input parameters; outputs are
    dequantized. ``io_params`` ((in_scale, in_zp), (out_scale, out_zp)) supplies them for models
    whose integer I/O carries no parameters the runtime can see (the converter's int8 ONNX).
    """
    import edge_runtime

    from edge_runtime.model import TensorSpec

    model = edge_runtime.load(os.fspath(path), backend=backend)
    spec, ospec = model.inputs[0], model.outputs[0]
    if io_params is not None and not spec.quantized and np.dtype(spec.dtype).kind == "i":
        (si, zi), (so, zo) = io_params
        spec = TensorSpec(spec.name, spec.shape, spec.dtype, float(si), int(zi))
        ospec = TensorSpec(ospec.name, ospec.shape, ospec.dtype, float(so), int(zo))
    shape = tuple(1 if d < 0 else int(d) for d in spec.shape)  # a dynamic batch runs one sample
    nhwc_model = model.backend in ("litert", "micro")

    def run(x_src: np.ndarray) -> np.ndarray:
        x = np.asarray(x_src, np.float32)
        if x.size != int(np.prod(shape)):
            raise ValueError(f"sample of shape {x.shape} does not fit input {spec.shape}")
        if source_layout == "NCHW" and len(shape) == 4 and nhwc_model:
            n, h, w, c = shape
            x = x.reshape(n, c, h, w).transpose(0, 2, 3, 1)
        x = x.reshape(shape)
        q = spec.quantize(x) if spec.quantized else x.astype(spec.dtype)
        return ospec.dequantize(model.run(q)[0])

    return run


def outputs_of(run: Runner, x: np.ndarray) -> np.ndarray:
    """Stack ``run`` over the samples of ``x`` (first axis), flattened per sample."""
    return np.stack([run(xi).reshape(-1) for xi in x])


def measure(outputs: np.ndarray, x: np.ndarray, y: Optional[np.ndarray] = None,
            reference: Optional[np.ndarray] = None) -> Quality:
    """The figure of merit of ``outputs`` (one row per sample of ``x``), see the module docstring."""
    n = len(outputs)
    if y is not None:
        return Quality("accuracy", float(np.mean(outputs.argmax(axis=1) == np.asarray(y).reshape(-1)) * 100), n)
    flat_x = np.asarray(x, np.float64).reshape(n, -1)
    if outputs.shape[1] == flat_x.shape[1]:
        return Quality("anomaly_score", float(np.mean(np.mean((flat_x - outputs) ** 2, axis=1))), n)
    if reference is None:
        reference = outputs
    return Quality("agreement", float(np.mean(outputs.argmax(axis=1) == reference.argmax(axis=1)) * 100), n)


__all__ = ["Quality", "float_runner", "runtime_runner", "outputs_of", "measure"]
