"""Which subgraphs an op invokes, which subgraphs a model runs, and the global execution timeline.

TFLite Micro plans every subgraph's tensors in one arena. Its allocation-info
builder walks the entry subgraph op by op; at a control-flow op (IF, WHILE,
CALL_ONCE) it walks the invoked subgraphs right there, so their tensors live
inside the control op's time span. This module gives that walk as a flat list of
steps (one per op, plus one "entry" step per invoked subgraph) that the lifetime
and planning code use instead of plain op indices. For a single-subgraph model
step ``i`` is op ``i``.

Option tables read here (schema field numbers): CallOnceOptions{init_subgraph_index},
IfOptions{then_subgraph_index, else_subgraph_index}, WhileOptions{cond_subgraph_index,
body_subgraph_index}, VarHandleOptions{container, shared_name}.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from edge_runtime.errors import ModelFormatError, UnsupportedModelError
from edge_runtime.formats.flatbuffer import FlatBufferError
from edge_runtime.formats.tflite import Operator, TFLiteModel

#: Ops that invoke other subgraphs.
CONTROL_FLOW_OPS = frozenset({"CALL_ONCE", "IF", "WHILE"})


def _int_field(op: Operator, index: int) -> int:
    try:
        return int(op.options.scalar(index, "i", 0)) if op.options is not None else 0
    except FlatBufferError as exc:
        raise ModelFormatError(f"op {op.index} ({op.name}) has a corrupt options table: {exc}") from None


def call_once_options(op: Operator) -> int:
    """CALL_ONCE: the init subgraph index."""
    return _int_field(op, 0)


def if_options(op: Operator) -> tuple[int, int]:
    """IF: (then subgraph, else subgraph)."""
    return _int_field(op, 0), _int_field(op, 1)


def while_options(op: Operator) -> tuple[int, int]:
    """WHILE: (cond subgraph, body subgraph)."""
    return _int_field(op, 0), _int_field(op, 1)


def var_handle_options(op: Operator) -> tuple[Optional[str], str]:
    """VAR_HANDLE: (container, shared_name); an absent container is None (it matches any), an absent name ''."""
    if op.options is None:
        return None, ""
    try:
        container = op.options.string(0) if op.options.has(0) else None
        return container, op.options.string(1)
    except (FlatBufferError, UnicodeDecodeError) as exc:
        raise ModelFormatError(f"op {op.index} (VAR_HANDLE) has a corrupt options table: {exc}") from None


def called_subgraphs(op: Operator) -> tuple[int, ...]:
    """The subgraphs ``op`` invokes, in the order TFLM plans them (cond before body, then before else)."""
    if op.name == "CALL_ONCE":
        return (call_once_options(op),)
    if op.name == "IF":
        return if_options(op)
    if op.name == "WHILE":
        return while_options(op)
    return ()


def _check_index(model: TFLiteModel, sg: int, op: Operator, target: int) -> None:
    if not 0 <= target < len(model.subgraphs):
        raise UnsupportedModelError(
            f"{model.path}: subgraph {sg} op {op.index} ({op.name}) invokes subgraph {target}, but the model "
            f"has {len(model.subgraphs)} subgraphs")
    if target == 0:
        raise UnsupportedModelError(
            f"{model.path}: subgraph {sg} op {op.index} ({op.name}) invokes the entry subgraph 0 (recursion)")


def reachable_subgraphs(model: TFLiteModel, root: int = 0) -> list[int]:
    """Subgraphs run from ``root`` (``root`` first, then in first-visit order); refuses recursion."""
    order: list[int] = []
    stack: list[int] = []

    def visit(sg_index: int) -> None:
        if sg_index in stack:
            raise UnsupportedModelError(
                f"{model.path}: subgraph {sg_index} invokes itself (recursion through "
                f"{' -> '.join(map(str, stack + [sg_index]))}), which TFLite Micro cannot run")
        if sg_index in order:
            return
        order.append(sg_index)
        stack.append(sg_index)
        for op in model.subgraphs[sg_index].operators:
            for target in called_subgraphs(op):
                _check_index(model, sg_index, op, target)
                visit(target)
        stack.pop()

    visit(root)
    return order


@dataclass(frozen=True)
class Step:
    """One point of the global timeline: op ``op`` of subgraph ``subgraph`` (``op`` None: subgraph entry).

    ``end`` is the last step of the op's span: for a control-flow op, the last step of
    the subgraphs it invokes (its inputs, outputs and scratch live until then); else the step itself.
    """

    index: int
    subgraph: int
    op: Optional[int]
    end: int


@dataclass
class Visit:
    """One run of a subgraph on the timeline: its entry step, its ops' steps, and its last step."""

    subgraph: int
    entry: int
    ops: list[Step]
    end: int


def execution_visits(model: TFLiteModel, root: int = 0) -> tuple[list[Step], list[Visit]]:
    """The global timeline TFLM's allocation-info builder walks (see the module docstring), and its visits."""
    reachable_subgraphs(model, root)  # validates indices and recursion
    steps: list[Step] = []
    visits: list[Visit] = []

    def walk(sg_index: int, entry: bool) -> None:
        if entry:
            steps.append(Step(len(steps), sg_index, None, len(steps)))
        visit = Visit(sg_index, max(len(steps) - 1, 0) if entry else 0, [], 0)
        visits.append(visit)
        for op in model.subgraphs[sg_index].operators:
            at = len(steps)
            steps.append(Step(at, sg_index, op.index, at))
            for target in called_subgraphs(op):
                walk(target, True)
            steps[at] = Step(at, sg_index, op.index, len(steps) - 1)
            visit.ops.append(steps[at])
        visit.end = max(len(steps) - 1, 0)

    walk(root, False)
    return steps, visits


def execution_steps(model: TFLiteModel, root: int = 0) -> list[Step]:
    """The global timeline (see :func:`execution_visits`)."""
    return execution_visits(model, root)[0]
