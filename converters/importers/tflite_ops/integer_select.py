"""Integer tensors of a float .tflite (token ids: an int32/int64 input, an ARG_MAX result) selected at constant
positions before a table lookup, as the ONNX importer takes them.

RESHAPE/SQUEEZE/EXPAND_DIMS, integer CASTs, STRIDED_SLICE/SLICE/SPLIT/SPLIT_V/UNPACK/REVERSE_V2, CONCATENATION
and PACK with integer constants (a BOS token) and GATHER at constant positions keep the values int32
(:func:`converters.ir.selects_integers`); GATHER(table), GATHER_ND(table) and EMBEDDING_LOOKUP then read them as
indices. A GATHER of integers is written as one STRIDED_SLICE per run of consecutive positions joined by a
CONCATENATION (TFLite Micro's GATHER takes no int32 data; its STRIDED_SLICE and CONCATENATION do). An operator
computing integers from them (ADD, MUL, ...) would be integer arithmetic, which int8 cannot hold: refused in one
line naming the operator and the input the values come from. (Comparisons and casts to float are refused by
:func:`converters.importers.integer_inputs.check_integer_uses`, as before.)
"""
from __future__ import annotations

from typing import Any

import numpy as np

from converters.importers.tflite_ops.constants import FOLDED
from converters.importers.tflite_ops.context import TFLiteContext
from converters.importers.tflite_ops.topk import INDEX_OUTPUTS
from converters.ir import RAW_OUTPUT_KINDS
from edge_runtime.errors import UnsupportedModelError

#: TFLite ops that only select integer values: op name -> positions of the selected (data) inputs
#: (CONCATENATION: every input)
SELECTIONS: dict[str, tuple[int, ...]] = {
    "RESHAPE": (0,), "SQUEEZE": (0,), "EXPAND_DIMS": (0,), "CAST": (0,), "STRIDED_SLICE": (0,), "SLICE": (0,),
    "SPLIT": (1,), "SPLIT_V": (0,), "UNPACK": (0,), "REVERSE_V2": (0,), "GATHER": (0,), "CONCATENATION": (),
    "PACK": (),
}
#: TFLite ops that read integer values as indices into a constant table: op name -> input position of the indices
LOOKUPS: dict[str, int] = {"GATHER": 1, "GATHER_ND": 1, "EMBEDDING_LOOKUP": 0}
#: integer outputs of these ops are int32 indices (ARG_MAX's, of a float input)
INDEX_RESULTS = ("ARG_MAX", "ARG_MIN")
_INTEGER_TYPES = ("INT32", "INT64", "INT16", "INT8", "UINT8")


def _int_inputs(ctx: TFLiteContext, op: Any) -> list[int]:
    """Positions of ``op``'s inputs that are integer activations (:attr:`TFLiteContext.int_names`)."""
    return [k for k, i in enumerate(op.inputs) if i >= 0 and ctx.name(i) in ctx.int_names]


def selects_integers(ctx: TFLiteContext, op: Any) -> bool:
    """Whether ``op`` selects integer activations into its outputs at constant positions (then registered as
    integer tensors); raises the one-line refusal when ``op`` reads integer activations any other way."""
    if op.name in INDEX_RESULTS:
        ctx.int_names.update(ctx.name(o) for o in op.outputs)
        return False
    reads = _int_inputs(ctx, op)
    if not reads:
        return False
    int_out = any(ctx.sg.tensors[o].type_name in _INTEGER_TYPES for o in op.outputs)
    if op.name == "GATHER" and 0 in reads and 1 in reads:
        raise _refuse(ctx, op, 0, "a GATHER at run-time positions")
    data = SELECTIONS.get(op.name)
    if data is not None and (not data or set(reads) <= set(data)) and int_out:
        ctx.int_names.update(ctx.name(o) for o in op.outputs)
        note_roots(ctx, op)
        return True
    if op.name in LOOKUPS and reads == [LOOKUPS[op.name]]:
        return False  # the table lookup itself: its handler checks the table
    if int_out and op.name not in RAW_OUTPUT_KINDS + FOLDED + INDEX_OUTPUTS:
        raise _refuse(ctx, op, reads[0], "integer arithmetic")
    return False  # other readers (ONE_HOT, SHAPE, comparisons): their handlers and check_integer_uses decide


