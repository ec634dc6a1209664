"""The kernel contract of the micro interpreter and helpers shared by every op family.

A kernel is built once per op at load time (``__init__`` = TFLM's Prepare: check
types and shapes, precompute quantized multipliers, index maps and chunking),
declares the host workspace it wants (``workspace``: name -> (shape, dtype)), is
bound once to its tensors (``bind``: views into the arena and the workspace), and
then ``run()`` many times without allocating arrays.

Host workspace vs. arena: the arena holds what a device kernel needs (tensors and
the scratch declared in ``memory_traits``). The workspace is numpy's staging area
(int8 data widened to float64/int64 so that BLAS and vector ops can run); it is
chunked to a fixed limit (``workspace_limit``), preallocated once and shared by all
ops, since ops run one after another.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from edge_runtime.errors import UnsupportedModelError
from edge_runtime.formats.tflite import Operator, SubGraph, TensorInfo, TFLiteModel
from edge_runtime.backends.micro.options import ACTIVATIONS, PADDING_SAME, PADDING_VALID

DEFAULT_WORKSPACE_LIMIT = 512 * 1024

#: What ``Kernel.bind`` receives: input views (None for absent optional inputs), output views,
#: the op's arena scratch (None without), and the op's named workspace arrays.
Inputs = list[Optional[np.ndarray]]
Outputs = list[np.ndarray]
Scratch = Optional[np.ndarray]
Workspace = dict[str, np.ndarray]


@dataclass
class OpContext:
    """What a kernel sees of its op at prepare time."""

    model: TFLiteModel
    subgraph: SubGraph
    op: Operator
    workspace_limit: int = DEFAULT_WORKSPACE_LIMIT

    def input(self, pos: int) -> Optional[TensorInfo]:
        """Input tensor ``pos`` (``None`` when absent or optional)."""
        if pos >= len(self.op.inputs) or self.op.inputs[pos] < 0:
            return None
        return self.subgraph.tensors[self.op.inputs[pos]]

    def output(self, pos: int = 0) -> TensorInfo:
        """Output tensor ``pos``."""
        return self.subgraph.tensors[self.op.outputs[pos]]

    def fail(self, why: str) -> UnsupportedModelError:
        """An UnsupportedModelError naming this op (and its subgraph when that is not the first)."""
        from edge_runtime.formats.tflite_fold import file_op_index

        at = file_op_index(self.model, self.subgraph.index, self.op.index)  # numbered as in the file
        where = f"op {at}" if self.subgraph.index == 0 else f"subgraph {self.subgraph.index} op {at}"
        return UnsupportedModelError(
            f"{self.model.path}: {where} ({self.op.name} v{self.op.opcode.version}) is not supported "
            f"by the micro backend: {why}")


class Kernel:
    """Base class: one prepared op."""

    #: Highest op version (schema ``OperatorCode.version``) this kernel handles.
    max_version: int = 1
    #: True when ``bind`` accepts an output that starts where an input starts (in-place or alias
    #: plans; the kernel checks the details). Other kernels refuse any input/output overlap.
    inplace_ok: bool = False
    #: Arena needs, for kernels outside the core set: a static method
    #: ``(model, subgraph, op, workspace_limit) -> OpMemory`` (scratch bytes, in-place input, alias).
    #: ``None`` means "no scratch, output in its own buffer" (see memory_traits.py).
    op_memory: Any = None

    def __init__(self, ctx: OpContext) -> None:
        self.ctx = ctx
        self.workspace: dict[str, tuple[tuple[int, ...], np.dtype]] = {}

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Remember views of the op's tensors (constants are mmap views), scratch and workspace."""
        raise NotImplementedError

    def run(self) -> None:
        """Execute the op on the bound buffers."""
        raise NotImplementedError


# ---------------------------------------------------------------------------
# helpers

def qparams(t: TensorInfo) -> tuple[float, int]:
    """Per-tensor (scale, zero_point); (0.0, 0) when the tensor is not quantized."""
    q = t.quantization
    if q is None or q.scale.size == 0:
        return 0.0, 0
    return float(q.scale[0]), int(q.zero_point[0]) if q.zero_point.size else 0


def scales32(t: TensorInfo) -> np.ndarray:
    """The tensor's scales as float32 (as TFLM stores them)."""
    return np.asarray(t.quantization.scale, dtype=np.float32) if t.quantization is not None else np.zeros(1, np.float32)


