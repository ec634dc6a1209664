"""Mixed-range concatenations: a CONCATENATION whose inputs' calibrated ranges differ so much that int8 loses one.

TFLite's int8 CONCATENATION does not requantize: its inputs and output share one scale
(:data:`converters.quantize.SHARED_ALL_INPUTS`), the one of the widest input. A YOLO head (Ultralytics v5/v8/v11)
ends in ``Concat(boxes * stride [0..640], sigmoid(scores) [0..1])``: with a scale of 640/255 the scores get one
or two of the 256 codes and the detector is useless, while the output's SQNR, dominated by the boxes, looks fine.

:func:`mixed_range_concats` finds each CONCATENATION whose narrowest input spans fewer than :data:`MIN_LEVELS`
of the 256 int8 levels of the joined range (calibrated ranges, as :mod:`converters.calibrate` gives them), with
the ops that must leave int8 for that input to keep its resolution: the concat, the ops on each narrow input's
path back to the op that computes it (data movers sharing the concat's parameters, and the computing op itself:
often the ``ADD(x, 0)`` requantization of :mod:`converters.importers.fixed_joins`), and, from the concat on, the
ops that only move data (:data:`MOVERS`) while every activation they read is already out of int8. Only concats
whose output reaches a graph output through such ops count: a concat read by an int8 computing op (a UNet's
channel concat before its conv) would be requantized to the one shared int8 scale there, so raising it gains
nothing. The graph outputs reached are written in their raised precision (:attr:`QuantPlan.wide_outputs`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from converters.ir import Graph, Op
from converters.quantize import FIXED, SHARED

#: A narrow input with fewer int8 levels than this fires the rule. Measured on a YOLO-like head (the one of
#: ``tests/test_default_precision_concat.py`` at 32x32 with 8 classes; score range [0, 1], the boxes' scale varied),
#: the score slice against onnxruntime float, int8 -> int16 concat (top-1 class per anchor, int8): 0.6 levels
#: 0.2 -> 37.4 dB (0.38); 5.1 levels 20.1 -> 44.5 dB (0.50); 10.1 levels 26.1 -> 44.6 dB (0.70); 20.3 levels
#: 31.9 -> 44.8 dB (0.83); 40.5 levels 37.2 -> 44.8 dB (0.91); 81 levels 41.3 -> 44.8 dB; 162 levels 44.2 -> 44.8
#: dB (the int8 layers before the concat leave 44.8 dB). Below 16 levels int8 keeps under ~30 dB and top-1 under ~0.8
#: there; the narrowest input of any concat in ``benchmarks.import_zoo`` (17 models, opsets 11/13/17: UNet,
#: SqueezeNet, ShuffleNet, GhostNet, RegNet, SSD, mobilevit, the LSTM/GRU gates) gets 101 levels (UNet), 6x above.
MIN_LEVELS = 16.0
#: Ops that only move data and have an int16 kernel: carried on from a raised concat up to the graph outputs.
MOVERS = ("RESHAPE", "TRANSPOSE", "STRIDED_SLICE", "PAD", "CONCATENATION")
#: Int8 levels of the joined range.
LEVELS = 255.0


@dataclass
class MixedConcat:
    """One mixed-range CONCATENATION: the op, its narrowest input's int8 levels and the levels the same input
    would get in int16 (15 bits over the joined range's largest magnitude, widened by ``margin``), the ops to
    raise to int16 with it, and the ops of a float island (those, and the fixed-output ops such as LOGISTIC whose
    value the narrow inputs requantize: their int8 output keeps only 1/256 steps)."""

    concat: Op
    levels: float
    levels16: float
    ops: list[Op]
    float_ops: list[Op]


def _range(graph: Graph, name: str, ranges: dict) -> Optional[tuple[float, float]]:
    """The calibrated range of activation ``name`` (a constant's min/max); None when unknown."""
    t = graph.tensors.get(name)
    if t is not None and t.is_constant:
        if t.data is None or t.data.size == 0 or t.data.dtype.kind != "f":
            return None
        return float(t.data.min()), float(t.data.max())
    r = ranges.get(name)
    return (float(r[0]), float(r[1])) if r is not None else None


def input_levels(graph: Graph, op: Op, ranges: dict) -> list[float]:
    """For each input of ``op``, how many of the 255 int8 steps of the joined range (every input's and the
    output's, with 0) its own range spans; ``inf`` for an input of unknown or zero width (nothing to lose)."""
    rs = [_range(graph, n, ranges) for n in [*op.inputs, *op.outputs]]
    known = [r for r in rs if r is not None]
    if not known:
        return [float("inf")] * len(op.inputs)
    lo = min(0.0, *(r[0] for r in known))
    hi = max(0.0, *(r[1] for r in known))
    width = hi - lo
    out = []
    for r in rs[:len(op.inputs)]:
        w = (r[1] - r[0]) if r is not None else 0.0
        out.append(LEVELS * w / width if width > 0 and w > width * 1e-6 else float("inf"))
    return out


def int16_levels(graph: Graph, op: Op, ranges: dict, margin: float = 1.0) -> float:
    """How many int16 steps (symmetric, 32767 over the largest magnitude of the joined range times ``margin``)
    the narrowest input of ``op`` spans."""
    rs = [r for r in (_range(graph, n, ranges) for n in [*op.inputs, *op.outputs]) if r is not None]
    top = max([abs(v) for r in rs for v in r], default=0.0) * margin
    widths = [r[1] - r[0] for r in (_range(graph, n, ranges) for n in op.inputs) if r is not None and r[1] > r[0]]
    return 32767.0 * min(widths) / top if widths and top > 0 else float("inf")


def _fixed_sources(graph: Graph, ops: list[Op]) -> list[Op]:
    """The fixed-output ops (LOGISTIC, SOFTMAX, ...) whose value the computing ops of ``ops`` read (the
    ``ADD(x, 0)`` requantizations of :mod:`converters.importers.fixed_joins`)."""
    producers = graph.producers()
    return [p for op in ops for i in op.inputs if (p := producers.get(i)) is not None and p.kind in FIXED]


def _path_back(graph: Graph, name: str) -> Optional[list[Op]]:
    """The ops from the computing op of ``name`` through the single-input data movers sharing its int8
    parameters; None when the path starts at a graph input or a fixed-parameter op (nothing to raise)."""
    producers = graph.producers()
    ops: list[Op] = []
    while True:
        t = graph.tensors.get(name)
        if t is not None and t.is_constant:
            return ops
        p = producers.get(name)
        if p is None or p.kind in FIXED:
            return None
        ops.append(p)
        if p.kind in SHARED and p.kind in MOVERS and p.kind != "CONCATENATION":
            name = p.inputs[0]
            continue
        if p.kind in SHARED:  # MAXIMUM, GATHER, ...: ties more tensors to the concat's parameters
            return None
        return ops


def mixed_range_concats(graph: Graph, ranges: dict, min_levels: Optional[float] = None,
                        margin: float = 1.0) -> list[MixedConcat]:
    """Every CONCATENATION whose narrowest input spans fewer than ``min_levels`` (default :data:`MIN_LEVELS`) int8
    levels of the joined range, with the ops to raise (see the module docstring), in graph order; the data movers
    after the concats are added once all concats are known (a concat of raised concats, as YOLOv5 joins its
    three scales). ``margin``: how much wider than ``ranges`` the int16 ranges will be (for ``levels16``)."""
    limit = MIN_LEVELS if min_levels is None else min_levels
    outputs = set(graph.outputs)
    found: list[MixedConcat] = []
    for op in graph.ops:
        if op.kind != "CONCATENATION":
            continue
        levels = input_levels(graph, op, ranges)
        narrow = [n for n, lv in zip(op.inputs, levels) if lv < limit]
        if not narrow:
            continue
        if not set(_reach(graph, op, MOVERS)) & outputs:
            continue  # read in int8 by a computing op: the int8 requantization would lose the narrow input again
        back = [_path_back(graph, n) for n in narrow]
        if any(b is None for b in back):
            continue
        ops = [op] + [p for b in back for p in b]  # type: ignore[union-attr]
        found.append(MixedConcat(op, min(levels), int16_levels(graph, op, ranges, margin), ops,
                                 ops + _fixed_sources(graph, ops)))
    if not found:
        return found
    order = {id(o): k for k, o in enumerate(graph.ops)}
    raised = {id(o) for m in found for o in m.ops}
    frontier = {o for m in found for o in m.concat.outputs}
    reach = [_reach(graph, m.concat) for m in found]
    for op in graph.ops:  # graph order is topological
        if id(op) in raised or op.kind not in MOVERS:
            continue
        acts = [i for i in op.inputs if not (graph.tensors.get(i) is not None and graph.tensors[i].is_constant)]
        if not acts or not all(i in frontier for i in acts):
            continue
        m = found[next(k for k, r in enumerate(reach) if any(i in r for i in acts))]
        m.ops.append(op)
        m.float_ops.append(op)
        raised.add(id(op))
        frontier.update(op.outputs)
    for m in found:
        m.ops = sorted({id(o): o for o in m.ops}.values(), key=lambda o: order[id(o)])
        m.float_ops = sorted({id(o): o for o in m.float_ops}.values(), key=lambda o: order[id(o)])
    return found


def _reach(graph: Graph, start: Op, kinds: Optional[tuple[str, ...]] = None) -> set[str]:
    """The tensors reachable from ``start``'s outputs (through ops of ``kinds`` only, when given)."""
    seen = set(start.outputs)
    for op in graph.ops:  # graph order is topological
        if any(i in seen for i in op.inputs) and (kinds is None or op.kind in kinds):
            seen.update(op.outputs)
    return seen
