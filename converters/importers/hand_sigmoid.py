"""A sigmoid written out by hand, ``1 / (1 + exp(z))``, read as the LOGISTIC it is: ``LOGISTIC(-z)``.

Some exporters spell the logistic function with elementwise ops: BirdNET's metadata models (v2.2, v2.3 and the
first v2.4) end in ``clip(x, -15, 15) * -0.5 -> EXP -> ADD 1 -> DIV(1, .)``. Quantized as written, the EXP
output takes one int8 scale for its whole range (``exp(7.5)`` is 1808 there: a step of 7), so every value of
``1 + exp(z)`` below a few steps collapses, and the division turns that into large errors in the mid-range
probabilities (2.5 dB against the float model on BirdNET v2.4's first metadata model). As LOGISTIC the
result has int8's fixed ``[0, 1)`` output scale and the exact table of tflite-micro's kernel.

:func:`fuse_hand_sigmoids` rewrites, in an imported :class:`~converters.ir.Graph`, each
``DIV(1, ADD(EXP(z), 1))`` (either ADD operand order; scalar constants equal to 1; no fused activation on the
ADD; the EXP and ADD results read by nothing else) into ``LOGISTIC(-z)``: when ``z`` is a MUL by a
one-element constant that nothing else reads, that constant is negated (a copy, as constants may be shared);
otherwise a MUL by -1 is inserted. Everything else is left as it is.
"""
from __future__ import annotations

from collections import Counter
from typing import Optional

import numpy as np

from converters.ir import Graph, Op, Tensor


def _scalar(graph: Graph, name: str) -> Optional[float]:
    """The value of a one-element constant, else None."""
    t = graph.tensors.get(name)
    if t is None or t.data is None or np.asarray(t.data).size != 1:
        return None
    return float(np.asarray(t.data).reshape(-1)[0])


def _unfused(op: Op) -> bool:
    return op.attrs.get("act", "NONE") == "NONE"


def _new_name(graph: Graph, base: str) -> str:
    name, k = base, 1
    while name in graph.tensors:
        k += 1
        name = f"{base}#{k}"
    return name


def fuse_hand_sigmoids(graph: Graph) -> Graph:
    """``graph`` with each hand-written ``1 / (1 + exp(z))`` replaced by ``LOGISTIC(-z)`` (in place; returned)."""
    readers: Counter[str] = Counter(i for op in graph.ops for i in op.inputs)
    readers.update(graph.outputs)
    producer = {o: op for op in graph.ops for o in op.outputs}
    drop: set[int] = set()
    before: dict[int, Op] = {}  # id(EXP op) -> the MUL by -1 that takes its place
    for div in graph.ops:
        if div.kind != "DIV" or len(div.inputs) != 2 or not _unfused(div) or _scalar(graph, div.inputs[0]) != 1.0:
            continue
        add = producer.get(div.inputs[1])
        if (add is None or add.kind != "ADD" or len(add.inputs) != 2 or not _unfused(add)
                or readers[add.outputs[0]] != 1):
            continue
        ones = [k for k in (0, 1) if _scalar(graph, add.inputs[k]) == 1.0]
        if len(ones) != 1:
            continue
        exp = producer.get(add.inputs[1 - ones[0]])
        if exp is None or exp.kind != "EXP" or readers[exp.outputs[0]] != 1 or id(exp) in drop:
            continue
        z = exp.inputs[0]
        out = div.outputs[0]
        if graph.tensors[out].shape != graph.tensors[z].shape:
            continue  # (a constant that broadcasts the result to another shape: not this pattern)
        scale = producer.get(z)
        factor = None
        if scale is not None and scale.kind == "MUL" and _unfused(scale) and readers[z] == 1:
            factor = next((k for k in (0, 1) if _scalar(graph, scale.inputs[k]) is not None), None)
        if factor is not None:
            c = scale.inputs[factor]
            neg = _new_name(graph, f"{c}/negated")
            graph.tensors[neg] = Tensor(neg, graph.tensors[c].shape, -np.asarray(graph.tensors[c].data))
            scale.inputs[factor] = neg
            src = z
        else:
            minus = _new_name(graph, f"{z}/minus_one")
            graph.tensors[minus] = Tensor(minus, (1,), np.array([-1.0], np.float32))
            src = _new_name(graph, f"{z}/negated")
            graph.tensors[src] = Tensor(src, graph.tensors[z].shape, None)
            before[id(exp)] = Op("MUL", [z, minus], [src], {"act": "NONE"}, name=f"{exp.name}/negate")
        drop.update((id(exp), id(add)))
        div.kind, div.inputs, div.attrs = "LOGISTIC", [src], {}
    if drop:
        graph.ops = [before[id(op)] if id(op) in before else op for op in graph.ops
                     if id(op) not in drop or id(op) in before]
    return graph
