"""``plan_arena``: one static offset plan for every activation and kernel scratch of a subgraph.

The plan is what the micro interpreter allocates (one buffer of ``arena_bytes``,
every activation a view at its offset) and what ``edge-convert plan`` reports and
embeds into models for TFLite Micro.

In-place aliasing (``in_place=True``) uses the kernels' :class:`OpMemory` traits:

- ``alias_input``: the output *is* the input's bytes (RESHAPE, SQUEEZE): one buffer.
- ``inplace_input``: when that input's buffer dies at this op (no later reader, not
  a graph output), the output takes over the same start offset; the shared buffer
  is as large as its largest member, and the op's scratch becomes
  ``inplace_scratch_bytes``.

With ``in_place=False`` every tensor has its own buffer and each op's scratch is
``scratch_bytes``: a plan TFLite Micro could execute. Scratch buffers are live
only during their op. All offsets and sizes are 16-byte aligned.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

from edge_runtime.arena.align import ALIGNMENT, align_up
from edge_runtime.arena.lifetimes import TensorLifetime, subgraph_lifetimes
from edge_runtime.arena.op_memory import ArenaPlanError, checked_op_memory, resolve_op_memory
from edge_runtime.arena.planners import PLANNERS, Block, arena_size, best_of_orderings, lower_bound
from edge_runtime.arena.traits import OpMemoryFn
from edge_runtime.arena.validate import validate_plan
from edge_runtime.formats.tflite import TFLiteModel


@dataclass(frozen=True)
class PlanEntry:
    """One buffer of the plan.

    ``kind`` is ``"tensor"`` (``tensor`` is its index, ``op`` is None) or
    ``"scratch"`` (``op`` is the op index, ``tensor`` is None). ``size`` is the
    unaligned byte size; the buffer occupies ``align_up(size)`` bytes from ``offset``.
    ``alias_of`` is the tensor index whose buffer this tensor shares (in-place plans
    only), else None. ``first_op``/``last_op`` are this entry's own inclusive lifetime.
    """

    name: str
    kind: str
    tensor: Optional[int]
    op: Optional[int]
    offset: int
    size: int
    first_op: int
    last_op: int
    alias_of: Optional[int] = None


@dataclass
class ArenaPlan:
    """A static arena plan for one subgraph (see :func:`plan_arena`)."""

    arena_bytes: int
    lower_bound_bytes: int
    in_place: bool
    planner: str
    entries: list[PlanEntry]
    subgraph: int = 0
    num_ops: int = 0
    num_tensors: int = 0
    op_memory_source: str = ""
    alignment: int = ALIGNMENT
    in_place_ops: frozenset[int] = frozenset()
    _by_tensor: dict[int, PlanEntry] = field(default_factory=dict, repr=False)
    _by_op: dict[int, PlanEntry] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._by_tensor = {e.tensor: e for e in self.entries if e.kind == "tensor"}
        self._by_op = {e.op: e for e in self.entries if e.kind == "scratch"}

    def tensor_offset(self, tensor_index: int) -> int:
        """Byte offset of tensor ``tensor_index`` in the arena; KeyError if it has no arena space."""
        try:
            return self._by_tensor[tensor_index].offset
        except KeyError:
            raise KeyError(f"tensor {tensor_index} has no place in the arena (constant, variable, "
                           f"empty or unused)") from None

    def has_tensor(self, tensor_index: int) -> bool:
        """True when tensor ``tensor_index`` lives in the arena."""
        return tensor_index in self._by_tensor

    def scratch(self, op_index: int) -> Optional[tuple[int, int]]:
        """``(offset, size)`` of op ``op_index``'s scratch buffer, or None when it has none."""
        e = self._by_op.get(op_index)
        return None if e is None else (e.offset, e.size)

    def runs_in_place(self, op_index: int) -> bool:
        """True when op ``op_index``'s output overwrites its dying input (use ``inplace_scratch_bytes``)."""
        return op_index in self.in_place_ops

    def tensor_entries(self) -> list[PlanEntry]:
        """Tensor entries in tensor-index order."""
        return [self._by_tensor[t] for t in sorted(self._by_tensor)]

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (what :meth:`to_json` writes)."""
        def entry(e: PlanEntry) -> dict[str, Any]:
            d = asdict(e)
            d["op"] = e.op
            return d

        return {
            "arena_bytes": self.arena_bytes,
            "lower_bound_bytes": self.lower_bound_bytes,
            "in_place": self.in_place,
            "planner": self.planner,
            "alignment": self.alignment,
            "subgraph": self.subgraph,
            "num_ops": self.num_ops,
            "num_tensors": self.num_tensors,
            "op_memory": self.op_memory_source,
            "in_place_ops": sorted(self.in_place_ops),
            "tensors": [entry(e) for e in self.tensor_entries()],
            "scratch": [entry(self._by_op[o]) for o in sorted(self._by_op)],
        }

    def to_json(self, indent: Optional[int] = 2) -> str:
        """The plan as JSON: arena_bytes, lower_bound_bytes, in_place, planner, tensors, scratch."""
        return json.dumps(self.to_dict(), indent=indent)


class _Groups:
    """Union-find over tensor indices, tracking each group's joint lifetime."""

    def __init__(self, lifetimes: dict[int, TensorLifetime]) -> None:
        self.parent = {t: t for t in lifetimes}
        self.first = {t: lt.first_op for t, lt in lifetimes.items()}
        self.last = {t: lt.last_op for t, lt in lifetimes.items()}

    def root(self, t: int) -> int:
        while self.parent[t] != t:
            self.parent[t] = self.parent[self.parent[t]]
            t = self.parent[t]
        return t

    def join(self, keep: int, other: int) -> None:
        a, b = self.root(keep), self.root(other)
        if a == b:
            return
        self.parent[b] = a
        self.first[a] = min(self.first[a], self.first[b])
        self.last[a] = max(self.last[a], self.last[b])


