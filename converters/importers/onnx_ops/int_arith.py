"""Integer arithmetic on int32 run-time indices (TopK/ArgMax positions and what is selected from them): Add, Sub,
Mul, Div and Mod with integer constants or other int32 activations, written as int32 TFLite ops that are never
quantized (:func:`converters.ir.computes_integers`).

- Add, Sub, Mul -> ADD, SUB, MUL on int32 (C int32 arithmetic, as ONNX's int32; int64 indices stay in int32
  range: they are positions);
- Div -> FLOOR_DIV. ONNX integer Div truncates toward zero, FLOOR_DIV floors: they agree when the dividend is
  known non-negative (:func:`value_range`: a TopK/ArgMax position, or sums, products, quotients and remainders of
  such with non-negative constants) and the divisor is a positive constant; anything else is refused in one line;
- Mod (``fmod=0``: the remainder takes the divisor's sign) -> FLOOR_MOD, exactly; ``fmod=1`` (the dividend's
  sign) only where it equals that (a non-negative dividend, a positive constant divisor).

FLOOR_DIV and FLOOR_MOD on int32 run on LiteRT only (TFLite Micro's kernels are float32 only:
:data:`converters.ir.LITERT_ONLY_KINDS`).
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from converters.importers.onnx_ops.context import ImportContext, const_to_ir
from converters.ir import INDEX_KINDS, INDEX_SELECT_KINDS, INT_GATHER_KINDS

KINDS = {"Add": "ADD", "Sub": "SUB", "Mul": "MUL", "Div": "FLOOR_DIV", "Mod": "FLOOR_MOD"}
INT32 = (-(2 ** 31), 2 ** 31 - 1)


def integer_input(ctx: ImportContext, node: Any) -> Optional[str]:
    """The first input of ``node`` that is an int32 activation (:meth:`ImportContext.is_int`), or None."""
    return next((i for i in node.input if i and not ctx.is_const(i) and ctx.is_int(i)), None)


def reads_integers(ctx: ImportContext, node: Any) -> bool:
    """True when an input of ``node`` is an int32 activation (:meth:`ImportContext.is_int`)."""
    return integer_input(ctx, node) is not None


def value_range(ctx: ImportContext, name: str) -> Optional[tuple[int, int]]:
    """The inclusive range of the values of int32 IR tensor ``name`` when the graph bounds it (positions from
    ARG_MAX/ARG_MIN/TOPK_V2, then selections and integer arithmetic with constants); None when unknown (an integer
    model input)."""
    t = ctx.tensors.get(name)
    if t is not None and t.is_constant:
        return (int(np.min(t.data)), int(np.max(t.data))) if t.data.size and t.data.dtype.kind in "iu" else None
    op = ctx.producer(name)
    if op is None:
        return None
    if op.kind in INDEX_KINDS:
        shape = ctx.ir_shape(op.inputs[0])
        return 0, int(shape[int(op.attrs.get("axis", -1)) % len(shape)]) - 1
    if op.kind == "TOPK_V2":
        return (0, int(ctx.ir_shape(op.inputs[0])[-1]) - 1) if name == op.outputs[1] else None
    if op.kind in INT_GATHER_KINDS:  # values picked from int32 data: the data's range
        return None if ctx.tensors[op.inputs[0]].is_constant else value_range(ctx, op.inputs[0])
    parts = [value_range(ctx, i) for i in (op.inputs if op.kind not in ("RESHAPE", "STRIDED_SLICE") else op.inputs[:1])]
    if any(p is None for p in parts) or not parts:
        return None
    if op.kind in INDEX_SELECT_KINDS:
        return min(p[0] for p in parts), max(p[1] for p in parts)  # type: ignore[index]
    if len(parts) != 2:
        return None
    (a0, a1), (b0, b1) = parts  # type: ignore[misc]
    if op.kind == "ADD":
        lo, hi = a0 + b0, a1 + b1
    elif op.kind == "SUB":
        lo, hi = a0 - b1, a1 - b0
    elif op.kind == "MUL":
        corners = (a0 * b0, a0 * b1, a1 * b0, a1 * b1)
        lo, hi = min(corners), max(corners)
    elif op.kind == "FLOOR_DIV" and b0 > 0:
        lo, hi = min(a0 // b0, a0 // b1), max(a1 // b0, a1 // b1)
    elif op.kind == "FLOOR_MOD" and b0 > 0:
        lo, hi = (a0, a1) if a0 >= 0 and a1 < b0 else (0, b1 - 1)
    elif op.kind == "FLOOR_MOD" and b1 < 0:
        lo, hi = b0 + 1, 0
    else:
        return None
    return (lo, hi) if INT32[0] <= lo and hi <= INT32[1] else None


def _operand(ctx: ImportContext, node: Any, n: str, rank: int) -> str:
    """Input ``n`` as an int32 IR operand broadcast to ``rank``: an int32 activation, or an integer constant."""
    if ctx.is_const(n):
        v = np.asarray(ctx.const(node, n))
        if v.dtype.kind not in "iu":
            raise ctx.err(node, f"{node.op_type} of integer indices with the non-integer constant '{n}' ({v.dtype})")
        if v.size and (v.min() < INT32[0] or v.max() > INT32[1]):
            raise ctx.err(node, f"the integer constant '{n}' does not fit int32 (the converted indices are int32)")
        return ctx.add_const(f"{n}/int32", const_to_ir(v.astype(np.int32), rank), np.int32)
    if not ctx.is_int(n):
        raise ctx.err(node, f"{node.op_type} of integer indices with the non-integer activation '{n}'")
    return ctx.lift(node, ctx.act(node, n), ctx.src_shape(node, n), rank)


def _positive_constant(ctx: ImportContext, n: str) -> bool:
    """``n`` is an integer constant whose values are all positive."""
    if not ctx.is_const(n):
        return False
    v = np.asarray(ctx.consts[ctx.name(n)])
    return v.dtype.kind in "iu" and v.size > 0 and bool(np.all(v > 0))


def integer_binary(ctx: ImportContext, node: Any, a: dict) -> None:
    """Add/Sub/Mul/Div/Mod of int32 indices (an input is :meth:`ImportContext.is_int`) -> int32 ADD/SUB/MUL,
    FLOOR_DIV (Div: a non-negative dividend by a positive constant) or FLOOR_MOD (Mod); refuses in one line what
    cannot be exact."""
    t = node.op_type
    ins = [i for i in node.input if i]
    if t not in KINDS or len(ins) != 2:
        raise ctx.err(node, f"{t} of integer indices ('{next(i for i in ins if not ctx.is_const(i))}') is not "
                            "supported; only Add, Sub, Mul, Div and Mod of two operands convert on int32 indices")
    rank = len(ctx.src_shape(node, node.output[0]))
    x, y = _operand(ctx, node, ins[0], rank), _operand(ctx, node, ins[1], rank)
    kind = KINDS[t]
    if t in ("Div", "Mod"):
        if ctx.is_const(ins[1]) and not np.all(np.asarray(ctx.consts[ctx.name(ins[1])]) != 0):
            raise ctx.err(node, f"the divisor '{ins[1]}' holds a zero (integer {t} by zero is undefined)")
        exact_floor = t == "Mod" and not int(a.get("fmod", 0))
        if not exact_floor:
            span = value_range(ctx, x)
            if not _positive_constant(ctx, ins[1]) or span is None or span[0] < 0:
                what = "Div truncates toward zero" if t == "Div" else "Mod with fmod=1 takes the dividend's sign"
                raise ctx.err(node, f"integer {t} of '{ins[0]}' by '{ins[1]}': ONNX's {what}, TFLite's "
                                    f"{kind} floors; they agree only for a dividend known to be non-negative (TopK/"
                                    "ArgMax positions) and a positive constant divisor, which this is not")
    if ctx.tensors[x].is_constant and kind in ("ADD", "MUL"):
        x, y = y, x  # the activation first
    ctx.emit(kind, [x, y], node.output[0], {"act": "NONE"} if kind in ("ADD", "SUB", "MUL") else {}, node)


def check_integer_reads(graph: Any, source: str) -> None:
    """Refuse (one line) an op that reads int32 indices as if they were float values (float math or a
    concatenation with float values without a CAST to float): only selections, integer arithmetic, gathers, the
    indices of a GATHER/GATHER_ND and a CAST to float read them."""
    from converters.ir import integer_tensors, produces_integers
    from edge_runtime.errors import UnsupportedModelError

    ints = integer_tensors(graph)
    for op in graph.ops:
        if produces_integers(graph, op, ints) or op.kind == "CAST":
            continue
        for k, name in enumerate(op.inputs):
            if name in ints and not (op.kind in ("GATHER", "GATHER_ND") and k == 1):
                raise UnsupportedModelError(
                    f"{source}: op '{op.name or op.outputs[0]}' ({op.kind}) reads the int32 indices '{name}' as float "
                    "values without a Cast to float; integer indices can only be selected from, combined by integer "
                    "Add/Sub/Mul/Div/Mod, gathered, index a Gather, be cast to float, or be a model output")
