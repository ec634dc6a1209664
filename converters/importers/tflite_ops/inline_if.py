"""Inline a float .tflite model's IF operators into its main subgraph, for the importer.

The converter's IR has no control flow. An IF whose branches are plain subgraphs (no control flow of their
own) becomes both branches' operators, run unconditionally on the IF's inputs, and one SELECT_V2 per output
choosing the then-branch's value where the condition holds: ``if cond then f(x) else g(x)`` equals
``select(cond, f(x), g(x))`` whenever both branches are free of side effects, which subgraphs without
control flow or variables are. This is the TFLite form of the ONNX importer's run-time ``If`` rule
(openWakeWord's hey_jarvis verifier, exported through onnx-tf, holds one such IF).

The result is a new :class:`~edge_runtime.formats.tflite.SubGraph`: the main subgraph's tensors followed by
each inlined branch's own tensors (branch inputs are replaced by the IF's inputs, so they add nothing), its
operators in order with the IFs expanded; inlined operators get indices after the file's last one.
"""
from __future__ import annotations

import dataclasses

from edge_runtime.arena.subgraphs import if_options
from edge_runtime.errors import UnsupportedModelError
from edge_runtime.formats.tflite import OpCode, Operator, SubGraph, TFLiteModel, TensorInfo

SELECT_V2 = 123  # BuiltinOperator.SELECT_V2
#: operators that make a branch impossible to run unconditionally (control flow, state)
_NOT_INLINABLE = ("IF", "WHILE", "CALL_ONCE", "CALL", "VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE")


def _reachable(model: TFLiteModel) -> set[int]:
    """The subgraphs the main subgraph's IF operators name (directly)."""
    return {b for op in model.main.operators if op.name == "IF" for b in if_options(op)}


def inline_ifs(model: TFLiteModel, path: str) -> SubGraph:
    """The main subgraph with every IF replaced by both branches and a SELECT_V2 per output.

    Refuses, in one line naming the operator, an IF whose condition has more than one element, whose outputs
    are constants or its own inputs, whose branches do not match its inputs and outputs, write into their
    inputs or hold control flow or variables, and a model with subgraphs that no IF of the main subgraph
    uses (WHILE loops, CALL_ONCE initialisers)."""
    main = model.main
    n_sg = len(model.subgraphs)
    used = _reachable(model)
    for op in main.operators:
        if op.name in _NOT_INLINABLE and op.name != "IF":
            raise UnsupportedModelError(f"{path}: operator {op.index} ({op.name}): control flow and variables "
                                        f"are not supported (models with {n_sg} subgraphs)")
    unused = sorted(set(range(1, n_sg)) - used)
    if unused:
        raise UnsupportedModelError(f"{path}: models with {n_sg} subgraphs are not supported "
                                    f"(subgraph {unused[0]} is not an IF branch of the main subgraph)")
    tensors: list[TensorInfo] = list(main.tensors)
    ops: list[Operator] = []
    next_index = len(main.operators)
    select = OpCode(SELECT_V2, "", 1)
    for op in main.operators:
        if op.name != "IF":
            ops.append(op)
            continue

        def refuse(msg: str, op: Operator = op) -> UnsupportedModelError:
            return UnsupportedModelError(f"{path}: operator {op.index} (IF): {msg}")

        cond = main.tensors[op.inputs[0]]
        if cond.type_name != "BOOL" or cond.num_elements != 1:
            raise refuse(f"the condition is {cond.type_name} with {cond.num_elements} elements; "
                         "one BOOL is required")
        args = op.inputs[1:]
        if any(main.tensors[o].is_constant or o in op.inputs for o in op.outputs):
            raise refuse("an output is a constant or one of the IF's own inputs")
        outs_per_branch = []
        for b in if_options(op):
            if not 0 < b < n_sg:
                raise refuse(f"branch subgraph {b} does not exist")
            sg = model.subgraphs[b]
            if len(sg.inputs) != len(args) or len(sg.outputs) != len(op.outputs):
                raise refuse(f"branch subgraph {b} takes {len(sg.inputs)} inputs and gives {len(sg.outputs)} "
                             f"outputs; the IF has {len(args)} and {len(op.outputs)}")
            if any(o in sg.inputs for b_op in sg.operators for o in b_op.outputs):
                raise refuse(f"branch subgraph {b} writes into its own input")
            bad = next((o for o in sg.operators if o.name in _NOT_INLINABLE), None)
            if bad is not None:
                raise refuse(f"branch subgraph {b} holds {bad.name} (operator {bad.index}); nested control flow "
                             "and variables are not supported")
            remap: dict[int, int] = dict(zip(sg.inputs, args))
            for t in sg.tensors:
                if t.index not in remap:
                    remap[t.index] = len(tensors)
                    tensors.append(dataclasses.replace(t, index=len(tensors)))
            for o in sg.operators:
                ops.append(dataclasses.replace(
                    o, index=next_index, inputs=tuple(remap[i] if i >= 0 else i for i in o.inputs),
                    outputs=tuple(remap[i] for i in o.outputs),
                    intermediates=tuple(remap[i] for i in o.intermediates if i >= 0)))
                next_index += 1
            outs_per_branch.append([remap[i] for i in sg.outputs])
        for k, out in enumerate(op.outputs):
            then_out, else_out = outs_per_branch[0][k], outs_per_branch[1][k]
            ops.append(Operator(next_index, select, (op.inputs[0], then_out, else_out), (out,), (), 0, None))
            next_index += 1
    return SubGraph(main.index, main.name, tensors, main.inputs, main.outputs, ops)