@dataclass
class _Layout:
    """Buffers to place for one set of in-place decisions."""

    roots: list[int]
    members: dict[int, list[int]]
    scratch: list[tuple[int, int]]  # (op index, bytes)
    blocks: list[Block]
    applied: frozenset[int]  # ops whose output overwrites a dying input


def _layout(sg, lifetimes: dict[int, TensorLifetime], mems: list, in_place: bool,
            disabled: frozenset[int]) -> _Layout:
    """Alias groups and scratch for the given traits, skipping in-place at ``disabled`` ops."""
    groups = _Groups(lifetimes)
    graph_outputs = [t for t in sg.outputs if t in lifetimes]
    scratch: list[tuple[int, int]] = []
    applied: set[int] = set()
    for op, mem in zip(sg.operators, mems):
        nbytes = mem.scratch_bytes
        outs = [t for t in op.outputs if t in lifetimes]
        if in_place and len(outs) == 1 and len(op.outputs) == 1:
            out = outs[0]
            if mem.alias_input is not None and op.inputs[mem.alias_input] in lifetimes:
                groups.join(groups.root(op.inputs[mem.alias_input]), out)
                nbytes = mem.inplace_scratch_bytes
            elif (mem.inplace_input is not None and op.index not in disabled
                  and op.inputs[mem.inplace_input] in lifetimes):
                src = groups.root(op.inputs[mem.inplace_input])
                holds_output = any(groups.root(t) == src for t in graph_outputs)
                if groups.last[src] == op.index and not holds_output and src != groups.root(out):
                    groups.join(src, out)
                    nbytes = mem.inplace_scratch_bytes
                    applied.add(op.index)
        if nbytes > 0:
            scratch.append((op.index, nbytes))
    roots = sorted({groups.root(t) for t in lifetimes})
    members: dict[int, list[int]] = {r: [] for r in roots}
    for t in lifetimes:
        members[groups.root(t)].append(t)
    blocks = [Block(max(align_up(lifetimes[t].size) for t in members[r]), groups.first[r], groups.last[r])
              for r in roots]
    blocks += [Block(align_up(n), i, i) for i, n in scratch]
    return _Layout(roots, members, scratch, blocks, frozenset(applied))


