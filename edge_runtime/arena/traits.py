"""What an op needs from the arena, as declared by the kernel that runs it.

The planner asks the micro backend's kernels (``op_memory``) how much scratch an
op needs and whether its output may take over an input's buffer. Keeping this
contract in one small module lets the planner and the kernels evolve apart.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from edge_runtime.formats.tflite import Operator, SubGraph, TFLiteModel


@dataclass(frozen=True)
class OpMemory:
    """Arena needs of one op.

    - ``scratch_bytes``: scratch the kernel needs when its output has its own buffer.
    - ``alias_input``: position in ``op.inputs`` whose bytes the output *is* (RESHAPE,
      SQUEEZE): with in-place planning on, output and input share one buffer.
    - ``inplace_input``: position in ``op.inputs`` whose buffer the output may overwrite
      when that input dies at this op (elementwise ops, 1x1 conv, depthwise conv).
    - ``inplace_scratch_bytes``: scratch the kernel needs when it runs in place.
    """

    scratch_bytes: int = 0
    alias_input: Optional[int] = None
    inplace_input: Optional[int] = None
    inplace_scratch_bytes: int = 0


OpMemoryFn = Callable[[TFLiteModel, SubGraph, Operator], OpMemory]
