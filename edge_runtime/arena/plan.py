"""``plan_arena``: one static offset plan for every activation and kernel scratch of a model.

Like TFLite Micro, one arena holds the tensors of every subgraph the entry subgraph
runs (IF/WHILE/CALL_ONCE bodies are planned inside the control op's time span, see
:mod:`edge_runtime.arena.subgraphs`); op indices in the plan (``first_op``,
``last_op``) are steps of that global timeline, equal to op indices for
single-subgraph models. Variable tensors and resource variables are persistent
(``persistent_bytes``, TFLM's tail), outside the reused plan.

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
from edge_runtime.arena.lifetimes import model_lifetimes
from edge_runtime.arena.op_memory import (KERNEL_TRAITS_MODULE, KERNEL_TRAITS_SOURCE, ArenaPlanError,
                                          checked_op_memory, resolve_op_memory)
from edge_runtime.arena.persistent import persistent_layout
from edge_runtime.arena.planners import PLANNERS, Block, arena_size, best_of_orderings, lower_bound
from edge_runtime.arena.subgraphs import Step, execution_visits, reachable_subgraphs
from edge_runtime.arena.traits import OpMemory, OpMemoryFn
from edge_runtime.arena.validate import validate_plan
from edge_runtime.errors import EdgeRuntimeError, UnsupportedModelError
from edge_runtime.formats.tflite import Operator, TFLiteModel
from edge_runtime.formats.tflite_check import check_structure


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
    subgraph: int = 0


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
    #: Op indices (of the entry subgraph) whose output overwrites a dying input.
    in_place_ops: frozenset[int] = frozenset()
    #: Bytes of variable tensors and resource variables (persistent, outside the plan; TFLM's tail).
    persistent_bytes: int = 0
    #: Subgraphs the plan covers (the entry subgraph first).
    subgraphs: tuple[int, ...] = (0,)
    #: The same for every subgraph, as (subgraph, op) pairs.
    in_place_keys: frozenset[tuple[int, int]] = frozenset()
    _by_tensor: dict[tuple[int, int], PlanEntry] = field(default_factory=dict, repr=False)
    _by_op: dict[tuple[int, int], PlanEntry] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._by_tensor = {(e.subgraph, e.tensor): e for e in self.entries if e.kind == "tensor"}
        self._by_op = {(e.subgraph, e.op): e for e in self.entries if e.kind == "scratch"}

    @property
    def total_bytes(self) -> int:
        """Arena plus persistent buffers: what a device must reserve for this model's data."""
        return self.arena_bytes + self.persistent_bytes

    def tensor_offset(self, tensor_index: int, subgraph: Optional[int] = None) -> int:
        """Byte offset of tensor ``tensor_index`` (of ``subgraph``, default the entry one); KeyError if none."""
        try:
            return self._by_tensor[(self._sg(subgraph), tensor_index)].offset
        except KeyError:
            raise KeyError(f"tensor {tensor_index} has no place in the arena (constant, variable, "
                           f"empty or unused)") from None

    def _sg(self, subgraph: Optional[int]) -> int:
        return self.subgraph if subgraph is None else subgraph

    def has_tensor(self, tensor_index: int, subgraph: Optional[int] = None) -> bool:
        """True when tensor ``tensor_index`` (of ``subgraph``) lives in the arena."""
        return (self._sg(subgraph), tensor_index) in self._by_tensor

    def scratch(self, op_index: int, subgraph: Optional[int] = None) -> Optional[tuple[int, int]]:
        """``(offset, size)`` of op ``op_index``'s scratch buffer, or None when it has none."""
        e = self._by_op.get((self._sg(subgraph), op_index))
        return None if e is None else (e.offset, e.size)

    def runs_in_place(self, op_index: int, subgraph: Optional[int] = None) -> bool:
        """True when op ``op_index``'s output overwrites its dying input (use ``inplace_scratch_bytes``)."""
        sg = self._sg(subgraph)
        return (sg, op_index) in self.in_place_keys or (sg == self.subgraph and op_index in self.in_place_ops)

    def tensor_entries(self, subgraph: Optional[int] = None) -> list[PlanEntry]:
        """Tensor entries of ``subgraph`` (default: the entry subgraph) in tensor-index order."""
        sg = self._sg(subgraph)
        return [self._by_tensor[k] for k in sorted(self._by_tensor) if k[0] == sg]

    def all_tensor_entries(self) -> list[PlanEntry]:
        """Tensor entries of every subgraph, by (subgraph, tensor)."""
        return [self._by_tensor[k] for k in sorted(self._by_tensor)]

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
            "persistent_bytes": self.persistent_bytes,
            "subgraphs": list(self.subgraphs),
            "tensors": [entry(e) for e in self.all_tensor_entries()],
            "scratch": [entry(self._by_op[o]) for o in sorted(self._by_op)],
        }

    def to_json(self, indent: Optional[int] = 2) -> str:
        """The plan as JSON: arena_bytes, lower_bound_bytes, in_place, planner, tensors, scratch."""
        return json.dumps(self.to_dict(), indent=indent)


