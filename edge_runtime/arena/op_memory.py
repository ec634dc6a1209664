"""Find and check the kernels' arena needs (:class:`~edge_runtime.arena.traits.OpMemory`).

The micro backend declares, per op, the scratch its kernel needs and whether the op
can alias or overwrite an input (``edge_runtime/backends/micro/memory_traits.py``,
function ``op_memory``). The planner imports it lazily. When that module is absent
it falls back to :func:`conservative_op_memory`:

- no op needs scratch;
- RESHAPE and SQUEEZE (and EXPAND_DIMS) outputs alias their first input, because they
  only change the shape, never the bytes;
- no op runs in place.

That rule never under-counts the activations, but it knows nothing of kernel scratch.
"""
from __future__ import annotations

import importlib
from typing import Optional

from edge_runtime.arena.traits import OpMemory, OpMemoryFn
from edge_runtime.errors import EdgeRuntimeError
from edge_runtime.formats.tflite import Operator, SubGraph, TFLiteModel

KERNEL_TRAITS_MODULE = "edge_runtime.backends.micro.memory_traits"
KERNEL_TRAITS_SOURCE = f"{KERNEL_TRAITS_MODULE}.op_memory"
_ALIAS_OPS = frozenset({"RESHAPE", "SQUEEZE", "EXPAND_DIMS"})


class ArenaPlanError(EdgeRuntimeError):
    """An arena plan cannot be made or is invalid (bad kernel traits, overlapping buffers)."""


def conservative_op_memory(model: TFLiteModel, subgraph: SubGraph, op: Operator) -> OpMemory:
    """Fallback traits: no scratch, shape-only ops alias their input, nothing else in place."""
    return OpMemory(alias_input=0) if op.name in _ALIAS_OPS else OpMemory()


def no_scratch_op_memory(model: TFLiteModel, subgraph: SubGraph, op: Operator) -> OpMemory:
    """Traits for a tensors-only plan (as TFLM's offline plan holds): no scratch, no aliasing."""
    return OpMemory()


def resolve_op_memory(op_memory: Optional[OpMemoryFn]) -> tuple[OpMemoryFn, str]:
    """The traits function to use and a label naming where it came from.

    ``op_memory`` wins when given. Otherwise the micro backend's ``op_memory`` is
    imported; if that module does not exist yet, :func:`conservative_op_memory`.
    """
    if op_memory is not None:
        return op_memory, getattr(op_memory, "__qualname__", repr(op_memory))
    try:
        mod = importlib.import_module(KERNEL_TRAITS_MODULE)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and KERNEL_TRAITS_MODULE.startswith(missing):
            return conservative_op_memory, "conservative (micro kernels' memory_traits not installed)"
        raise
    fn = getattr(mod, "op_memory", None)
    if fn is None:
        return conservative_op_memory, "conservative (memory_traits has no op_memory)"
    return fn, KERNEL_TRAITS_SOURCE


def checked_op_memory(fn: OpMemoryFn, model: TFLiteModel, sg: SubGraph, op: Operator) -> OpMemory:
    """Call ``fn`` for ``op`` and check the answer, naming the op when it is malformed."""
    mem = fn(model, sg, op)
    where = f"op {op.index} ({op.name})"
    if not isinstance(mem, OpMemory):
        raise ArenaPlanError(f"{where}: op_memory returned {type(mem).__name__}, expected OpMemory")
    for field in ("scratch_bytes", "inplace_scratch_bytes"):
        v = getattr(mem, field)
        if not isinstance(v, int) or v < 0:
            raise ArenaPlanError(f"{where}: op_memory gave {field}={v!r}; it must be a non-negative int")
    for field in ("alias_input", "inplace_input"):
        v = getattr(mem, field)
        if v is not None and (not isinstance(v, int) or not 0 <= v < len(op.inputs) or op.inputs[v] < 0):
            raise ArenaPlanError(
                f"{where}: op_memory gave {field}={v!r}, but the op has {len(op.inputs)} inputs "
                f"({list(op.inputs)})"
            )
    if mem.alias_input is not None and mem.inplace_input is not None:
        raise ArenaPlanError(f"{where}: op_memory gave both alias_input and inplace_input")
    return mem