_MAX_TOGGLED_OPS = 64


def _quick_size(blocks: list[Block]) -> int:
    return arena_size(blocks, best_of_orderings(blocks, iterations=0))


def _choose_in_place(sg, lifetimes, mems, everything: _Layout) -> _Layout:
    """Keep only the in-place steps that pay off.

    Running an op in place is not always smaller: the shared buffer is as large as
    its largest member for the whole joint lifetime, and in-place scratch may exceed
    the normal one. Start from the better of "every eligible op in place" and "none"
    (aliases stay), then turn single ops on or off while that strictly shrinks the
    arena (sized with the fast orderings, no search). Graphs with more than
    ``_MAX_TOGGLED_OPS`` in-place candidates keep the all-or-none choice (bounded time).
    """
    none = _layout(sg, lifetimes, mems, True, frozenset(everything.applied))
    best, best_size = everything, _quick_size(everything.blocks)
    disabled: frozenset[int] = frozenset()
    if _quick_size(none.blocks) < best_size:
        best, best_size, disabled = none, _quick_size(none.blocks), frozenset(everything.applied)
    candidates = sorted(everything.applied) if len(everything.applied) <= _MAX_TOGGLED_OPS else []
    improved = True
    while improved:
        improved = False
        for i in candidates:
            trial_disabled = disabled ^ {i}
            trial = _layout(sg, lifetimes, mems, True, trial_disabled)
            size = _quick_size(trial.blocks)
            if size < best_size:
                best, best_size, disabled, improved = trial, size, trial_disabled, True
    return best


def plan_arena(model: TFLiteModel, subgraph: int = 0, *, in_place: bool = True, planner: str = "best",
               op_memory: Optional[OpMemoryFn] = None) -> ArenaPlan:
    """Plan the activation arena of ``model.subgraphs[subgraph]``.

    ``op_memory`` gives each op's scratch and aliasing traits; None means the micro
    kernels' ``memory_traits.op_memory`` (or a conservative fallback when absent,
    see :mod:`edge_runtime.arena.op_memory`). ``planner`` is a name in
    :data:`edge_runtime.arena.planners.PLANNERS`. The result is validated: no two
    buffers live at the same op overlap, except declared aliases.
    """
    if planner not in PLANNERS:
        raise ArenaPlanError(f"unknown planner '{planner}'; choose one of: {', '.join(sorted(PLANNERS))}")
    if not 0 <= subgraph < len(model.subgraphs):
        raise ArenaPlanError(f"subgraph {subgraph} does not exist; the model has {len(model.subgraphs)}")
    sg = model.subgraphs[subgraph]
    fn, source = resolve_op_memory(op_memory)
    lifetimes = subgraph_lifetimes(sg)
    mems = [checked_op_memory(fn, model, sg, op) for op in sg.operators]
    layout = _layout(sg, lifetimes, mems, in_place, frozenset())
    if in_place and layout.applied:
        layout = _choose_in_place(sg, lifetimes, mems, layout)
    roots, members, scratch, blocks = layout.roots, layout.members, layout.scratch, layout.blocks
    offsets = PLANNERS[planner](blocks)

    entries: list[PlanEntry] = []
    for r, off in zip(roots, offsets):
        for t in sorted(members[r]):
            lt = lifetimes[t]
            entries.append(PlanEntry(lt.name, "tensor", t, None, off, lt.size, lt.first_op, lt.last_op,
                                     None if t == r else r))
    for (i, n), off in zip(scratch, offsets[len(roots):]):
        entries.append(PlanEntry(f"scratch[op {i} {sg.operators[i].name}]", "scratch", None, i, off, n, i, i))

    plan = ArenaPlan(
        arena_bytes=arena_size(blocks, offsets), lower_bound_bytes=lower_bound(blocks),
        in_place=in_place, planner=planner, entries=entries, subgraph=subgraph,
        num_ops=len(sg.operators), num_tensors=len(sg.tensors), op_memory_source=source,
        in_place_ops=layout.applied,
    )
    validate_plan(plan)
    return plan