class _Groups:
    """Union-find over tensor indices, tracking each group's joint lifetime."""

    def __init__(self, lifetimes: dict) -> None:
        self.parent = {t: t for t in lifetimes}
        self.first = {t: lt.first_op for t, lt in lifetimes.items()}
        self.last = {t: lt.last_op for t, lt in lifetimes.items()}

    def root(self, t):  # type: ignore[no-untyped-def]
        while self.parent[t] != t:
            self.parent[t] = self.parent[self.parent[t]]
            t = self.parent[t]
        return t

    def join(self, keep, other) -> None:  # type: ignore[no-untyped-def]
        a, b = self.root(keep), self.root(other)
        if a == b:
            return
        self.parent[b] = a
        self.first[a] = min(self.first[a], self.first[b])
        self.last[a] = max(self.last[a], self.last[b])


@dataclass(frozen=True)
class _FlatOp:
    """One op of the model on the global timeline: its subgraph, the op, its span and its traits."""

    subgraph: int
    op: Operator
    first: int
    last: int
    mem: OpMemory
    once: bool  # the op occurs once on the timeline (its subgraph is visited once)

    @property
    def key(self) -> tuple[int, int]:
        return (self.subgraph, self.op.index)


@dataclass
class _Layout:
    """Buffers to place for one set of in-place decisions."""

    roots: list
    members: dict
    scratch: list  # (flat op, bytes)
    blocks: list[Block]
    applied: frozenset  # (subgraph, op) keys whose output overwrites a dying input


def _colocation_groups(model: TFLiteModel, lifetimes: dict) -> list[list[tuple[int, int]]]:
    """Tensors of different subgraphs with the same index whose lifetimes never overlap.

    TFLite Micro reads an offline plan's offsets by tensor index within each subgraph, so
    tensors sharing an index across subgraphs must share an offset to be offline-planned.
    Indices where some subgraph has a variable tensor, or where the lifetimes overlap, are
    left apart (the embedded plan gives them -1: TFLM places them itself).
    """
    by_index: dict[int, list[tuple[int, int]]] = {}
    for k in lifetimes:
        by_index.setdefault(k[1], []).append(k)
    groups = []
    for i, keys in sorted(by_index.items()):
        if len(keys) < 2:
            continue
        if any(i < len(g.tensors) and g.tensors[i].is_variable for g in model.subgraphs):
            continue
        spans = sorted((lifetimes[k].first_op, lifetimes[k].last_op) for k in keys)
        if all(a[1] < b[0] for a, b in zip(spans, spans[1:])):
            groups.append(sorted(keys))
    return groups


def _layout(model: TFLiteModel, lifetimes: dict, flat: list[_FlatOp], in_place: bool,
            disabled: frozenset, colocate: bool = False) -> _Layout:
    """Alias groups and scratch for the given traits, skipping in-place at ``disabled`` ops."""
    groups = _Groups(lifetimes)
    if colocate:
        for keys in _colocation_groups(model, lifetimes):
            for k in keys[1:]:
                groups.join(keys[0], k)
    graph_outputs = [k for sgi in {f.subgraph for f in flat} for k in
                     ((sgi, t) for t in model.subgraphs[sgi].outputs) if k in lifetimes]
    scratch: list = []
    applied: set = set()
    for f in flat:
        op, mem, sgi = f.op, f.mem, f.subgraph
        nbytes = mem.scratch_bytes
        outs = [(sgi, t) for t in op.outputs if (sgi, t) in lifetimes]
        if in_place and f.once and len(outs) == 1 and len(op.outputs) == 1 and lifetimes[outs[0]].first_op == f.first:
            out = outs[0]  # (an output read before this op, e.g. a feedback tensor, keeps its own buffer)
            if mem.alias_input is not None and (sgi, op.inputs[mem.alias_input]) in lifetimes:
                groups.join(groups.root((sgi, op.inputs[mem.alias_input])), out)
                nbytes = mem.inplace_scratch_bytes
            elif (mem.inplace_input is not None and f.key not in disabled
                  and (sgi, op.inputs[mem.inplace_input]) in lifetimes):
                src = groups.root((sgi, op.inputs[mem.inplace_input]))
                holds_output = any(groups.root(t) == src for t in graph_outputs)
                if groups.last[src] == f.last and not holds_output and src != groups.root(out):
                    groups.join(src, out)
                    nbytes = mem.inplace_scratch_bytes
                    applied.add(f.key)
        if nbytes > 0:
            scratch.append((f, nbytes))
    roots = sorted({groups.root(t) for t in lifetimes})
    members: dict = {r: [] for r in roots}
    for t in lifetimes:
        members[groups.root(t)].append(t)
    blocks = [Block(max(align_up(lifetimes[t].size) for t in members[r]), groups.first[r], groups.last[r])
              for r in roots]
    blocks += [Block(align_up(n), f.first, f.last) for f, n in scratch]
    return _Layout(roots, members, scratch, blocks, frozenset(applied))


