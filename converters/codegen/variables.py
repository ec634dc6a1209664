"""Resource variables in the generated C (streaming models such as microWakeWord): VAR_HANDLE,
READ_VARIABLE, ASSIGN_VARIABLE and CALL_ONCE, as TFLite Micro runs them.

Each resource variable is a static buffer outside the arena (``er_var<id>``, it keeps its value
across ``model_invoke`` calls), sized by the first ASSIGN_VARIABLE and first filled with the low
byte of that tensor's zero point (:func:`edge_runtime.arena.persistent.persistent_layout`, TFLM's
allocation). CALL_ONCE runs its init subgraph on the first invoke only; the C generator takes init
subgraphs made of VAR_HANDLE and ASSIGN_VARIABLE of constant int8 values (what converters emit
for the initial state). READ_VARIABLE and ASSIGN_VARIABLE are one memcpy each; VAR_HANDLE is
nothing.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from converters.codegen.cop import COp, c_array
from edge_runtime.arena.persistent import PersistentLayout, ResourceVariable, persistent_layout
from edge_runtime.arena.subgraphs import call_once_options
from edge_runtime.errors import UnsupportedModelError
from edge_runtime.formats.tflite import Operator, SubGraph, TFLiteModel

VARIABLE_OPS = ("VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE", "CALL_ONCE")
#: op -> positions of its int8 activation inputs (the call receives them)
VARIABLE_DATA_INPUTS = {"VAR_HANDLE": [], "READ_VARIABLE": [], "ASSIGN_VARIABLE": [1], "CALL_ONCE": []}


def _fail(op: Operator, why: str) -> UnsupportedModelError:
    return UnsupportedModelError(f"op {op.name} (op {op.index}): {why}")


def variable_name(r: ResourceVariable) -> str:
    """The C name of a resource variable's buffer."""
    return f"er_var{r.id}"


def _resource(model: TFLiteModel, sg: SubGraph, op: Operator, layout: PersistentLayout) -> ResourceVariable:
    r = layout.resource_of(model, sg, op.inputs[0])
    if r.size is None or r.tensor is None:
        raise _fail(op, "its resource variable is never assigned, so it has no size")
    if r.tensor.type_name != "INT8":
        raise _fail(op, f"resource variable '{r.shared_name}' is {r.tensor.type_name}; the C generator keeps "
                        "int8 state only")
    return r


def check_init_subgraph(model: TFLiteModel, index: int) -> None:
    """Refuse an init subgraph the C cannot run once at the first invoke (see the module docstring)."""
    if not 0 < index < len(model.subgraphs):
        raise UnsupportedModelError(f"CALL_ONCE names subgraph {index}, which the model does not have")
    sg = model.subgraphs[index]
    for op in sg.operators:
        if op.name == "VAR_HANDLE":
            continue
        if op.name != "ASSIGN_VARIABLE" or sg.tensors[op.inputs[1]].data is None:
            raise UnsupportedModelError(f"subgraph {index} (CALL_ONCE init) op {op.index} ({op.name}): the C "
                                        "generator runs init subgraphs of VAR_HANDLE and ASSIGN_VARIABLE of "
                                        "constants only")


def _declare(c: COp, r: ResourceVariable) -> str:
    name = variable_name(r)
    c.state[name] = f"static int8_t {name}[{r.size}]; /* resource variable '{r.shared_name}' */\n"
    return name


def variable_op(model: TFLiteModel, op: Operator, ring: int, direction: int) -> COp:
    """VAR_HANDLE / READ_VARIABLE / ASSIGN_VARIABLE / CALL_ONCE of the main subgraph."""
    sg = model.main
    layout = persistent_layout(model)
    c = COp(op.index, op.name)
    if op.name == "VAR_HANDLE":
        c.call_all = lambda p, i, o: "/* resource handle: nothing to do */"
    elif op.name == "READ_VARIABLE":
        r = _resource(model, sg, op, layout)
        y = sg.tensors[op.outputs[0]]
        if y.nbytes != r.size:
            raise _fail(op, f"reads {y.nbytes} bytes of a {r.size}-byte variable")
        name = _declare(c, r)
        c.call_all = lambda p, i, o: f"memcpy({o[0]}, {name}, {r.size});"
    elif op.name == "ASSIGN_VARIABLE":
        r = _resource(model, sg, op, layout)
        x = sg.tensors[op.inputs[1]]
        if x.nbytes != r.size:
            raise _fail(op, f"assigns {x.nbytes} bytes to a {r.size}-byte variable")
        name = _declare(c, r)
        c.call_all = lambda p, i, o: f"memcpy({name}, {i[0]}, {r.size});"
    else:
        c.call_all = _call_once(model, op, layout, c)
    return c


def _call_once(model: TFLiteModel, op: Operator, layout: PersistentLayout,
               c: COp) -> Callable[[str, list[str], list[str]], str]:
    """The code of CALL_ONCE: on the first invoke, TFLM's allocation fill of every variable, then the
    init subgraph's assignments."""
    index = call_once_options(op)
    check_init_subgraph(model, index)
    init = model.subgraphs[index]
    lines = [f"static int8_t op{op.index}_done = 0; if (!op{op.index}_done) {{"]
    for r in layout.resources:
        if r.size:
            lines.append(f"memset({_declare(c, r)}, {r.fill}, {r.size});")
    for k, a in enumerate(init.operators):
        if a.name != "ASSIGN_VARIABLE":
            continue
        r = _resource(model, init, a, layout)
        value = init.tensors[a.inputs[1]]
        data = np.asarray(value.array()).reshape(-1).view(np.int8)
        if data.size != r.size:
            raise _fail(op, f"its init subgraph assigns {data.size} bytes to a {r.size}-byte variable")
        name = variable_name(r)
        if np.all(data == data[0]):
            lines.append(f"memset({name}, {int(data[0])}, {r.size});")
        else:
            arr = f"op{op.index}_init{k}"
            c.consts[arr] = ("weights", c_array(arr, "int8_t", data, c))
            lines.append(f"memcpy({name}, {arr}, {r.size});")
    lines.append(f"op{op.index}_done = 1; }}")
    text = " ".join(lines)
    return lambda p, i, o: text


__all__ = ["VARIABLE_DATA_INPUTS", "VARIABLE_OPS", "check_init_subgraph", "variable_name", "variable_op"]
