"""Tensor lifetimes: the first and last op index at which each arena tensor is live.

Rules (they follow TFLite Micro's allocation-info builder, so a plan made from them
can be handed to TFLM as an offline plan):

- Op indices are execution order in the subgraph; lifetimes are **inclusive**. A
  tensor last used at op ``i`` and a tensor produced at op ``i`` are both live at
  ``i`` and never share bytes (unless the in-place pass aliases them on purpose).
- A tensor produced by op ``i`` is live from ``i``; one read by op ``j`` is live at
  least until ``j``.
- **Graph inputs** are live from op 0 (the caller writes them before the first op).
- **Graph outputs** are live from their producer to the last op (the caller reads
  them after the last op). A graph input that is also an output spans every op.
- Op intermediates (e.g. LSTM gates) are live only during their op.
- A non-constant tensor that some op reads but nothing produces and that is not a
  graph input is treated as live from op 0 (conservative).
- Constant tensors (data in the file), variable tensors (persistent state, kept
  outside the activation arena like TFLM's tail) and empty tensors get no lifetime
  and no arena space. Nor do tensors no op and no graph edge touches.
"""
from __future__ import annotations

from dataclasses import dataclass

from edge_runtime.formats.tflite import SubGraph, TensorInfo, TFLiteModel


@dataclass(frozen=True)
class TensorLifetime:
    """One arena tensor: its index, name, byte size and inclusive live range [first_op, last_op]."""

    tensor: int
    name: str
    size: int
    first_op: int
    last_op: int

    def overlaps(self, other: "TensorLifetime") -> bool:
        """True when both are live at some common op."""
        return self.first_op <= other.last_op and other.first_op <= self.last_op


def needs_arena(t: TensorInfo) -> bool:
    """True when tensor ``t`` is an activation that lives in the arena (not constant, variable or empty)."""
    return not t.is_constant and not t.is_variable and t.nbytes > 0


def tensor_lifetimes(model: TFLiteModel, subgraph: int = 0) -> dict[int, TensorLifetime]:
    """Lifetimes of every arena tensor of ``model.subgraphs[subgraph]``, keyed by tensor index."""
    sg = model.subgraphs[subgraph]
    return subgraph_lifetimes(sg)


def subgraph_lifetimes(sg: SubGraph) -> dict[int, TensorLifetime]:
    """Lifetimes of the arena tensors of one parsed subgraph (see the module docstring for the rules)."""
    n_ops = len(sg.operators)
    last_index = max(n_ops - 1, 0)
    first: dict[int, int] = {}
    last: dict[int, int] = {}

    def touch(t: int, i: int) -> None:
        if t < 0 or not needs_arena(sg.tensors[t]):
            return
        first[t] = min(first.get(t, i), i)
        last[t] = max(last.get(t, i), i)

    for t in sg.inputs:
        touch(t, 0)
    for op in sg.operators:
        for t in op.inputs:
            if t >= 0 and needs_arena(sg.tensors[t]) and t not in first:
                first[t] = 0  # read before anything produced it: live from the start
            touch(t, op.index)
        for t in op.outputs:
            touch(t, op.index)
        for t in op.intermediates:
            touch(t, op.index)
    for t in sg.outputs:
        if t in first:
            last[t] = last_index
        else:
            touch(t, last_index)
    return {
        t: TensorLifetime(t, sg.tensors[t].name, sg.tensors[t].nbytes, first[t], last[t])
        for t in sorted(first)
    }