_MAX_TOGGLED_OPS = 64


def _quick_size(blocks: list[Block]) -> int:
    return arena_size(blocks, best_of_orderings(blocks, iterations=0))


def _choose_in_place(model, lifetimes, flat, everything: _Layout) -> _Layout:
    """Keep only the in-place steps that pay off.

    Running an op in place is not always smaller: the shared buffer is as large as
    its largest member for the whole joint lifetime, and in-place scratch may exceed
    the normal one. Start from the better of "every eligible op in place" and "none"
    (aliases stay), then turn single ops on or off while that strictly shrinks the
    arena (sized with the fast orderings, no search). Graphs with more than
    ``_MAX_TOGGLED_OPS`` in-place candidates keep the all-or-none choice (bounded time).
    """
    none = _layout(model, lifetimes, flat, True, frozenset(everything.applied))
    best, best_size = everything, _quick_size(everything.blocks)
    disabled: frozenset = frozenset()
    if _quick_size(none.blocks) < best_size:
        best, best_size, disabled = none, _quick_size(none.blocks), frozenset(everything.applied)
    candidates = sorted(everything.applied) if len(everything.applied) <= _MAX_TOGGLED_OPS else []
    improved = True
    while improved:
        improved = False
        for i in candidates:
            trial_disabled = disabled ^ {i}
            trial = _layout(model, lifetimes, flat, True, trial_disabled)
            size = _quick_size(trial.blocks)
            if size < best_size:
                best, best_size, disabled, improved = trial, size, trial_disabled, True
    return best


def _flat_ops(model: TFLiteModel, steps: list[Step], fn: OpMemoryFn) -> list[_FlatOp]:
    """Each op of every visited subgraph once, with the hull of its spans and its checked traits."""
    spans: dict[tuple[int, int], list[int]] = {}
    count: dict[tuple[int, int], int] = {}
    order: list[tuple[int, int]] = []
    for st in steps:
        if st.op is None:
            continue
        k = (st.subgraph, st.op)
        if k not in spans:
            spans[k] = [st.index, st.end]
            order.append(k)
        else:
            spans[k] = [min(spans[k][0], st.index), max(spans[k][1], st.end)]
        count[k] = count.get(k, 0) + 1
    flat = []
    for k in order:
        sg = model.subgraphs[k[0]]
        op = sg.operators[k[1]]
        flat.append(_FlatOp(k[0], op, spans[k][0], spans[k][1], checked_op_memory(fn, model, sg, op), count[k] == 1))
    return flat


def _require_known_ops(model: TFLiteModel, subgraphs: list[int]) -> Optional[dict[tuple[int, int], Any]]:
    """With the micro kernels' traits, every op must be one micro can prepare: otherwise its needs are unknown.

    Each op's kernel is built (TFLM's Prepare: types, shapes, options), so an op micro does not implement, or
    implements but not for these tensor types, is an error naming it rather than a plan without its scratch.
    Returns the kernels by (subgraph, op), for the traits to reuse (None without the micro kernels).
    """
    try:
        from edge_runtime.backends.micro.kernels import REGISTRY, OpContext
    except ModuleNotFoundError:
        return None
    kernels: dict[tuple[int, int], Any] = {}
    for sgi in subgraphs:
        g = model.subgraphs[sgi]
        for op in g.operators:
            where = f"{model.path}: subgraph {sgi} op {op.index} ({op.name})"
            cls = REGISTRY.get(op.name)
            if cls is None:
                raise ArenaPlanError(f"{where}: the micro backend has no kernel for this op, so its arena needs "
                                     "(scratch) are unknown; refusing to report a plan that could be too small")
            try:
                kernels[(sgi, op.index)] = cls(OpContext(model, g, op))
            except EdgeRuntimeError as exc:
                why = str(exc).split(": ", 1)[-1]
                raise ArenaPlanError(f"{where}: the micro kernel cannot prepare it, so its arena needs are "
                                     f"unknown: {why}") from None
    return kernels


