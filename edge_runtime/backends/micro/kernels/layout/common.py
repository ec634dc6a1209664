"""Helpers shared by the data-movement kernels: type sets, constant index inputs,
option decoding, and the checks that TFLM's Prepare makes on these ops."""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from edge_runtime.errors import InputError
from edge_runtime.formats.tflite import Operator, TensorInfo
from edge_runtime.backends.micro.kernels.base import Kernel, OpContext, require_type

F32, I8, I16, I32, I64, BOOL, U8 = "FLOAT32", "INT8", "INT16", "INT32", "INT64", "BOOL", "UINT8"
#: Index tensor types.
INDEX32 = (I32,)
INDEX = (I32, I64)


class InvokeError(InputError):
    """An index tensor computed at run time (a graph input or an op's result) is out of range; TFLM's
    Eval fails there too. One message line naming the op."""


def option(op: Operator, index: int, fmt: str, default: Any) -> Any:
    """A scalar field of the op's builtin options table (``default`` when absent)."""
    return op.options.scalar(index, fmt, default) if op.options is not None else default


def io(ctx: OpContext, types: Sequence[str], pos: int = 0) -> tuple[TensorInfo, TensorInfo]:
    """Input ``pos`` and output 0 of a copy op: the input's type is one of ``types``, the output's the same."""
    x = require_type(ctx, ctx.input(pos), tuple(types), "input")
    y = require_type(ctx, ctx.output(0), (x.type_name,), "output")
    return x, y


def const_ints(ctx: OpContext, t: Optional[TensorInfo], what: str, types: Sequence[str] = INDEX32
               ) -> np.ndarray:
    """The values of a constant integer tensor as a flat int64 array."""
    require_type(ctx, t, tuple(types), what)
    if t is None or t.data is None:
        raise ctx.fail(f"the {what} tensor must be constant (the micro backend plans static shapes, as TFLM does)")
    return t.array().astype(np.int64).reshape(-1)


def maybe_const_ints(ctx: OpContext, t: Optional[TensorInfo], what: str,
                     types: Sequence[str] = INDEX32) -> Optional[np.ndarray]:
    """The values of an integer tensor when it is constant, ``None`` when it is computed at run time."""
    require_type(ctx, t, tuple(types), what)
    assert t is not None
    return t.array().astype(np.int64).reshape(-1) if t.data is not None else None


def max_rank(ctx: OpContext, t: TensorInfo, limit: int, what: str = "input") -> None:
    """TFLM's kernels handle tensors up to ``limit`` dimensions."""
    if len(t.shape) > limit:
        raise ctx.fail(f"the {what} has {len(t.shape)} dimensions; TFLM's kernel handles at most {limit}")


def same_shape(ctx: OpContext, got: Sequence[int], want: Sequence[int], what: str = "output") -> None:
    """The model's ``what`` shape must be the computed one."""
    if tuple(int(s) for s in got) != tuple(int(s) for s in want):
        raise ctx.fail(f"the {what} shape {tuple(got)} does not match the computed {tuple(want)}")


def norm_axis(ctx: OpContext, axis: int, rank: int, what: str = "axis") -> int:
    """``axis`` in [-rank, rank) made non-negative."""
    if not -rank <= axis < rank:
        raise ctx.fail(f"{what} {axis} is out of range for rank {rank}")
    return axis % rank


def prod(shape: Sequence[int]) -> int:
    """Number of elements of ``shape``."""
    return int(np.prod(shape, dtype=np.int64)) if len(shape) else 1


def fail_at_run(kernel: Kernel, why: str) -> InvokeError:
    """The error raised when a runtime index input is invalid (TFLM's invoke fails too)."""
    op = kernel.ctx.op
    return InvokeError(f"{kernel.ctx.model.path}: op {op.index} ({op.name}) failed at invoke: {why}")


class CopyViews(Kernel):
    """A kernel that copies precomputed source views into destination views (``self.pairs``)."""

    pairs: list[tuple[np.ndarray, np.ndarray]]

    def run(self) -> None:
        """Copy every (source, destination) pair."""
        for src, dst in self.pairs:
            np.copyto(dst, src)
