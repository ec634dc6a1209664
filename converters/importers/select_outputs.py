"""Choose the outputs of the model to convert (``edge-convert convert --outputs NAME[,NAME...]``).

The named tensors become the model's outputs, in the order given: outputs of the source model (to drop
the others, e.g. one that only echoes an input) or inner tensors (to cut the graph there). Whatever no
chosen output depends on is removed before the model is imported, so an op only the dropped outputs use
is never imported. ONNX models are cut after preparation (opset upgrade, frozen inputs, folding), so a
name is one of the prepared graph; float TFLite models are cut on their entry subgraph. An unknown name
is one :class:`~edge_runtime.errors.ConfigError` line listing the model's outputs.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Iterable, Optional, Sequence

from edge_runtime.errors import ConfigError


def parse_outputs(values: Optional[Iterable[str]]) -> Optional[list[str]]:
    """``--outputs`` values (each a comma-separated list, the option may repeat) as one list, or None."""
    if not values:
        return None
    names = [n.strip() for v in values for n in v.split(",") if n.strip()]
    if not names:
        raise ConfigError("--outputs needs at least one tensor name")
    return names


def _check_names(source: str, names: Sequence[str], outputs: Sequence[str], inner: set[str],
                 inputs: Sequence[str]) -> None:
    """One ConfigError line for a repeated, unknown, or input name."""
    if not names:
        raise ConfigError(f"{source}: --outputs names no tensor")
    repeated = sorted({n for n in names if list(names).count(n) > 1})
    if repeated:
        raise ConfigError(f"{source}: --outputs names {', '.join(repeated)} more than once")
    given_inputs = [n for n in names if n in inputs and n not in outputs]
    if given_inputs:
        raise ConfigError(f"{source}: --outputs {', '.join(given_inputs)}: a model input cannot be an output; "
                          f"the model's outputs are: {', '.join(outputs)}")
    unknown = [n for n in names if n not in outputs and n not in inner]
    if unknown:
        raise ConfigError(f"{source}: --outputs: no tensor named {', '.join(repr(n) for n in unknown)}; the model's "
                          f"outputs are: {', '.join(outputs)} (or name a tensor an op computes, to cut the graph there)")


def _onnx_reads(node: Any) -> set[str]:
    """Every tensor ``node`` reads, including outer-scope names its subgraphs (If, Loop, Scan) read."""
    from onnx import AttributeProto

    names = {i for i in node.input if i}
    for a in node.attribute:
        graphs = [a.g] if a.type == AttributeProto.GRAPH else list(a.graphs) if a.type == AttributeProto.GRAPHS else []
        for g in graphs:
            for n in g.node:
                names |= _onnx_reads(n)
    return names


def cut_onnx(model: Any, names: Sequence[str], source: str) -> None:
    """Make ``names`` the outputs of the (prepared) ONNX ``ModelProto``, in place, and drop the nodes and
    initializers none of them needs."""
    from onnx import helper

    g = model.graph
    outputs = [o.name for o in g.output]
    produced = {o for n in g.node for o in n.output if o}
    _check_names(source, names, outputs, produced, [vi.name for vi in g.input])
    infos = {vi.name: vi for vi in list(g.value_info) + list(g.output)}
    chosen = [infos[n] if n in infos else helper.make_empty_tensor_value_info(n) for n in names]
    copies = [type(vi)() for vi in chosen]
    for c, vi in zip(copies, chosen):
        c.CopyFrom(vi)
    needed = set(names)
    keep = []
    for node in reversed(g.node):
        if any(o in needed for o in node.output if o):
            keep.append(node)
            needed |= _onnx_reads(node)
    keep.reverse()
    kept_nodes = [type(n)() for n in keep]
    for c, n in zip(kept_nodes, keep):
        c.CopyFrom(n)
    del g.node[:]
    g.node.extend(kept_nodes)
    inits = [i for i in g.initializer if i.name in needed]
    kept_inits = [type(i)() for i in inits]
    for c, i in zip(kept_inits, inits):
        c.CopyFrom(i)
    del g.initializer[:]
    g.initializer.extend(kept_inits)
    known = {vi.name for vi in g.value_info}
    dropped = [vi for vi in g.output if vi.name not in names and vi.name not in known and vi.name in needed]
    g.value_info.extend(dropped)  # an output left out but still computed (for a chosen one) keeps its shape
    del g.output[:]
    g.output.extend(copies)


def cut_tflite(sg: Any, names: Sequence[str], source: str) -> Any:
    """The TFLite subgraph ``sg`` with the tensors called ``names`` as its outputs (in that order) and only
    the operators they need (operators keep their indices, for messages)."""
    by_name: dict[str, list[int]] = {}
    for t in sg.tensors:
        by_name.setdefault(t.name, []).append(t.index)
    outputs = [sg.tensors[i].name for i in sg.outputs]
    written = {o for op in sg.operators for o in op.outputs if o >= 0}
    inner = {sg.tensors[i].name for i in written}
    _check_names(source, names, outputs, inner, [sg.tensors[i].name for i in sg.inputs])
    picked = []
    for n in names:
        cands = [i for i in by_name[n] if i in written or i in sg.outputs]
        if len(cands) != 1:
            raise ConfigError(f"{source}: --outputs {n!r}: {len(cands)} tensors have this name; name one that is unique")
        picked.append(cands[0])
    needed = set(picked)
    keep = []
    for op in reversed(sg.operators):
        if any(o in needed for o in op.outputs if o >= 0):
            keep.append(op)
            needed |= {i for i in op.inputs if i >= 0}
    keep.reverse()
    return replace(sg, outputs=tuple(picked), operators=keep)