def require_type(ctx: OpContext, t: Optional[TensorInfo], allowed: tuple[str, ...], what: str) -> TensorInfo:
    """Check a tensor's type, else raise UnsupportedModelError."""
    if t is None:
        raise ctx.fail(f"the {what} tensor is missing")
    if t.type_name not in allowed:
        raise ctx.fail(f"{what} tensor '{t.name}' has type {t.type_name}; supported: {', '.join(allowed)}")
    return t


def require_constant(ctx: OpContext, t: Optional[TensorInfo], what: str) -> TensorInfo:
    """Check that a tensor holds constant data."""
    if t is None or t.data is None:
        raise ctx.fail(f"the {what} must be a constant tensor")
    return t


def activation_name(ctx: OpContext, code: int) -> str:
    """Name of a fused activation; raise on unknown or unsupported ones."""
    name = ACTIVATIONS.get(code)
    if name is None or name in ("TANH", "SIGN_BIT"):
        raise ctx.fail(f"fused activation {name or code} is not supported")
    return name


def _quantize_f(value: float, scale: float, zero_point: int) -> int:
    q = np.float32(value) / np.float32(scale)
    return zero_point + int(np.floor(abs(float(q)) + 0.5) * (1 if q >= 0 else -1))


def quantized_activation_range(ctx: OpContext, code: int, scale: float, zero_point: int,
                               dtype: np.dtype = np.dtype(np.int8)) -> tuple[int, int]:
    """``CalculateActivationRangeQuantized``: the clamp range of a fused activation in int8."""
    name = activation_name(ctx, code)
    info = np.iinfo(dtype)
    lo, hi = int(info.min), int(info.max)
    if name == "RELU":
        return max(lo, _quantize_f(0.0, scale, zero_point)), hi
    if name == "RELU6":
        return max(lo, _quantize_f(0.0, scale, zero_point)), min(hi, _quantize_f(6.0, scale, zero_point))
    if name == "RELU_N1_TO_1":
        return max(lo, _quantize_f(-1.0, scale, zero_point)), min(hi, _quantize_f(1.0, scale, zero_point))
    return lo, hi


#: the largest finite float32: TFLM clamps every float result to +-this when no activation is fused
FLOAT32_MAX = float(np.finfo(np.float32).max)


def float_activation_range(ctx: OpContext, code: int) -> tuple[float, float]:
    """The clamp range of a fused activation on floats, as TFLM's ``CalculateActivationRange``: with no
    activation (and above RELU) the finite float32 range, so an overflow to +-inf becomes +-FLT_MAX as
    in tflite-micro (NaN passes through)."""
    name = activation_name(ctx, code)
    return {"NONE": (-FLOAT32_MAX, FLOAT32_MAX), "RELU": (0.0, FLOAT32_MAX), "RELU6": (0.0, 6.0),
            "RELU_N1_TO_1": (-1.0, 1.0)}[name]


def compute_padding(ctx: OpContext, padding: int, in_size: int, filt: int, stride: int, dilation: int,
                    out_size: int) -> tuple[int, int]:
    """TFLite's padding (before, after) for one spatial axis; checks the output size."""
    if stride < 1 or dilation < 1 or filt < 1:
        raise ctx.fail(f"invalid stride {stride}, dilation {dilation} or filter size {filt}")
    eff = (filt - 1) * dilation + 1
    if padding == PADDING_SAME:
        expected = (in_size + stride - 1) // stride
    elif padding == PADDING_VALID:
        expected = (in_size - eff + stride) // stride
    else:
        raise ctx.fail(f"unknown padding {padding}")
    if expected != out_size:
        raise ctx.fail(f"output size {out_size} does not match the computed {expected}")
    total = max(0, (out_size - 1) * stride + eff - in_size)
    return total // 2, total - total // 2


def nbytes_of(shape: tuple[int, ...], dtype: Any) -> int:
    """Bytes of an array of ``shape`` and ``dtype``."""
    return int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize


@dataclass
class Chunking:
    """Rows per chunk chosen so that a per-row workspace cost fits the limit."""

    rows: int
    starts: list[int] = field(default_factory=list)

    @classmethod
    def fit(cls, total_rows: int, fixed_bytes: int, bytes_per_rows: "Any", limit: int) -> "Chunking":
        """Largest row count r (>= 1) with fixed + bytes_per_rows(r) <= limit."""
        r = max(1, total_rows)
        while r > 1 and fixed_bytes + bytes_per_rows(r) > limit:
            r -= 1
        return cls(r, list(range(0, total_rows, r)))
