"""Give a fixed-range activation its own requantization where an int8 join would clip another input to it.

int8 LOGISTIC, SOFTMAX, TANH and LOG_SOFTMAX have fixed output parameters (LOGISTIC: scale 1/256, zero point
-128, so [0, 1)). CONCATENATION, MAXIMUM, MINIMUM and SELECT_V2 do not requantize in TFLite Micro: their
inputs share the output's parameters, so the quantizer puts them in one group
(:data:`converters.quantize.SHARED_ALL_INPUTS`), and a group holding a fixed output takes the fixed
parameters. A join of ``sigmoid(a)`` with anything wider (box offsets next to scores, a verifier's
pass-through) then clips the other input to [0, 1) without a word: 0.4 dB against LiteRT on
``concat(sigmoid(x), 3 * x)``.

:func:`requantize_fixed_joins` reads each such input through ``ADD(x, 0)``: int8 ADD has free output
parameters, so the join's group takes its calibrated range and the fixed op keeps its own. The value is
unchanged in float; in int8 it is requantized once, as TensorFlow's converter would with a QUANTIZE. Both
importers run this pass on their IR graph (YOLO heads concatenating box coordinates in pixels with class
sigmoids; ``Where(x > 0, sigmoid(x), 3 * x)``); it covers SELECT_V2's two choices and joins with a constant.
"""
from __future__ import annotations

import numpy as np

from converters.ir import Graph, Op, Tensor

#: ops with fixed int8 output parameters (:data:`converters.quantize.FIXED`)
FIXED_KINDS = ("LOGISTIC", "SOFTMAX", "TANH", "LOG_SOFTMAX")
#: ops whose output takes its first input's parameters (a subset of :data:`converters.quantize.SHARED`
#: without the joins): a fixed range flows through them unchanged
_PASS_THROUGH = ("MAX_POOL_2D", "AVERAGE_POOL_2D", "RESHAPE", "TRANSPOSE", "PAD", "PADV2", "MIRROR_PAD",
                 "STRIDED_SLICE", "GATHER", "REDUCE_MAX", "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR",
                 "DEPTH_TO_SPACE", "SPACE_TO_DEPTH", "GATHER_ND", "RELU6")
#: joins whose listed inputs share the output's int8 parameters
_JOINS = {"CONCATENATION": 0, "MAXIMUM": 0, "MINIMUM": 0, "SELECT_V2": 1}


def _fixed_origin(graph: Graph) -> dict[str, str]:
    """Tensor name -> the fixed-range op kind whose output it is, directly or through pass-through ops."""
    origin: dict[str, str] = {}
    for op in graph.ops:
        if op.kind in FIXED_KINDS:
            origin[op.outputs[0]] = op.kind
        elif op.kind in _PASS_THROUGH and op.inputs and op.inputs[0] in origin:
            origin[op.outputs[0]] = origin[op.inputs[0]]
    return origin


def requantize_fixed_joins(graph: Graph) -> Graph:
    """Read each fixed-range input of a join that also reads another range (another tensor, a constant, or
    another fixed kind) through ``ADD(x, 0)``; rewrites ``graph`` in place and returns it."""
    origin = _fixed_origin(graph)
    ops: list[Op] = []
    for op in graph.ops:
        first = _JOINS.get(op.kind)
        if first is None or not any(i in origin for i in op.inputs[first:]):
            ops.append(op)
            continue
        kinds = {origin.get(i) for i in op.inputs[first:]}
        if len(kinds) == 1:  # every joined input has the same fixed range: sharing it loses nothing
            ops.append(op)
            continue
        inputs = list(op.inputs)
        for k in range(first, len(inputs)):
            name = inputs[k]
            if name not in origin:
                continue
            zero = f"{name}/requant_zero/{op.name or op.kind}/{k}"
            out = f"{name}/requant/{op.name or op.kind}/{k}"
            graph.tensors[zero] = Tensor(zero, (1,), np.zeros((1,), np.float32))
            graph.tensors[out] = Tensor(out, graph.tensors[name].shape)
            ops.append(Op("ADD", [name, zero], [out], {"act": "NONE"}, name=f"{op.name}/requant{k}"))
            inputs[k] = out
        ops.append(Op(op.kind, inputs, list(op.outputs), dict(op.attrs), name=op.name))
    graph.ops = ops
    return graph
