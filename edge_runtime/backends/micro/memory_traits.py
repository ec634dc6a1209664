"""What each micro kernel needs from the arena (the planner's contract, ``OpMemory``).

- No kernel needs arena scratch when its output has its own buffer: the widened
  (float64/int64) copies numpy works on live in the interpreter's host workspace,
  which is preallocated once, bounded (``workspace_limit``) and reported separately
  (``Model.info["workspace_bytes"]``); a C kernel would keep them in registers.
  Weights widened once at load time and tiled requantization constants are host
  memory too (``Model.info["cache_bytes"]``); chunk sizes still count the widened
  weights against ``workspace_limit``, so plans do not depend on that cache.
- RESHAPE and SQUEEZE alias their input.
- Elementwise ops (ADD, SUB, MUL on an input of the output's shape; RELU, RELU6,
  LOGISTIC, TANH, QUANTIZE, DEQUANTIZE, SOFTMAX) read each chunk before writing it,
  so they may overwrite an input that dies there, with no scratch.
- FULLY_CONNECTED runs in place when an output row is no larger than an input row,
  or when all rows fit one chunk.
- CONV_2D and DEPTHWISE_CONV_2D run in place (batch 1) with a line buffer in the
  arena: the input rows that a chunk's output overwrites but a later chunk still
  reads. Its size comes from simulating the kernel's own chunk order
  (``inplace_scratch_bytes``); a 1x1 convolution with Cout <= Cin needs none, a 3x3
  stride-1 depthwise needs one input row.
"""
from __future__ import annotations

from collections.abc import Mapping

from edge_runtime.arena.traits import OpMemory, OpMemoryFn
from edge_runtime.backends.micro.kernels.base import DEFAULT_WORKSPACE_LIMIT, Kernel
from edge_runtime.errors import EdgeRuntimeError, UnsupportedModelError
from edge_runtime.formats.tflite import Operator, SubGraph, TFLiteModel

_ALIAS = {"RESHAPE", "SQUEEZE"}
_UNARY_INPLACE = {"RELU", "RELU6", "LOGISTIC", "TANH", "QUANTIZE", "DEQUANTIZE", "SOFTMAX"}


def op_memory(model: TFLiteModel, subgraph: SubGraph, op: Operator) -> OpMemory:
    """Arena needs of ``op`` as the micro kernels implement it (default workspace limit)."""
    return op_memory_for(model, subgraph, op, DEFAULT_WORKSPACE_LIMIT)


def make_op_memory(workspace_limit: int) -> OpMemoryFn:
    """``op_memory`` for kernels chunked to ``workspace_limit`` bytes (chunking sets the line buffers)."""
    def fn(model: TFLiteModel, subgraph: SubGraph, op: Operator) -> OpMemory:
        return op_memory_for(model, subgraph, op, workspace_limit)

    fn.__qualname__ = f"micro.op_memory(workspace_limit={workspace_limit})"
    return fn


def op_memory_with_kernels(kernels: Mapping[tuple[int, int], Kernel],
                           workspace_limit: int = DEFAULT_WORKSPACE_LIMIT) -> OpMemoryFn:
    """``op_memory`` for kernels chunked to ``workspace_limit`` that reuses kernels already built for these ops.

    ``kernels`` maps (subgraph index, op index) to the kernel built for that op with this
    workspace limit (as the planner's coverage check, or the interpreter, builds them); ops
    without one build their own, as :func:`op_memory` does. The traits are the same either way:
    a kernel is a pure function of its op, tensors and workspace limit."""
    def fn(model: TFLiteModel, subgraph: SubGraph, op: Operator) -> OpMemory:
        kernel = kernels.get((subgraph.index, op.index))
        ctx = getattr(kernel, "ctx", None)
        if (ctx is None or ctx.op is not op or ctx.subgraph is not subgraph or ctx.model is not model
                or ctx.workspace_limit != workspace_limit):
            kernel = None  # (not built for this very op: build its own)
        return op_memory_for(model, subgraph, op, workspace_limit, kernel)

    fn.__qualname__ = ("micro.op_memory(prebuilt kernels)" if workspace_limit == DEFAULT_WORKSPACE_LIMIT
                       else f"micro.op_memory(workspace_limit={workspace_limit}, prebuilt kernels)")
    return fn


def op_memory_for(model: TFLiteModel, subgraph: SubGraph, op: Operator, workspace_limit: int,
                  kernel: Kernel | None = None) -> OpMemory:
    """Arena needs of ``op`` for kernels chunked to ``workspace_limit`` (one clear error if they cannot be known).

    ``kernel``: the op's kernel already built with this ``workspace_limit`` (else it is built here when needed)."""
    try:
        return _op_memory(model, subgraph, op, workspace_limit, kernel)
    except EdgeRuntimeError:
        raise
    except (ValueError, TypeError, IndexError, KeyError, ArithmeticError, AttributeError, MemoryError) as exc:
        raise UnsupportedModelError(f"{model.path}: op {op.index} ({op.name}): its memory cannot be planned "
                                    f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                                    "the model is malformed") from None


def _op_memory(model: TFLiteModel, subgraph: SubGraph, op: Operator, workspace_limit: int,
               kernel: Kernel | None) -> OpMemory:
    name = op.name
    from edge_runtime.backends.micro.kernels import REGISTRY

    own = getattr(REGISTRY.get(name), "op_memory", None)
    if own is not None:  # kernels outside the core declare their own needs
        return own(model, subgraph, op, workspace_limit)
    if name in _ALIAS:
        return OpMemory(alias_input=0)
    if name in _UNARY_INPLACE:
        return OpMemory(inplace_input=0)
    if not op.outputs or op.outputs[0] < 0:
        return OpMemory()
    out = subgraph.tensors[op.outputs[0]]
    if name in ("ADD", "SUB", "MUL"):
        for pos in (0, 1):
            if pos < len(op.inputs) and op.inputs[pos] >= 0:
                t = subgraph.tensors[op.inputs[pos]]
                if tuple(t.shape) == tuple(out.shape) and t.type_code == out.type_code and not t.is_constant:
                    return OpMemory(inplace_input=pos)
        return OpMemory()
    if name in ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D"):
        if kernel is None:
            from edge_runtime.backends.micro.kernels import OpContext

            try:
                kernel = REGISTRY[name](OpContext(model, subgraph, op, workspace_limit))
            except EdgeRuntimeError:
                return OpMemory()  # the interpreter will refuse the op at load time
        if getattr(kernel, "sixteen_by_eight", False):
            return OpMemory()  # 16x8 kernels: output in its own buffer
        if name == "FULLY_CONNECTED":
            if kernel.units <= kernel.k or kernel.rows >= kernel.rows_total:
                return OpMemory(inplace_input=0)
            return OpMemory()
        if kernel.n != 1:
            return OpMemory()
        return OpMemory(inplace_input=0, inplace_scratch_bytes=kernel.inplace_scratch_bytes())
    return OpMemory()