def _refuse(ctx: TFLiteContext, op: Any, k: int, what: str) -> UnsupportedModelError:
    """The one-line refusal of ``op`` reading integer values (input ``k``) other than by selection or lookup."""
    name = ctx.name(op.inputs[k])
    root = ctx.int_roots.get(name, name)
    via = "" if root == name else f" (through '{name}', selected from it)"
    return ctx.err(op, f"reads the integer values of '{root}'{via}; {what} on token ids/indices is not supported: "
                       "they can only be reshaped, sliced, gathered at constant positions, concatenated with "
                       "integer constants and used as the indices of a constant table (GATHER, GATHER_ND, "
                       "EMBEDDING_LOOKUP)")


def note_roots(ctx: TFLiteContext, op: Any) -> None:
    """Record, for each output of a selection ``op``, the integer tensor its values come from (for messages)."""
    for k in _int_inputs(ctx, op):
        src = ctx.name(op.inputs[k])
        for o in op.outputs:
            ctx.int_roots.setdefault(ctx.name(o), ctx.int_roots.get(src, src))
        return


def integer_parts(ctx: TFLiteContext, op: Any) -> list[str]:
    """The inputs of a CONCATENATION of integer activations, its integer constants as int32 copies; a float
    operand or a constant outside int32 is refused in one line."""
    parts = []
    for k, i in enumerate(op.inputs):
        name = ctx.name(i)
        t = ctx.tensors[name]
        if t.data is None:
            if name not in ctx.int_names:
                raise ctx.err(op, f"joins integer indices with the float tensor '{name}'; integer tensors (token ids) "
                                  "can only be joined with integer ones")
            parts.append(name)
            continue
        v = np.asarray(t.data)
        if v.dtype.kind not in "iu":
            raise ctx.err(op, f"joins integer indices with the {v.dtype} constant '{name}'; integer tensors (token "
                              "ids) can only be joined with integer constants")
        info = np.iinfo(np.int32)
        if v.size and (int(v.min()) < info.min or int(v.max()) > info.max):
            raise ctx.err(op, f"constant '{name}' holds {int(v.max()) if v.max() > 0 else int(v.min())}, outside "
                              "int32; indices are int32 in the converted model")
        parts.append(ctx.add_const(f"{ctx.name(op.outputs[0])}/const{k}", v.astype(np.int32), np.int32))
    return parts


def pick_integers(ctx: TFLiteContext, op: Any, x: str, idx: np.ndarray, axis: int, out: str) -> None:
    """``out`` = the integer values of ``x`` at the constant (normalised) positions ``idx`` (any rank) along
    ``axis``: one STRIDED_SLICE per run of consecutive positions, a CONCATENATION of them, and a RESHAPE to the
    output shape when the indices are not 1-D."""
    shape = list(ctx.shape(x))
    runs: list[list[int]] = []
    for p in (int(v) for v in idx.reshape(-1)):
        if runs and p == runs[-1][-1] + 1:
            runs[-1].append(p)
        else:
            runs.append([p])
    flat_shape = list(shape)
    flat_shape[axis] = int(idx.size)
    target = out if tuple(flat_shape) == tuple(ctx.shape(out)) else ctx.tmp(f"{out}/picked", tuple(flat_shape))
    parts = []
    for k, run in enumerate(runs):
        begin, end = [0] * len(shape), list(shape)
        begin[axis], end[axis] = run[0], run[-1] + 1
        part_shape = list(shape)
        part_shape[axis] = len(run)
        dst = target if len(runs) == 1 else ctx.tmp(f"{out}/run{k}", tuple(part_shape))
        parts.append(ctx.emit(op, "STRIDED_SLICE", [x], dst, {"begin": tuple(begin), "end": tuple(end),
                                                              "strides": (1,) * len(shape), "end_mask": 0}))
    if len(parts) > 1:
        ctx.emit(op, "CONCATENATION", parts, target, {"axis": axis, "act": "NONE"})
    if target != out:
        ctx.emit(op, "RESHAPE", [target], out)


__all__ = ["INDEX_RESULTS", "LOOKUPS", "SELECTIONS", "integer_parts", "note_roots", "pick_integers",
           "selects_integers"]
