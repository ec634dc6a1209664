"""``load_model``: check the file, pick a backend, open the model.

Order of work: resolve the device profile; recognise the file by its content and
validate its structure (:mod:`edge_runtime.model_file`) so native code never sees
a malformed file; choose the backend; hand over to the backend's ``open_model``.

Backends: ``"auto"`` (.tflite: LiteRT, else tflite-runtime, else the micro
backend; .onnx: ONNX Runtime), ``"litert"`` (ai-edge-litert, falling back to
tflite-runtime), ``"tflite"`` (tflite-runtime only), ``"onnx"``, ``"micro"``.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
from typing import Any, Union

from edge_runtime.errors import BackendUnavailableError, ConfigError
from edge_runtime.model import Model
from edge_runtime.model_file import ONNX, TFLITE, inspect_model_file

BACKENDS = ("auto", "litert", "tflite", "onnx", "micro")
_FORMATS = {"litert": TFLITE, "tflite": TFLITE, "micro": TFLITE, "onnx": ONNX}


def resolve_profile(profile: Any) -> Any:
    """``None``, a :class:`DeviceProfile`, a shipped profile name or a YAML path -> DeviceProfile or None."""
    if profile is None:
        return None
    from device_profiles import load_profile

    return load_profile(profile)


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def choose_backend(fmt: str, backend: str = "auto") -> str:
    """The concrete backend for a file of format ``fmt``; raises when they do not fit."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend '{backend}'; use one of {', '.join(BACKENDS)}")
    if backend != "auto":
        if _FORMATS[backend] != fmt:
            raise ConfigError(
                f"the {backend} backend runs .{_FORMATS[backend]} models, but this file is a {fmt.upper()} model"
            )
        return backend
    if fmt == ONNX:
        return "onnx"
    if _installed("ai_edge_litert"):
        return "litert"
    if _installed("tflite_runtime"):
        return "tflite"
    return "micro"


def check_common_options(options: dict[str, Any]) -> None:
    """Refuse option values of the wrong kind before any backend sees them (one line naming the option)."""
    for key in ("threads", "num_threads"):
        v = options.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 1024):
            raise ConfigError(f"option '{key}' must be a whole number from 1 to 1024, got {v!r}")
    for key in ("require_accelerator", "in_place"):
        v = options.get(key)
        if v is not None and not isinstance(v, bool):
            raise ConfigError(f"option '{key}' must be true or false, got {v!r}")


def load_model(path: Union[str, "os.PathLike[str]"], backend: str = "auto", profile: Any = None,
               **options: Any) -> Model:
    """Load a .tflite or .onnx model and return a :class:`Model`.

    ``profile``: a device profile name, a YAML path or a ``DeviceProfile``; it gives
    threads, accelerators and (for ONNX Runtime) session settings. ``options``:
    ``threads``, ``require_accelerator``, ``accelerator`` (``"auto"``, ``"none"``,
    a profile accelerator name, a delegate library path or an ORT provider),
    ``accelerator_options``, ``op_resolver`` (TFLite: ``"default"``,
    ``"reference"``, ``"no_default_delegates"``) and backend-specific ones.
    Every failure is an :class:`~edge_runtime.errors.EdgeRuntimeError`.
    """
    check_common_options(options)
    prof = resolve_profile(profile)
    mf = inspect_model_file(path)
    chosen = choose_backend(mf.format, backend)
    p = mf.path
    if chosen in ("litert", "tflite"):
        from edge_runtime.backends import litert

        model = litert.open_model(p, prof, library="auto" if chosen == "litert" else "tflite",
                                  tflite_model=mf.tflite, backend_name=chosen, **options)
    elif chosen == "onnx":
        from edge_runtime.backends import onnx

        model = onnx.open_model(p, prof, **options)
    else:
        try:
            micro = importlib.import_module("edge_runtime.backends.micro")
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("edge_runtime.backends.micro"):
                raise BackendUnavailableError(
                    "the micro backend (edge_runtime.backends.micro) is not available in this installation"
                    + ("" if backend == "micro" else
                       "; no TFLite interpreter is installed either (pip install 'edge-runtime[litert]')")
                ) from None
            raise
        model = micro.open_model(p, prof, **options)
    model.info.setdefault("format", mf.format)
    model.info.setdefault("file_bytes", mf.size)
    if prof is not None:
        model.info.setdefault("profile", prof.name)
    return model
