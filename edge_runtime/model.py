"""The Model: one interface over every backend.

A backend subclasses :class:`Model` and implements ``_invoke``. The base class
owns input validation, so every backend reports a wrong name, shape or dtype
the same way.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence, Union

import numpy as np

from edge_runtime.errors import InputError
from edge_runtime.quantization import dequantize_affine, quantize_affine

ArrayInputs = Union[np.ndarray, Sequence[np.ndarray], Mapping[str, np.ndarray]]


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape, dtype and quantization of one model input or output.

    ``scale`` and ``zero_point`` are per-tensor values; ``None`` when the tensor is
    not quantized. Per-channel parameters (weights only) are not exposed here.
    """

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    scale: float | None = None
    zero_point: int | None = None

    @property
    def quantized(self) -> bool:
        """True when the tensor holds integers that stand for real values."""
        return self.scale is not None and self.scale != 0.0

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """Map real values to this tensor's integer type (round half away from zero, clamp)."""
        if not self.quantized:
            return np.asarray(x, dtype=self.dtype)
        x = np.asarray(x)
        if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
            bad = int(np.count_nonzero(~np.isfinite(x)))
            raise InputError(f"input '{self.name}': {bad} value(s) are NaN or infinite; they cannot be quantized")
        return quantize_affine(x, self.scale, self.zero_point, self.dtype)  # type: ignore[arg-type]

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        """Map this tensor's integers back to real values (float32)."""
        if not self.quantized:
            return np.asarray(q, dtype=np.float32)
        return dequantize_affine(q, self.scale, self.zero_point)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly description."""
        return {
            "name": self.name,
            "shape": list(self.shape),
            "dtype": np.dtype(self.dtype).name,
            "scale": self.scale,
            "zero_point": self.zero_point,
        }


@dataclass
class Model:
    """A loaded model. Use :func:`edge_runtime.load` to make one.

    ``run`` takes one array (single-input models), a sequence in input order, or
    a mapping from input name to array, and returns the outputs in output order.
    """

    path: str
    backend: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    info: dict[str, Any] = field(default_factory=dict)

    # -- public API ---------------------------------------------------------
    def run(self, inputs: ArrayInputs) -> list[np.ndarray]:
        """Validate ``inputs`` against the input specs and run one inference."""
        return self._invoke(self.check_inputs(inputs))

    def reset(self) -> None:
        """Restore the model's state to what it was right after loading.

        Stateful models (variable tensors, resource variables, CALL_ONCE init
        subgraphs, e.g. streaming models) keep state across :meth:`run` calls;
        after ``reset()`` the next ``run`` gives what a freshly loaded model gives.
        Backends whose models are stateless (ONNX Runtime sessions here) do nothing.
        """

    def close(self) -> None:
        """Release backend resources. Safe to call twice."""

    def __enter__(self) -> "Model":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> dict[str, Any]:
        """Inputs, outputs and backend details as a JSON-friendly dict."""
        return {
            "path": self.path,
            "backend": self.backend,
            "inputs": [s.to_dict() for s in self.inputs],
            "outputs": [s.to_dict() for s in self.outputs],
            "info": dict(self.info),
        }

    # -- validation ---------------------------------------------------------
    def check_inputs(self, inputs: ArrayInputs) -> list[np.ndarray]:
        """Return the inputs as a list in input order, or raise :class:`InputError`."""
        specs = self.inputs
        if isinstance(inputs, Mapping):
            names = [s.name for s in specs]
            missing = [n for n in names if n not in inputs]
            extra = [n for n in inputs if n not in names]
            if missing or extra:
                raise InputError(
                    f"input names do not match the model: missing {missing}, unexpected {extra}; "
                    f"the model's inputs are {names}"
                )
            arrays = [inputs[n] for n in names]
        elif isinstance(inputs, np.ndarray) or np.isscalar(inputs):
            arrays = [inputs]  # type: ignore[list-item]
        else:
            arrays = list(inputs)
        if len(arrays) != len(specs):
            raise InputError(f"the model takes {len(specs)} input(s), got {len(arrays)}")
        out = []
        for spec, arr in zip(specs, arrays):
            if isinstance(arr, np.generic):  # a numpy scalar (np.float32(0.5)) for a 0-d input
                arr = np.asarray(arr)
            if not isinstance(arr, np.ndarray):
                raise InputError(f"input '{spec.name}' must be a numpy array, got {type(arr).__name__}")
            if arr.dtype != spec.dtype:
                raise InputError(
                    f"input '{spec.name}' has dtype {arr.dtype}, the model expects {np.dtype(spec.dtype).name}"
                    + (f" (quantized: scale {spec.scale:g}, zero point {spec.zero_point}; use spec.quantize())"
                       if spec.quantized else "")
                )
            if tuple(arr.shape) != tuple(spec.shape):
                hint = ""
                if arr.ndim == 4 and tuple(spec.shape) == (arr.shape[0], arr.shape[2], arr.shape[3], arr.shape[1]):
                    hint = (" (channels last, NHWC: this input looks NCHW, as PyTorch makes it; "
                            "pass x.transpose(0, 2, 3, 1))")
                raise InputError(
                    f"input '{spec.name}' has shape {tuple(arr.shape)}, the model expects {tuple(spec.shape)}{hint}"
                )
            out.append(arr)
        return out

    def _invoke(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        raise NotImplementedError(f"backend {self.backend!r} does not implement _invoke")
