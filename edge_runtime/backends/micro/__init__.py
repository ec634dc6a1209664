"""``backend="micro"``: a pure-numpy TFLite interpreter, bit-exact with TFLite Micro's reference kernels.

``open_model(path, profile=None, in_place=True, planner="best", workspace_limit=...)``
memory-maps the model, prepares every kernel, plans one arena and returns a
:class:`MicroModel`. Options:

- ``in_place`` (default True): let outputs overwrite dying inputs where the kernel
  allows (smaller arena); False gives a plan TFLite Micro could execute.
- ``planner``: an arena planner name (``edge_runtime.arena.planners.PLANNERS``).
- ``workspace_limit``: bytes of the shared host workspace kernels chunk their work to.
- ``plan``: a ready arena plan (an ``ArenaPlan``), overriding the two above.
- ``threads``: accepted for a uniform API; the micro backend runs on one thread.
- ``accelerator``: only ``"auto"``/``"none"``; ``require_accelerator=True`` fails.

Memory: ``info["arena_bytes"]`` is the planned arena (activations + kernel
scratch of every subgraph, plus the persistent variable tensors and resource
variables, ``info["persistent_bytes"]``, as TFLite Micro counts its tail: what a
device needs); ``info["workspace_bytes"]`` is the host-side numpy
staging buffer (widened copies for BLAS), preallocated once;
``info["kernel_paths"]`` gives, per op of the main subgraph, the path its kernel took:
``"numba"`` (the compiled int8 kernels of :mod:`edge_runtime.backends.micro.fast`, used when
numba imports, unless ``EDGE_RUNTIME_MICRO_FAST=0``) or ``"numpy"``; ``info["fast"]`` has
``available``, ``compile_s`` (seconds this load spent compiling the kernels or loading them
from numba's on-disk cache) and ``import_s`` (this process's ``import numba``).
``info["cache_bytes"]`` is what kernels build once at load time for speed (the int8
weights widened to float32/float64, tiled per-channel requantization constants),
derived from the memory-mapped int8 weights, which stay the source of truth. A
device profile's ``inference_ram_budget_bytes`` is checked against the sum of all
three when the profile can run Python.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from edge_runtime.errors import AcceleratorUnavailableError, BudgetExceededError, ConfigError
from edge_runtime.formats.tflite import TFLiteModel
from edge_runtime.model import Model, TensorSpec
from edge_runtime.backends.micro import fast
from edge_runtime.backends.micro.interpreter import Interpreter, check_supported
from edge_runtime.backends.micro.kernels.base import DEFAULT_WORKSPACE_LIMIT

__all__ = ["open_model", "MicroModel", "Interpreter", "check_supported"]

_OPTIONS = {"fast", "in_place", "planner", "workspace_limit", "plan", "threads", "num_threads", "accelerator",
            "require_accelerator"}


def _spec(t) -> TensorSpec:  # type: ignore[no-untyped-def]
    q = t.quantization
    scale = float(q.scale[0]) if q is not None and q.scale.size == 1 else None
    zp = int(q.zero_point[0]) if scale is not None and q.zero_point.size else None
    return TensorSpec(t.name, tuple(t.shape), np.dtype(t.dtype), scale, zp)


class MicroModel(Model):
    """A model running on the micro interpreter. ``run`` returns copies of the outputs.

    Stateful models (variable tensors, resource variables, CALL_ONCE) keep their
    state across ``run`` calls; :meth:`reset` restores the state of a freshly loaded model.
    """

    interpreter: Interpreter

    def reset(self) -> None:
        """Restore variables, resource variables and CALL_ONCE to their state right after loading."""
        self.interpreter.reset()

    def _invoke(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        it = self.interpreter
        for i, a in enumerate(arrays):
            it.set_input(i, a)
        it.invoke()
        return [v.copy() for v in it.output_views]


def open_model(path: str, profile: Any = None, **options: Any) -> MicroModel:
    """Load a .tflite model on the micro backend (see the module docstring for options)."""
    unknown = set(options) - _OPTIONS
    if unknown:
        raise ConfigError(f"unknown micro backend option(s): {', '.join(sorted(unknown))}; "
                          f"known: {', '.join(sorted(_OPTIONS))}")
    if options.get("require_accelerator"):
        raise AcceleratorUnavailableError("the micro backend runs on the CPU only; no accelerator can be used")
    if options.get("accelerator") not in (None, "auto", "none"):
        raise ConfigError(f"the micro backend has no accelerators (got accelerator={options['accelerator']!r})")
    limit = options.get("workspace_limit", DEFAULT_WORKSPACE_LIMIT)
    if not isinstance(limit, int) or limit < 4096:
        raise ConfigError(f"workspace_limit must be an integer of at least 4096 bytes, got {limit!r}")
    model = TFLiteModel.open(path)
    compiled_before = fast.compile_seconds()
    fast.REQUESTED[0] = options.get("fast")
    try:
        it = Interpreter(model, options.get("plan"), in_place=bool(options.get("in_place", True)),
                         planner=str(options.get("planner", "best")), workspace_limit=limit)
        fast_available = fast.available()  # while this model's request is in force
    finally:
        fast.REQUESTED[0] = None
    sg = model.main
    budget: Optional[int] = getattr(profile, "inference_ram_budget_bytes", None) if profile is not None else None
    arena = int(it.plan.arena_bytes) + it.persistent_bytes
    total = arena + it.workspace_bytes + it.cache_bytes
    if budget is not None and getattr(profile, "python", True) and total > int(budget):
        raise BudgetExceededError(
            f"{path}: the micro backend needs {total} bytes (arena {arena} + workspace "
            f"{it.workspace_bytes} + weight cache {it.cache_bytes}), over the "
            f"{getattr(profile, 'name', 'profile')} budget of {budget} bytes")
    m = MicroModel(path=str(path), backend="micro", inputs=[_spec(sg.tensors[i]) for i in sg.inputs],
                   outputs=[_spec(sg.tensors[i]) for i in sg.outputs],
                   info={"arena_bytes": arena, "persistent_bytes": it.persistent_bytes,
                         "workspace_bytes": it.workspace_bytes,
                         "cache_bytes": it.cache_bytes,
                         "in_place": bool(getattr(it.plan, "in_place", False)),
                         "planner": getattr(it.plan, "planner", None), "ops": len(sg.operators),
                         "subgraphs": len(it.order),
                         "kernel_paths": [{"op": i, "name": op.name, "path": getattr(k, "path", "numpy")}
                                          for i, (k, op) in enumerate(zip(it.kernels, sg.operators))],
                         "fast": {"available": fast_available,
                                  "compile_s": round(fast.compile_seconds() - compiled_before, 4),
                                  "import_s": round(fast.import_seconds(), 4)}})
    m.interpreter = it
    return m