def _reusing(fn: OpMemoryFn, kernels: Optional[dict[tuple[int, int], Any]]) -> OpMemoryFn:
    """The micro traits ``fn``, answering from the kernels :func:`_require_known_ops` built (same traits,
    without building each kernel a second time) when the traits module offers that."""
    if kernels is None:
        return fn
    import importlib

    with_kernels = getattr(importlib.import_module(KERNEL_TRAITS_MODULE), "op_memory_with_kernels", None)
    return fn if with_kernels is None else with_kernels(kernels)


def plan_arena(model: TFLiteModel, subgraph: int = 0, *, in_place: bool = True, planner: str = "best",
               op_memory: Optional[OpMemoryFn] = None, colocate_by_index: bool = False) -> ArenaPlan:
    """Plan the activation arena of ``model`` run from ``model.subgraphs[subgraph]``.

    Every subgraph that one invokes (IF, WHILE, CALL_ONCE) is planned in the same
    arena, as TFLite Micro does. ``op_memory`` gives each op's scratch and aliasing
    traits; None means the micro kernels' ``memory_traits.op_memory``, and then an op
    with no micro kernel is an error (its scratch is unknown). ``planner`` is a name
    in :data:`edge_runtime.arena.planners.PLANNERS`. The result is validated: no two
    buffers live at the same step overlap, except declared aliases. A malformed model
    (what :func:`~edge_runtime.formats.tflite_check.check_structure` refuses) raises
    :class:`~edge_runtime.errors.ModelFormatError`.

    ``colocate_by_index`` (offline plans for TFLM, no in-place): tensors with the same
    index in different subgraphs share one buffer where their lifetimes allow it.
    """
    if colocate_by_index and in_place:
        raise ArenaPlanError("colocate_by_index plans are for TFLite Micro and need in_place=False")
    if planner not in PLANNERS:
        raise ArenaPlanError(f"unknown planner '{planner}'; choose one of: {', '.join(sorted(PLANNERS))}")
    if not 0 <= subgraph < len(model.subgraphs):
        raise ArenaPlanError(f"subgraph {subgraph} does not exist; the model has {len(model.subgraphs)}")
    check_structure(model)  # ModelFormatError naming the tensor/op, before any kernel or size is read
    try:
        steps, _ = execution_visits(model, subgraph)
        covered = reachable_subgraphs(model, subgraph)
    except UnsupportedModelError as exc:
        raise ArenaPlanError(str(exc)) from None
    fn, source = resolve_op_memory(op_memory)
    if op_memory is None and source == KERNEL_TRAITS_SOURCE:
        fn = _reusing(fn, _require_known_ops(model, covered))
    lifetimes = model_lifetimes(model, subgraph)
    flat = _flat_ops(model, steps, fn)
    layout = _layout(model, lifetimes, flat, in_place, frozenset(), colocate_by_index)
    if in_place and layout.applied:
        layout = _choose_in_place(model, lifetimes, flat, layout)
    roots, members, scratch, blocks = layout.roots, layout.members, layout.scratch, layout.blocks
    offsets = PLANNERS[planner](blocks)

    entries: list[PlanEntry] = []
    for r, off in zip(roots, offsets):
        for k in sorted(members[r]):
            lt = lifetimes[k]
            entries.append(PlanEntry(lt.name, "tensor", k[1], None, off, lt.size, lt.first_op, lt.last_op,
                                     None if k == r or k[0] != r[0] else r[1], k[0]))
    for (f, n), off in zip(scratch, offsets[len(roots):]):
        where = f"op {f.op.index} {f.op.name}" if f.subgraph == subgraph else \
            f"subgraph {f.subgraph} op {f.op.index} {f.op.name}"
        entries.append(PlanEntry(f"scratch[{where}]", "scratch", None, f.op.index, off, n, f.first, f.last,
                                 None, f.subgraph))

    plan = ArenaPlan(
        arena_bytes=arena_size(blocks, offsets), lower_bound_bytes=lower_bound(blocks),
        in_place=in_place, planner=planner, entries=entries, subgraph=subgraph,
        num_ops=len(steps), num_tensors=len(model.subgraphs[subgraph].tensors), op_memory_source=source,
        in_place_ops=frozenset(k[1] for k in layout.applied if k[0] == subgraph),
        in_place_keys=layout.applied, persistent_bytes=persistent_layout(model).persistent_bytes,
        subgraphs=tuple(covered),
    )
    validate_plan(plan)
    return plan
