"""Find HardSwish written out as arithmetic and make it one ``HARD_SWISH`` op.

Exporters that predate ONNX's HardSwish (PaddlePaddle's paddle2onnx, older Keras and
torch graphs) write ``x * relu6(x + 3) / 6`` as four ops: Add, Clip(0, 6), Mul and Div (or
Mul by 1/6, in either place). In int8 each of the four rounds its output to its own scale,
and ``x + 3`` and ``relu6`` spend their range on values the product then throws away;
TFLite Micro has one int8 kernel for the whole function. After the import (Div by a constant
is already a Mul by its inverse, Clip(0, 6) a RELU6 fused into the Add where it could be),
this pass rewrites both orders:

- ``u = x * relu6(x + 3)``, ``y = u * (1/6)``;
- ``h = relu6(x + 3) * (1/6)``, ``y = x * h``;

when every intermediate tensor has one consumer and is not a graph output. When the 1/6
has been merged with a following constant scale ``k`` (a learnable scale after the
activation, as PP-LCNet has, folded by the importer into ``k / 6``), the result is
``HARD_SWISH`` followed by a multiply by ``k``. The float function is unchanged (the same
formula), so the calibration reference is too.

:func:`converters.pipeline.convert_model` runs it for microcontroller profiles only: LiteRT's
XNNPACK delegate runs the int8 ADD and MULs but not an int8 HARD_SWISH, which then splits the
delegated graph (PP-OCR's direction classifier on LiteRT, 1 thread: 0.76 ms written out, 2.43 ms
with HARD_SWISH). The accuracy is the same either way (29.3 vs 29.2 dB in
``tests/test_import_hard_swish_pattern.py``).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from converters.ir import Graph, Op, Tensor

#: how far a constant may be from 3 or 1/6 (relative) and still be taken for it
TOLERANCE = 1e-5


def _scalar_operand(graph: Graph, op: Op) -> Optional[tuple[str, float]]:
    """(activation input, constant) when ``op`` has one activation and one one-element constant input."""
    if len(op.inputs) != 2:
        return None
    a, b = (graph.tensors[i] for i in op.inputs)
    if a.is_constant == b.is_constant:
        return None
    act, c = (b, a) if a.is_constant else (a, b)
    if c.data.size != 1:
        return None
    return act.name, float(c.data.reshape(-1)[0])


def _near(value: float, target: float) -> bool:
    return abs(value - target) <= TOLERANCE * abs(target)


def _only_consumer(graph: Graph, consumers: dict[str, list[Op]], tensor: str) -> Optional[Op]:
    users = consumers.get(tensor, [])
    if len(users) != 1 or tensor in graph.outputs:
        return None
    return users[0]


def _match(graph: Graph, add: Op, consumers: dict[str, list[Op]]) -> Optional[tuple[str, str, list[Op], float]]:
    """(x, y, ops to remove, scale after the HardSwish) when ``add`` starts a written-out HardSwish."""
    if add.kind != "ADD":
        return None
    operand = _scalar_operand(graph, add)
    if operand is None or not _near(operand[1], 3.0):
        return None
    x = operand[0]
    chain = [add]
    gate = add.outputs[0]
    if add.act == "NONE":  # relu6 as its own op
        relu6 = _only_consumer(graph, consumers, gate)
        if relu6 is None or relu6.kind != "RELU6":
            return None
        chain.append(relu6)
        gate = relu6.outputs[0]
    elif add.act != "RELU6":
        return None
    first = _only_consumer(graph, consumers, gate)
    if first is None or first.kind != "MUL" or first.act != "NONE":
        return None
    mid = _only_consumer(graph, consumers, first.outputs[0])
    if mid is None or mid.kind != "MUL" or mid.act != "NONE":
        return None
    if sorted(first.inputs) == sorted([x, gate]):  # x * relu6(x + 3), then * 1/6
        scaled = _scalar_operand(graph, mid)
        if scaled is None or scaled[0] != first.outputs[0]:
            return None
    else:  # relu6(x + 3) * 1/6, then x *
        scaled = _scalar_operand(graph, first)
        if scaled is None or scaled[0] != gate or sorted(mid.inputs) != sorted([x, first.outputs[0]]):
            return None
    if scaled[1] == 0.0:
        return None
    y = mid.outputs[0]
    if graph.tensors[y].shape != graph.tensors[x].shape:
        return None
    return x, y, chain + [first, mid], 1.0 if _near(scaled[1], 1 / 6) else 6.0 * scaled[1]


def fuse_hard_swish(graph: Graph) -> Graph:
    """Rewrite every written-out ``x * relu6(x + 3) / 6`` in ``graph`` as one ``HARD_SWISH`` op."""
    while True:
        consumers = graph.consumers()
        for op in graph.ops:
            found = _match(graph, op, consumers)
            if found is None:
                continue
            x, y, chain, scale = found
            at = graph.ops.index(chain[0])
            for gone in chain:
                graph.ops.remove(gone)
                for t in gone.outputs:
                    if t != y:
                        graph.tensors.pop(t, None)
                for t in gone.inputs:  # the constants 3 and 1/6, when nothing else reads them
                    if graph.tensors.get(t) is not None and graph.tensors[t].is_constant and not any(
                            t in other.inputs for other in graph.ops):
                        graph.tensors.pop(t, None)
            name = chain[-1].name
            if scale == 1.0:
                graph.ops.insert(at, Op("HARD_SWISH", [x], [y], {}, name=name))
            else:
                h = f"{y}/hard_swish"
                graph.tensors[h] = Tensor(h, graph.tensors[x].shape)
                k = f"{y}/scale"
                graph.tensors[k] = Tensor(k, (1,), np.array([scale], np.float32))
                graph.ops[at:at] = [Op("HARD_SWISH", [x], [h], {}, name=f"{name}/hard_swish"),
                                    Op("MUL", [h, k], [y], {"act": "NONE"}, name=name)]
            break
        else:
            return graph
