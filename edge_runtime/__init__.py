"""edge-runtime: run int8 models well on small devices.

``edge_runtime.load(path, backend=..., profile=...)`` returns a :class:`Model`.
Heavy modules (numpy, backends) are imported on first use, so that the command-line
tools can report a failure to import them (e.g. under a tight memory limit) cleanly.
"""
from __future__ import annotations

from typing import Any

from edge_runtime.errors import EdgeRuntimeError

__version__ = "0.1.0"
__all__ = ["load", "Model", "TensorSpec", "EdgeRuntimeError", "__version__"]


def load(path, backend: str = "auto", profile=None, **options):  # type: ignore[no-untyped-def]
    """Load a .tflite or .onnx model on a backend; see :func:`edge_runtime.loader.load_model`."""
    from edge_runtime.loader import load_model

    return load_model(path, backend=backend, profile=profile, **options)


def __getattr__(name: str) -> Any:
    if name in ("Model", "TensorSpec"):
        from edge_runtime import model

        return getattr(model, name)
    raise AttributeError(f"module 'edge_runtime' has no attribute {name!r}")
