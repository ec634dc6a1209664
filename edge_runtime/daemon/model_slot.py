"""The served model and its safe replacement (hot reload).

:class:`ModelSlot` loads a model through :func:`edge_runtime.load`, checks a candidate
on a test input, and swaps it in only when it takes the same inputs and gives the
same output shapes and types. A failed reload leaves the old model serving.
"""
from __future__ import annotations

import gc
import hashlib
import os
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

import edge_runtime
from edge_runtime.errors import ConfigError, EdgeRuntimeError, InputError
from edge_runtime.model import Model


def sample_shape(shape: tuple[int, ...], what: str = "tensor") -> tuple[int, ...]:
    """The shape of one sample: a dynamic (-1) batch axis becomes 1; other dynamic axes are refused."""
    dims = tuple(int(d) for d in shape)
    if dims and dims[0] < 0:
        dims = (1, *dims[1:])
    if any(d < 0 for d in dims):
        raise ConfigError(f"{what} has a dynamic dimension {list(shape)} other than the batch axis; the daemon needs "
                          "fixed-size frames (export the model with a fixed shape)")
    return dims


def file_version(path: str) -> str:
    """First 12 hex digits of the file's SHA-256 (the default model version)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:12]


def resolve_model_path(path: str) -> str:
    """Hook point for model bundles: map a configured model path to the model file to open.

    Today a plain .tflite/.onnx path is returned unchanged. When
    ``edge_runtime.bundle`` (verify + atomic install) lands, a bundle path is
    verified and installed here, and the installed model's path returned; a bundle
    that fails verification raises ``BundleError`` and a reload keeps the old model.
    """
    return path


@dataclass
class Loaded:
    """A model with its version label."""

    model: Model
    version: str
    path: str
    batch: Any = None  #: a BatchRunner for full batches, when the backend has a batch axis


def same_io(a: Model, b: Model) -> Optional[str]:
    """None when ``b`` takes and gives what ``a`` does; else what differs."""
    for kind, xa, xb in (("input", a.inputs, b.inputs), ("output", a.outputs, b.outputs)):
        if len(xa) != len(xb):
            return f"{len(xb)} {kind}(s) instead of {len(xa)}"
        for sa, sb in zip(xa, xb):
            if tuple(sa.shape) != tuple(sb.shape) or np.dtype(sa.dtype) != np.dtype(sb.dtype):
                return (f"{kind} '{sb.name}' is {np.dtype(sb.dtype).name}{list(sb.shape)}, "
                        f"the served model's is {np.dtype(sa.dtype).name}{list(sa.shape)}")
    return None


class ModelSlot:
    """Holds the current model; ``reload`` replaces it only after a successful check."""

    def __init__(self, cfg: Any, profile: Any = None, loader: Callable[..., Model] = edge_runtime.load) -> None:
        self.cfg = cfg
        self.profile = profile
        self._loader = loader
        self.current: Optional[Loaded] = None
        self._test_input: Optional[list[np.ndarray]] = None

    def _open(self) -> Loaded:
        path = resolve_model_path(self.cfg.path)
        model = self._loader(path, backend=self.cfg.backend, profile=self.profile, **self.cfg.options)
        version = self.cfg.version or file_version(path)
        return Loaded(model, version, path)

    def load_initial(self) -> Loaded:
        """Load the configured model, check it, and make it current."""
        cand = self._open()
        try:
            self._check(cand.model)
        except EdgeRuntimeError:
            cand.model.close()
            raise
        self.current = cand
        gc.collect()
        gc.freeze()
        return cand

    def test_input(self, model: Model) -> list[np.ndarray]:
        """The configured test input (.npy), or zeros shaped like the model's inputs."""
        if self._test_input is not None:
            return self._test_input
        if self.cfg.test_input:
            try:
                arr = np.load(self.cfg.test_input, allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise ConfigError(f"model.test_input {self.cfg.test_input}: not a readable .npy file: {exc}") from None
            spec = model.inputs[0]
            shape = sample_shape(spec.shape, f"input '{spec.name}'")
            if arr.size != int(np.prod(shape)):
                raise ConfigError(f"model.test_input {self.cfg.test_input}: {arr.size} values, the model input "
                                  f"'{spec.name}' takes {int(np.prod(shape))}")
            self._test_input = [arr.astype(spec.dtype, copy=False).reshape(shape)]
        else:
            self._test_input = [np.zeros(sample_shape(s.shape, f"input '{s.name}'"), dtype=s.dtype) for s in model.inputs]
        return self._test_input

    def _check(self, model: Model) -> None:
        outs = model.run(self.test_input(model))
        if len(outs) != len(model.outputs):
            raise InputError(f"{model.path}: the test input gave {len(outs)} outputs, the model declares {len(model.outputs)}")
        for o, spec in zip(outs, model.outputs):
            if tuple(o.shape) != sample_shape(spec.shape, f"output '{spec.name}'"):
                raise InputError(f"{model.path}: output '{spec.name}' has shape {o.shape}, declared {spec.shape}")
            if o.dtype.kind == "f" and not np.all(np.isfinite(o)):
                raise InputError(f"{model.path}: output '{spec.name}' is not finite on the test input")

    def prepare_reload(self) -> Loaded:
        """Load and check a candidate; raise with the reason when it must not be used."""
        assert self.current is not None
        try:
            cand = self._open()
        except (EdgeRuntimeError, OSError) as exc:
            raise ConfigError(f"reload of {self.cfg.path} failed: {exc}") from None
        try:
            why = same_io(self.current.model, cand.model)
            if why:
                raise ConfigError(f"reload of {self.cfg.path} refused: the new model's {why}")
            self._check(cand.model)
        except EdgeRuntimeError as exc:
            cand.model.close()
            if isinstance(exc, ConfigError) and str(exc).startswith("reload of"):
                raise
            raise ConfigError(f"reload of {self.cfg.path} refused: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - a backend error on the check must not take the daemon down
            cand.model.close()
            raise ConfigError(f"reload of {self.cfg.path} refused: the test inference failed: {exc}") from None
        return cand

    def swap(self, cand: Loaded) -> Loaded:
        """Make ``cand`` current; return the old one (close it once no worker uses it)."""
        old = self.current
        self.current = cand
        gc.collect()
        gc.freeze()
        assert old is not None
        return old


def watched_stat(path: str) -> Optional[tuple[int, int, int]]:
    """(inode, size, mtime_ns) of ``path``, or None when it is missing."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns
