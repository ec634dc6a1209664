"""Which nodes of a LiteRT interpreter a delegate took, read from the interpreter's node list.

After a delegate is applied, LiteRT keeps the model's own nodes and appends one ``DELEGATE``
node per partition the delegate claimed. Each such node's inputs are the partition's inputs and
its outputs the partition's outputs, so the model nodes inside a partition are exactly those
reached by walking producers back from the partition's outputs without crossing its inputs.
Nothing here guesses from op names or delegate documentation: the counts come from the graph
LiteRT built, and are checked in the tests against a delegate's own count of claimed nodes.
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Optional

DELEGATE_OP = "DELEGATE"
BUILTIN = "builtin kernels"
SOURCE = "LiteRT's node list (DELEGATE nodes and the partitions they replace)"


def _nodes(interp: Any) -> Optional[list[tuple[str, list[int], list[int]]]]:
    """(op name, inputs, outputs) for every node of the primary subgraph, or None if not exposed."""
    raw = getattr(interp, "_interpreter", None)
    try:
        n = int(raw.NumNodes())
        return [(str(raw.NodeName(i)), [int(t) for t in raw.NodeInputs(i)], [int(t) for t in raw.NodeOutputs(i)])
                for i in range(n)]
    except Exception:  # noqa: BLE001 - a LiteRT build without these accessors: placement unknown
        return None


def delegate_partitions(nodes: list[tuple[str, list[int], list[int]]]) -> list[set[int]]:
    """The set of model-node indices each DELEGATE node replaced, in the order LiteRT lists them."""
    producer: dict[int, int] = {}
    for i, (name, _ins, outs) in enumerate(nodes):
        if name != DELEGATE_OP:
            for t in outs:
                producer.setdefault(t, i)
    parts: list[set[int]] = []
    for name, ins, outs in nodes:
        if name != DELEGATE_OP:
            continue
        boundary = set(ins)
        taken: set[int] = set()
        stack = [t for t in outs if t >= 0]
        while stack:
            node = producer.get(stack.pop())
            if node is None or node in taken:
                continue
            taken.add(node)
            stack.extend(t for t in nodes[node][1] if t >= 0 and t not in boundary)
        parts.append(taken)
    return parts


def node_count(interp: Any) -> Optional[int]:
    """How many nodes the interpreter lists now (call it before ``allocate_tensors``, which applies
    LiteRT's default delegate lazily, to tell an explicitly applied delegate's nodes from the default's)."""
    try:
        return int(interp._interpreter.NumNodes())
    except Exception:  # noqa: BLE001 - accessor missing in this LiteRT build
        return None


def litert_placement(interp: Any, explicit: Optional[str] = None, explicit_until: Optional[int] = None,
                     default: Optional[str] = None) -> dict[str, Any]:
    """``node_placement`` ({delegate: nodes, ..., "builtin kernels": nodes}), ``cpu_ops`` (op counts on the
    builtin kernels), ``ops_by_placement`` and ``delegate_partitions`` ({delegate: partitions}).

    ``explicit`` names the delegate passed to the interpreter (the profile's accelerator); its DELEGATE
    nodes are those listed before ``explicit_until`` (:func:`node_count` taken right after the interpreter
    was built). ``default`` names LiteRT's lazily applied default delegate (XNNPACK), whose DELEGATE nodes
    come after. Returns ``node_placement: None`` when this LiteRT build does not expose its nodes.
    """
    nodes = _nodes(interp)
    if nodes is None:
        return {"node_placement": None, "cpu_ops": {}, "delegate_partitions": None, "placement_source": None}
    model_nodes = [i for i, (name, _i, _o) in enumerate(nodes) if name != DELEGATE_OP]
    delegate_at = [i for i, (name, _i, _o) in enumerate(nodes) if name == DELEGATE_OP]
    parts = delegate_partitions(nodes)
    ops: dict[str, Counter] = {explicit: Counter()} if explicit is not None else {}
    n_parts: dict[str, int] = {}
    taken: set[int] = set()
    for where, part in zip(delegate_at, parts):
        early = explicit is not None and (explicit_until is None or where < explicit_until)
        label = explicit if early else (default or "delegate")
        ops.setdefault(label, Counter()).update(nodes[i][0] for i in part)
        n_parts[label] = n_parts.get(label, 0) + 1
        taken |= part
    ops[BUILTIN] = Counter(nodes[i][0] for i in model_nodes if i not in taken)
    return {"node_placement": {k: sum(c.values()) for k, c in ops.items()}, "cpu_ops": dict(ops[BUILTIN]),
            "ops_by_placement": {k: dict(c) for k, c in ops.items()}, "delegate_partitions": n_parts,
            "placement_source": SOURCE}
