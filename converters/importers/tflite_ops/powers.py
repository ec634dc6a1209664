"""POW with a constant exponent and REDUCE_PROD over a small reduced size, as int8 MUL/SQRT/RSQRT/DIV.

POW takes the same exponents as the ONNX importer's Pow (:func:`converters.importers.onnx_ops.elementwise.pow_`)
plus 4 and -2: ``x**1`` is ``x``, ``x**2``, ``x**3`` and ``x**4`` are MUL chains, ``x**0.5`` is SQRT,
``x**-0.5`` RSQRT, ``x**-1`` and ``x**-2`` a DIV of 1; a compression exponent ``a`` between 0 and 1 is
``EXP(a * LOG(x))`` (BirdNET's ``x**0.2295`` on a power spectrum: NaN for x < 0 as pow gives, 0 at x = 0).
Any other exponent, a per-element exponent tensor or one computed at run time is refused in one line. REDUCE_PROD multiplies the slices along each reduced axis
(one MUL per factor, at most :data:`MAX_FACTORS` in all).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from converters.importers.tflite_ops.context import TFLiteContext

#: exponent -> the recipe: ("mul", n) = x**n by MULs, ("sqrt",), ("rsqrt",), ("inv", n) = 1 / x**n
POW_FORMS: dict[float, tuple] = {1.0: ("mul", 1), 2.0: ("mul", 2), 3.0: ("mul", 3), 4.0: ("mul", 4),
                                 0.5: ("sqrt",), -0.5: ("rsqrt",), -1.0: ("inv", 1), -2.0: ("inv", 2)}
#: the most MULs REDUCE_PROD is written with
MAX_FACTORS = 32


def _power(ctx: TFLiteContext, op: Any, x: str, n: int, out: str) -> str:
    """``x ** n`` (n >= 1) by repeated squaring into ``out``."""
    shape = ctx.shape(x)
    if n == 1:
        return ctx.emit(op, "RESHAPE", [x], out)
    if n == 4:
        sq = ctx.emit(op, "MUL", [x, x], ctx.tmp(f"{out}/square", shape), {"act": "NONE"})
        return ctx.emit(op, "MUL", [sq, sq], out, {"act": "NONE"})
    cur = x
    for k in range(n - 1):
        dst = out if k == n - 2 else ctx.tmp(f"{out}/power{k + 2}", shape)
        cur = ctx.emit(op, "MUL", [cur, x], dst, {"act": "NONE"})
    return cur


def pow_(ctx: TFLiteContext, op: Any) -> None:
    """POW(x, e) with ``e`` a constant whose elements are all one of :data:`POW_FORMS`."""
    x, out = ctx.act_in(op, 0), ctx.name(op.outputs[0])
    e_name = ctx.act_in(op, 1)
    if ctx.tensors[x].is_constant:
        raise ctx.err(op, "the base is a constant; only a constant exponent of a computed base is supported")
    e_data = ctx.tensors[e_name].data
    if e_data is None:
        raise ctx.err(op, "the exponent is computed at run time; only a constant exponent is supported")
    e = np.asarray(e_data, np.float64).reshape(-1)
    if e.size == 0 or np.any(e != e[0]):
        raise ctx.err(op, f"the exponent varies per element ({e.size} values); only one exponent value is supported")
    form = POW_FORMS.get(float(e[0]))
    if form is None and not 0.0 < float(e[0]) < 1.0:
        raise ctx.err(op, f"exponent {e[0]:g} is not supported (exponents: "
                          f"{', '.join(f'{k:g}' for k in sorted(POW_FORMS))}, or one between 0 and 1)")
    if ctx.shape(x) != ctx.shape(out):
        raise ctx.err(op, f"the exponent broadcasts the base {list(ctx.shape(x))} to {list(ctx.shape(out))}")
    if form is None:  # x ** a = exp(a * log(x)): NaN for x < 0 like pow, 0 for x = 0 (exp(-inf))
        shape = ctx.shape(x)
        log = ctx.emit(op, "LOG", [x], ctx.tmp(f"{out}/log", shape))
        scaled = ctx.emit(op, "MUL", [log, ctx.add_const(f"{out}/exponent", np.array([e[0]]))],
                          ctx.tmp(f"{out}/scaled_log", shape), {"act": "NONE"})
        ctx.emit(op, "EXP", [scaled], out)
    elif form[0] == "mul":
        _power(ctx, op, x, form[1], out)
    elif form[0] == "sqrt":
        ctx.emit(op, "SQRT", [x], out)
    elif form[0] == "rsqrt":
        ctx.emit(op, "RSQRT", [x], out)
    else:
        den = x if form[1] == 1 else _power(ctx, op, x, form[1], ctx.tmp(f"{out}/denominator", ctx.shape(x)))
        ctx.emit(op, "DIV", [ctx.add_const(f"{out}/one", np.array([1.0])), den], out, {"act": "NONE"})


def product_along(ctx: TFLiteContext, op: Any, x: str, axis: int, out: str) -> str:
    """The product of ``x``'s slices along ``axis`` (kept as size 1) into ``out``: a chain of MULs."""
    shape = ctx.shape(x)
    kept = tuple(1 if d == axis else s for d, s in enumerate(shape))
    parts = []
    for k in range(shape[axis]):
        begin = [0] * len(shape)
        end = list(shape)
        begin[axis], end[axis] = k, k + 1
        dst = out if shape[axis] == 1 else ctx.tmp(f"{out}/slice{k}", kept)
        parts.append(ctx.emit(op, "STRIDED_SLICE", [x], dst, {"begin": tuple(begin), "end": tuple(end),
                                                               "strides": (1,) * len(shape)}))
    cur = parts[0]
    for k, p in enumerate(parts[1:]):
        dst = out if k == len(parts) - 2 else ctx.tmp(f"{out}/partial{k}", kept)
        cur = ctx.emit(op, "MUL", [cur, p], dst, {"act": "NONE"})
    return cur


def reduce_prod(ctx: TFLiteContext, op: Any) -> None:
    """REDUCE_PROD over constant axes: per axis, the product of its slices (MUL chain)."""
    x, out = ctx.act_in(op, 0), ctx.name(op.outputs[0])
    shape = ctx.shape(x)
    rank = len(shape)
    axes = sorted({int(v) % rank for v in np.atleast_1d(np.asarray(ctx.value(op, 1)))})
    factors = sum(shape[a] - 1 for a in axes)
    if factors > MAX_FACTORS:
        raise ctx.err(op, f"reduces {factors + len(axes)} values per output; at most {MAX_FACTORS} multiplications "
                          "are written out")
    if not axes or all(shape[a] == 1 for a in axes):
        ctx.emit(op, "RESHAPE", [x], out)
        return
    cur = x
    for a in axes:
        kept = tuple(1 if d == a else s for d, s in enumerate(ctx.shape(cur)))
        cur = product_along(ctx, op, cur, a, ctx.tmp(f"{out}/prod_axis{a}", kept))
    ctx.emit(op, "RESHAPE", [cur], out)


REGISTRY = {"POW": pow_, "REDUCE_PROD": reduce_prod}
