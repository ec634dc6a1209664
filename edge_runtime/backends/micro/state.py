"""The micro interpreter's persistent state: variable tensors, resource variables, reset.

One buffer (16-byte aligned pieces, as TFLite Micro's persistent tail) holds every
variable tensor and every sized resource variable of the model (see
:mod:`edge_runtime.arena.persistent` for how TFLM sizes them). Their values persist
across invocations; :meth:`State.reset` restores what a freshly loaded model has:
variable tensors filled with their zero point (INT8) or zeros, resource variables
with the low byte of their zero point, and every CALL_ONCE armed again so that its
init subgraph runs on the next invoke.
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from edge_runtime.arena.align import align_up
from edge_runtime.arena.persistent import (
    PersistentLayout,
    ResourceVariable,
    persistent_layout,
)
from edge_runtime.errors import UnsupportedModelError
from edge_runtime.formats.tflite import TFLiteModel


def _aligned_buffer(nbytes: int, align: int = 64) -> np.ndarray:
    raw = np.zeros(nbytes + align, dtype=np.uint8)
    start = (-raw.__array_interface__["data"][0]) % align
    return raw[start:start + nbytes]


class State:
    """Persistent buffers of one prepared model and the reset hooks of its stateful kernels."""

    def __init__(self, model: TFLiteModel, layout: Optional[PersistentLayout] = None) -> None:
        self.model = model
        self.layout = layout if layout is not None else persistent_layout(model)
        self.buffer = _aligned_buffer(max(self.layout.persistent_bytes, 16))
        self.variables: dict[tuple[int, int], np.ndarray] = {}
        self.resources: dict[int, np.ndarray] = {}
        self._fills: list[tuple[np.ndarray, int]] = []
        self._hooks: list[Callable[[], None]] = []
        pos = 0
        for v in self.layout.variables:
            t = model.subgraphs[v.subgraph].tensors[v.tensor]
            if t.dtype is None:
                raise UnsupportedModelError(f"{model.path}: variable tensor '{t.name}' has type {t.type_name}, "
                                            "which the micro backend cannot hold")
            raw = self.buffer[pos:pos + v.size]
            self.variables[(v.subgraph, v.tensor)] = raw.view(t.dtype).reshape(t.shape)
            self._fills.append((raw, v.fill))
            pos += align_up(v.size)
        for r in self.layout.resources:
            if not r.size:
                continue
            raw = self.buffer[pos:pos + r.size]
            self.resources[r.id] = raw
            self._fills.append((raw, r.fill))
            pos += align_up(r.size)
        self.reset()

    @property
    def persistent_bytes(self) -> int:
        """Bytes of the persistent buffers (each rounded up to 16, as TFLM counts its tail)."""
        return int(self.layout.persistent_bytes)

    def variable(self, subgraph: int, tensor: int) -> np.ndarray:
        """The persistent view of a variable tensor."""
        return self.variables[(subgraph, tensor)]

    def resource(self, r: ResourceVariable, what: str) -> np.ndarray:
        """The bytes of resource variable ``r``; refuses one that no ASSIGN_VARIABLE sizes."""
        buf = self.resources.get(r.id)
        if buf is None:
            raise UnsupportedModelError(
                f"{self.model.path}: {what} uses resource variable '{r.shared_name}', which no ASSIGN_VARIABLE "
                "of the model sizes (TFLite Micro allocates a resource variable at its first ASSIGN_VARIABLE)")
        return buf

    def on_reset(self, hook: Callable[[], None]) -> None:
        """Call ``hook`` on every reset (kernels with their own state, e.g. CALL_ONCE)."""
        self._hooks.append(hook)

    def reset(self) -> None:
        """Restore the state of a freshly loaded model."""
        for raw, fill in self._fills:
            raw.fill(fill)
        for hook in self._hooks:
            hook()
