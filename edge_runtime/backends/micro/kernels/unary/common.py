"""Shared machinery of the unary kernels: checks, in-place memory, table lookups, options.

Most unary kernels are one of two kinds:

- a **table** kernel: the input is 8- or 16-bit (or bool), so every possible input
  value is computed once at prepare time with TFLM's exact arithmetic and ``run`` is
  ``table.take(x.view(uint))`` (the index copy is taken before the output is written,
  so the op may run in place);
- a **float** kernel: one or a few numpy ufuncs with ``out=``.

A subclass declares the types it accepts, and builds ``self.table`` in ``prepare``
(or leaves it ``None`` and implements ``run_float``).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from edge_runtime.arena.traits import OpMemory
from edge_runtime.backends.micro.fixedpoint_lut import table_inputs
from edge_runtime.backends.micro.kernels.base import (
    Inputs, Kernel, OpContext, Outputs, Scratch, TensorInfo, Workspace, qparams,
)
from edge_runtime.formats.tflite import Operator, SubGraph, TFLiteModel


def inplace_memory(model: TFLiteModel, subgraph: SubGraph, op: Operator, workspace_limit: int) -> OpMemory:
    """Elementwise ops whose output has the input's element size may overwrite the input."""
    if not op.inputs or op.inputs[0] < 0 or not op.outputs:
        return OpMemory()
    x = subgraph.tensors[op.inputs[0]]
    y = subgraph.tensors[op.outputs[0]]
    if x.dtype is None or y.dtype is None or x.dtype.itemsize != y.dtype.itemsize or x.is_constant:
        return OpMemory()
    return OpMemory(inplace_input=0)


def option_scalar(op: Operator, index: int, fmt: str, default: "int | float | bool") -> "int | float | bool":
    """A field of the op's builtin options table (``default`` when absent)."""
    return op.options.scalar(index, fmt, default) if op.options is not None else default


def affine(ctx: OpContext, t: TensorInfo, what: str) -> tuple[float, int]:
    """Per-tensor (scale as float32, zero point) of a quantized tensor, else refuse."""
    q = t.quantization
    if q is None or q.scale.size == 0 or q.zero_point.size == 0:
        raise ctx.fail(f"the {what} tensor '{t.name}' ({t.type_name}) needs quantization parameters")
    s, z = qparams(t)
    return float(np.float32(s)), z


def is_quantized(t: TensorInfo) -> bool:
    """True when the tensor carries (at least one) scale."""
    return t.quantization is not None and t.quantization.scale.size > 0


class UnaryKernel(Kernel):
    """One input, one output of the same shape; a table for small integer types, else ``run_float``."""

    inplace_ok = True
    op_memory = staticmethod(inplace_memory)
    #: Input types the op accepts (TFLM's kernel).
    TYPES: tuple[str, ...] = ("FLOAT32",)
    #: True when the output type must equal the input type.
    SAME_TYPE = True

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        if len([i for i in ctx.op.inputs if i >= 0]) != 1 or len(ctx.op.outputs) != 1:
            raise ctx.fail(f"expected 1 input and 1 output, got {len(ctx.op.inputs)} and {len(ctx.op.outputs)}")
        x, y = ctx.input(0), ctx.output(0)
        if x is None or x.dtype is None or x.type_name not in self.TYPES:
            raise ctx.fail(f"input type {x.type_name if x else None} is not supported; supported: "
                           f"{', '.join(self.TYPES)}")
        if self.SAME_TYPE and y.type_name != x.type_name:
            raise ctx.fail(f"output type {y.type_name} differs from the input type {x.type_name}")
        if y.dtype is None:
            raise ctx.fail(f"output type {y.type_name} is not supported")
        if tuple(x.shape) != tuple(y.shape):
            raise ctx.fail(f"input shape {tuple(x.shape)} and output shape {tuple(y.shape)} differ")
        self.x_info, self.y_info = x, y
        self.table: Optional[np.ndarray] = None
        self.prepare(x, y)
        if self.table is not None:
            self.workspace["idx"] = (tuple(x.shape), np.dtype(np.intp))

    # -- subclass hooks

    def prepare(self, x: TensorInfo, y: TensorInfo) -> None:
        """Check parameters; build ``self.table`` (see :meth:`set_table`) for table kernels."""

    def run_float(self) -> None:
        """Compute ``self.y`` from ``self.x`` (non-table kernels)."""
        raise NotImplementedError

    # -- helpers

    def table_inputs(self) -> np.ndarray:
        """Every input value (int64), in the order of the input's unsigned view."""
        return table_inputs(self.x_info.dtype)

    def set_table(self, values: np.ndarray) -> None:
        """Use ``values`` (one output per entry of :meth:`table_inputs`) as the lookup table."""
        self.table = np.ascontiguousarray(values).astype(self.y_info.dtype)

    # -- Kernel

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Remember the views."""
        self.x, self.y, self.ws = inputs[0], outputs[0], ws
        if self.table is not None:
            self.xu = self.x.view(f"u{self.x.dtype.itemsize}")
            self.idx = ws["idx"]
            self._bind_fast()

    def _bind_fast(self) -> None:
        """int8 -> int8 tables on the compiled path: one pass of lookups (the same table, so the same bytes)."""
        from edge_runtime.backends.micro.fast import int8_lut_runner

        runner = int8_lut_runner(self.x, self.y, self.table)
        if runner is not None:
            self.run = runner  # type: ignore[method-assign]
            self.path = "numba"

    def run(self) -> None:
        """Look up or compute."""
        if self.table is not None:
            np.copyto(self.idx, self.xu)
            self.table.take(self.idx, out=self.y, mode="clip")
        else:
            self.run_float()


class LibmKernel(UnaryKernel):
    """A float32-only op that is one C-library function, as glibc computes it (``FUNCTION``: one of micro's
    ``libm_*`` classes, made for the tensor's size: its buffers are allocated once, here)."""

    FUNCTION: type = type(None)

    def prepare(self, x: TensorInfo, y: TensorInfo) -> None:
        """The function's buffers for this shape."""
        self.function = self.FUNCTION(int(np.prod(x.shape, dtype=np.int64)))

    def run_float(self) -> None:
        """``y = f(x)``."""
        self.function(self.x, self.y)


class FloatUfuncKernel(UnaryKernel):
    """A float32-only op that is one numpy ufunc (same rounding as TFLM's float kernel)."""

    UFUNC: "np.ufunc" = np.positive

    def run_float(self) -> None:
        """Apply the ufunc."""
        type(self).UFUNC(self.x, out=self.y)
