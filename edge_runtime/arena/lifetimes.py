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
  and no arena space. Nor do tensors no op and no graph edge touches, nor
  RESOURCE/VARIANT handles (TFLM keeps a resource id in the VAR_HANDLE op's data).

Multi-subgraph models (:func:`model_lifetimes`) use the global timeline of
:mod:`edge_runtime.arena.subgraphs`: an invoked subgraph's inputs and outputs are
created at its entry step, its outputs live to its last step, and a control-flow
op's inputs and outputs live over the whole span of the subgraphs it invokes. A
subgraph invoked from several places gets the hull of all its spans.
"""
from __future__ import annotations

from dataclasses import dataclass

from edge_runtime.arena.subgraphs import execution_visits
from edge_runtime.formats.tflite import SubGraph, TensorInfo, TFLiteModel


@dataclass(frozen=True)
class TensorLifetime:
    """One arena tensor: its index, name, byte size and inclusive live range [first_op, last_op]."""

    tensor: int
    name: str
    size: int
    first_op: int
    last_op: int
    subgraph: int = 0

    def overlaps(self, other: "TensorLifetime") -> bool:
        """True when both are live at some common op."""
        return self.first_op <= other.last_op and other.first_op <= self.last_op


def needs_arena(t: TensorInfo) -> bool:
    """True when tensor ``t`` is an activation that lives in the arena (not constant, variable or empty)."""
    return not t.is_constant and not t.is_variable and t.nbytes > 0 and t.type_name not in _HANDLE_TYPES


_HANDLE_TYPES = frozenset({"RESOURCE", "VARIANT"})


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


def model_lifetimes(model: TFLiteModel, root: int = 0) -> dict[tuple[int, int], TensorLifetime]:
    """Lifetimes, in global steps, of the arena tensors of every subgraph run from ``root``.

    Keyed by ``(subgraph, tensor)``. For a single-subgraph model the steps are the op
    indices and the result equals :func:`subgraph_lifetimes`.
    """
    _, visits = execution_visits(model, root)
    first: dict[tuple[int, int], int] = {}
    last: dict[tuple[int, int], int] = {}

    def touch(sg: SubGraph, t: int, a: int, b: int) -> None:
        if t < 0 or not needs_arena(sg.tensors[t]):
            return
        k = (sg.index, t)
        first[k] = min(first.get(k, a), a)
        last[k] = max(last.get(k, b), b)

    for v in visits:
        sg = model.subgraphs[v.subgraph]
        produced: set[int] = set(sg.inputs)
        for t in sg.inputs:
            touch(sg, t, v.entry, v.entry)
        if v.subgraph != root:
            # TFLM marks an invoked subgraph's outputs created at its entry, then again (overwriting)
            # at their producer: only outputs that no op of the subgraph produces live from the entry.
            made = {t for st in v.ops for t in sg.operators[st.op].outputs}  # type: ignore[index]
            for t in sg.outputs:
                if t not in made:
                    touch(sg, t, v.entry, v.entry)
        for st in v.ops:
            op = sg.operators[st.op]  # type: ignore[index]
            for t in op.inputs:
                if t >= 0 and t not in produced:
                    touch(sg, t, v.entry, v.entry)  # read before anything produced it: live from the start
                touch(sg, t, st.index, st.end)
            for t in op.outputs:
                touch(sg, t, st.index, st.end)
            for t in op.intermediates:
                touch(sg, t, st.index, st.end)
            produced.update(t for t in op.outputs if t >= 0)
        for t in sg.outputs:
            if (sg.index, t) in first:
                last[(sg.index, t)] = max(last[(sg.index, t)], v.end)
            else:
                touch(sg, t, v.end, v.end)
    out = {}
    for k in sorted(first):
        t = model.subgraphs[k[0]].tensors[k[1]]
        out[k] = TensorLifetime(k[1], t.name, t.nbytes, first[k], last[k], k[0])
    return out
