"""Shared pieces of the control-flow and resource-variable kernels.

Control kernels need the prepared interpreter (other subgraphs, the persistent
state): the interpreter calls ``attach(interpreter)`` on every kernel that has it,
after all views exist and before ``bind``.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from edge_runtime.backends.micro.kernels.base import Kernel, OpContext

if TYPE_CHECKING:
    from edge_runtime.backends.micro.interpreter import Interpreter, SubgraphRun


def as_bytes(a: np.ndarray) -> np.ndarray:
    """A flat uint8 view of a contiguous array."""
    return a.reshape(-1).view(np.uint8)


class Copier:
    """Copies a fixed list of arrays into another (byte for byte, no allocation)."""

    def __init__(self, pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> None:
        self.pairs = [(as_bytes(d), as_bytes(s)) for d, s in pairs if d.size and
                      d.__array_interface__["data"][0] != s.__array_interface__["data"][0]]

    def __call__(self) -> None:
        for d, s in self.pairs:
            np.copyto(d, s)


def check_same_bytes(ctx: OpContext, what: str, src: Any, dst: Any) -> None:
    """Refuse a copy between tensors of different types or byte sizes (TFLM requires both equal)."""
    if src.nbytes != dst.nbytes or src.type_code != dst.type_code or src.dtype is None or dst.dtype is None:
        raise ctx.fail(f"{what}: tensor '{src.name}' ({src.type_name}{list(src.shape)}) and "
                       f"'{dst.name}' ({dst.type_name}{list(dst.shape)}) differ in size or type")


class SubgraphKernel(Kernel):
    """A kernel that invokes other subgraphs of the prepared model."""

    interp: Interpreter

    def attach(self, interp: Interpreter) -> None:
        """Remember the interpreter (its subgraph runs and state)."""
        self.interp = interp

    def run_of(self, index: int) -> SubgraphRun:
        """The prepared run of subgraph ``index``."""
        return self.interp.runs[index]

    def check_io(self, index: int, n_in: int, n_out: int, what: str) -> None:
        """Check a called subgraph's input and output counts."""
        sg = self.ctx.model.subgraphs[index]
        if len(sg.inputs) != n_in or (n_out >= 0 and len(sg.outputs) != n_out):
            raise self.ctx.fail(f"the {what} subgraph {index} has {len(sg.inputs)} inputs and {len(sg.outputs)} "
                                f"outputs; expected {n_in} and {n_out if n_out >= 0 else 'any'}")
        for t in sg.inputs:
            if sg.tensors[t].data is not None:
                raise self.ctx.fail(f"the {what} subgraph {index} has a constant input tensor {t}")

    def tensors_of(self, index: int, which: str) -> list:
        """TensorInfo of a subgraph's inputs or outputs."""
        sg = self.ctx.model.subgraphs[index]
        return [sg.tensors[t] for t in (sg.inputs if which == "inputs" else sg.outputs)]
