"""Constant folding of TFLite operators whose inputs are all constants: the integer shape arithmetic Keras
and TF write around dynamic dimensions (SHAPE -> STRIDED_SLICE -> PACK -> RESHAPE), constant masks and
selections between constants. SHAPE itself is folded by :mod:`.constants` (shapes are static).

Each op is evaluated here in numpy from the TFLite operator semantics rather than by running a one-op model
in ``edge_runtime.backends.micro``: these are index computations on int32/int64/bool tensors of a few
elements, whose results must be exact and available before any handler runs, and micro (following
tflite-micro) lacks some of them altogether (REDUCE_PROD) or in int32 (FLOOR_DIV is float32 only); numpy
covers every dtype the file can hold and needs no flatbuffer round trip. The tests compare every folded op
with LiteRT on the same constants.

Only ops whose result is not a float activation are folded (an output that is integer or bool; float
FLOOR_DIV/FLOOR_MOD, comparisons, logical ops and SELECT of constants, which the handlers refuse; CAST of an
integer constant), so float constant expressions that already convert are written exactly as before.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np

from converters.importers.gather_indices import normalized_indices
from converters.importers.tflite_ops.context import TFLiteContext
from converters.ir import COMPARE_KINDS, LOGICAL_KINDS

#: TFLite tensor type -> numpy dtype of a folded value
DTYPES = {"FLOAT32": np.float32, "FLOAT16": np.float32, "INT32": np.int32, "INT64": np.int64, "INT16": np.int16,
          "INT8": np.int8, "UINT8": np.uint8, "BOOL": np.bool_}

Values = list[Optional[np.ndarray]]
Evaluator = Callable[[TFLiteContext, Any, Values], "np.ndarray | list[np.ndarray]"]


class NotFoldable(Exception):
    """The operator uses a variant this module does not evaluate (left to its handler)."""


def _ints(v: Optional[np.ndarray]) -> list[int]:
    return [int(d) for d in np.asarray(v).reshape(-1)]


def _no_act(ctx: TFLiteContext, op: Any, field: int) -> None:
    if int(ctx.option(op, field, "b", 0)) != 0:
        raise NotFoldable("fused activation")


def _strided_slice(ctx: TFLiteContext, op: Any, v: Values) -> np.ndarray:
    x, begin, end, strides = np.asarray(v[0]), _ints(v[1]), _ints(v[2]), _ints(v[3])
    bmask, emask, ellipsis, new_axis, shrink = (int(ctx.option(op, f, "i", 0)) for f in range(5))
    if ellipsis or new_axis:
        raise NotFoldable("ellipsis or new-axis mask")
    if bool(ctx.option(op, 5, "b", False)):  # offset: end is relative to begin
        end = [b + e for b, e in zip(begin, end)]
    index: list[Any] = []
    for d in range(x.ndim):
        if d >= len(begin):
            index.append(slice(None))
        elif (shrink >> d) & 1:
            index.append(begin[d])
        else:
            if strides[d] == 0:
                raise ValueError(f"stride 0 on axis {d}")
            index.append(slice(None if (bmask >> d) & 1 else begin[d], None if (emask >> d) & 1 else end[d],
                               strides[d]))
    return x[tuple(index)]


def _slice(ctx: TFLiteContext, op: Any, v: Values) -> np.ndarray:
    x, begin, size = np.asarray(v[0]), _ints(v[1]), _ints(v[2])
    return x[tuple(slice(b, x.shape[d] if s < 0 else b + s) for d, (b, s) in enumerate(zip(begin, size)))]


def _reshape(ctx: TFLiteContext, op: Any, v: Values) -> np.ndarray:
    if len(v) > 1 and v[1] is not None:
        return np.reshape(v[0], _ints(v[1]))
    return np.reshape(v[0], ctx.shape(ctx.name(op.outputs[0])))


def _squeeze(ctx: TFLiteContext, op: Any, v: Values) -> np.ndarray:
    x = np.asarray(v[0])
    dims = op.options.vector(0, np.int32) if op.options is not None else None
    axes = tuple(int(d) % x.ndim for d in dims) if dims is not None and len(dims) else \
        tuple(d for d, s in enumerate(x.shape) if s == 1)
    return np.squeeze(x, axis=axes)


def _gather(ctx: TFLiteContext, op: Any, v: Values) -> np.ndarray:
    if int(ctx.option(op, 1, "i", 0)) != 0:
        raise NotFoldable("batch_dims")
    x = np.asarray(v[0])
    axis = int(ctx.option(op, 0, "i", 0)) % x.ndim
    return np.take(x, normalized_indices(v[1], x.shape[axis], axis), axis=axis)


def _split_v(ctx: TFLiteContext, op: Any, v: Values) -> list[np.ndarray]:
    x, sizes = np.asarray(v[0]), _ints(v[1])
    axis = _ints(v[2])[0] % x.ndim
    if sizes.count(-1) == 1:
        sizes[sizes.index(-1)] = x.shape[axis] - (sum(sizes) + 1)
    if sum(sizes) != x.shape[axis] or min(sizes) < 0:
        raise ValueError(f"sizes {sizes} do not split axis {axis} of size {x.shape[axis]}")
    return np.split(x, np.cumsum(sizes)[:-1], axis=axis)


def _reduce(fn: Callable[..., np.ndarray]) -> Evaluator:
    def run(ctx: TFLiteContext, op: Any, v: Values) -> np.ndarray:
        x = np.asarray(v[0])
        axes = tuple(sorted({a % x.ndim for a in _ints(v[1])})) if x.ndim else ()
        return fn(x, axis=axes, keepdims=bool(ctx.option(op, 0, "b", False)))
    return run


def _binary(fn: Callable[[np.ndarray, np.ndarray], np.ndarray], act_field: Optional[int] = None) -> Evaluator:
    def run(ctx: TFLiteContext, op: Any, v: Values) -> np.ndarray:
        if act_field is not None:
            _no_act(ctx, op, act_field)
        return fn(np.asarray(v[0]), np.asarray(v[1]))
    return run


def _floor(fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Evaluator:
    def run(ctx: TFLiteContext, op: Any, v: Values) -> np.ndarray:
        a, b = np.asarray(v[0]), np.asarray(v[1])
        if b.dtype.kind in "iu" and np.any(b == 0):
            raise ValueError("integer division by zero")
        return fn(a, b)
    return run


def _select(ctx: TFLiteContext, op: Any, v: Values) -> np.ndarray:
    c, a, b = (np.asarray(x) for x in v[:3])
    if op.name == "SELECT" and c.ndim == 1 and a.ndim > 1 and c.shape[0] == a.shape[0]:
        c = c.reshape((-1,) + (1,) * (a.ndim - 1))  # SELECT v1: a rank-1 condition picks whole rows
    return np.where(c.astype(bool), a, b)


_COMPARE = {"EQUAL": np.equal, "NOT_EQUAL": np.not_equal, "GREATER": np.greater, "GREATER_EQUAL": np.greater_equal,
            "LESS": np.less, "LESS_EQUAL": np.less_equal}
_LOGICAL = {"LOGICAL_AND": np.logical_and, "LOGICAL_OR": np.logical_or}

EVALUATORS: dict[str, Evaluator] = {
    "STRIDED_SLICE": _strided_slice,
    "SLICE": _slice,
    "PACK": lambda ctx, op, v: np.stack([np.asarray(x) for x in v], axis=int(ctx.option(op, 1, "i", 0))),
    "UNPACK": lambda ctx, op, v: [np.take(v[0], i, axis=int(ctx.option(op, 1, "i", 0)))
                                 for i in range(np.asarray(v[0]).shape[int(ctx.option(op, 1, "i", 0))])],
    "CONCATENATION": lambda ctx, op, v: (_no_act(ctx, op, 1), np.concatenate(
        [np.asarray(x) for x in v], axis=int(ctx.option(op, 0, "i", 0))))[1],
    "RESHAPE": _reshape,
    "SQUEEZE": _squeeze,
    "EXPAND_DIMS": lambda ctx, op, v: np.expand_dims(v[0], _ints(v[1])[0]),
    "TRANSPOSE": lambda ctx, op, v: np.transpose(v[0], _ints(v[1])),
    "TILE": lambda ctx, op, v: np.tile(v[0], _ints(v[1])),
    "GATHER": _gather,
    "SPLIT": lambda ctx, op, v: np.split(np.asarray(v[1]), len(op.outputs), axis=_ints(v[0])[0]),
    "SPLIT_V": _split_v,
    "REDUCE_PROD": _reduce(np.prod),
    "SUM": _reduce(np.sum),
    "REDUCE_MAX": _reduce(np.max),
    "REDUCE_MIN": _reduce(np.min),
    "FLOOR_DIV": _floor(np.floor_divide),
    "FLOOR_MOD": _floor(np.mod),
    "ADD": _binary(np.add, 0),
    "SUB": _binary(np.subtract, 0),
    "MUL": _binary(np.multiply, 0),
    "MAXIMUM": _binary(np.maximum),
    "MINIMUM": _binary(np.minimum),
    "NEG": lambda ctx, op, v: np.negative(v[0]),
    "ABS": lambda ctx, op, v: np.abs(v[0]),
    "CAST": lambda ctx, op, v: np.asarray(v[0]),
    "SELECT": _select,
    "SELECT_V2": _select,
    **{k: _binary(f) for k, f in _COMPARE.items()},
    **{k: _binary(f) for k, f in _LOGICAL.items()},
    "LOGICAL_NOT": lambda ctx, op, v: np.logical_not(v[0]),
}
#: ops folded whatever their output type (their handlers refuse all-constant inputs)
ALWAYS = tuple(COMPARE_KINDS) + tuple(LOGICAL_KINDS) + ("SELECT", "SELECT_V2", "FLOOR_DIV", "FLOOR_MOD")


def _empty_shape_input(ctx: TFLiteContext, op: Any, k: int) -> bool:
    """RESHAPE's shape input holding no values (a file's empty constant for ``reshape(x, [])``, which has no
    buffer bytes and so reads as an activation): :func:`_reshape` takes the stored output shape instead."""
    return op.name == "RESHAPE" and k == 1 and ctx.sg.tensors[op.inputs[k]].num_elements == 0


def _wanted(ctx: TFLiteContext, op: Any) -> bool:
    if op.name not in EVALUATORS or not any(i >= 0 for i in op.inputs):
        return False
    if any(i >= 0 and ctx.tensors[ctx.name(i)].data is None and not _empty_shape_input(ctx, op, k)
           for k, i in enumerate(op.inputs)):
        return False
    types = [ctx.sg.tensors[o].type_name for o in op.outputs]
    if any(t != "FLOAT32" for t in types) or op.name in ALWAYS:
        return True
    return op.name == "CAST" and ctx.sg.tensors[op.inputs[0]].type_name != "FLOAT32"


def fold_constant_op(ctx: TFLiteContext, op: Any) -> bool:
    """Evaluate ``op`` when all its inputs are constants and its result is not a float activation (see the
    module docstring); store the result as its outputs' constant values and return True. Returns False for
    anything else (the op's handler then runs); a constant computation that fails (bad shapes, integer
    division by zero, an index out of range) is refused in one line."""
    if not _wanted(ctx, op):
        return False
    values: Values = [ctx.tensors[ctx.name(i)].data if i >= 0 else None for i in op.inputs]
    try:
        result = EVALUATORS[op.name](ctx, op, values)
    except NotFoldable:
        return False
    except Exception as exc:  # noqa: BLE001 - a malformed constant computation is one refusal line
        raise ctx.err(op, f"cannot compute this operator on its constant inputs ({type(exc).__name__}: {exc})") \
            from None
    results = result if isinstance(result, list) else [result]
    if len(results) != len(op.outputs):
        raise ctx.err(op, f"{len(op.outputs)} outputs, but its constant inputs give {len(results)}")
    for o, value in zip(op.outputs, results):
        info = ctx.sg.tensors[o]
        quantized = info.quantization is not None and info.quantization.scale.size > 0
        dtype = np.float32 if quantized else DTYPES.get(info.type_name)
        if dtype is None:
            raise ctx.err(op, f"output is {info.type_name}; constants of that type cannot be folded")
        t = ctx.tensors[ctx.name(o)]
        t.data = np.array(value, dtype=dtype, order="C")  # keeps 0-D results 0-D
        t.shape = tuple(int(d) for d in t.data.shape)
    return True
