"""edge-runtime: run int8 models well on small devices.

``edge_runtime.load(path, backend=..., profile=...)`` returns a :class:`Model`.
"""
from __future__ import annotations

from edge_runtime.errors import EdgeRuntimeError
from edge_runtime.model import Model, TensorSpec

__version__ = "0.1.0"
__all__ = ["load", "Model", "TensorSpec", "EdgeRuntimeError", "__version__"]


def load(path, backend: str = "auto", profile=None, **options) -> Model:  # type: ignore[no-untyped-def]
    """Load a .tflite or .onnx model on a backend; see :func:`edge_runtime.loader.load_model`."""
    from edge_runtime.loader import load_model

    return load_model(path, backend=backend, profile=profile, **options)
