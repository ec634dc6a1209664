"""Bounds of the values float islands compute, and where their QUANTIZE needs a clamp before it.

A float island (ops run in float between DEQUANTIZE and QUANTIZE, see :mod:`converters.quantize`) can
compute ``+-inf`` (a DIV by an activation that reaches 0, LOG or RSQRT of 0, EXP of a large value) or a
finite value beyond ``scale * 2**31``. TFLite's reference QUANTIZE converts ``round(x / scale)`` to int32
before adding the zero point and clamping: on x86 (tflite-micro's Python package, and micro, which matches
it bit for bit) any value out of the int32 range, infinities included, becomes INT32_MIN, so ``+inf`` turns
into the lowest int8 code, and with a negative zero point ``INT32_MIN + zero_point`` wraps around, so
``-inf`` turns into the highest. (Arm's conversion saturates: a microcontroller would disagree.)

:func:`float_bounds` propagates intervals through the float ops of a plan (inputs dequantized from int8 or
int16 are bounded by their parameters, constants by their values); :func:`needs_clamp` says on which side a
value in those bounds can overflow the int32 conversion of a quantization, and :func:`clamp_range` gives
that quantization's real range, so that a ``MAXIMUM``/``MINIMUM`` in float before the QUANTIZE makes it
saturate (``+inf`` -> +127, ``-inf`` -> -128) on every platform. Only the sides that can overflow get one.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from converters.ir import UNARY, Graph, Op

Interval = tuple[float, float]
INF = math.inf
ANY: Interval = (-INF, INF)
#: The QUANTIZE's int32 conversion overflows from ``2**31 * scale``; a clamp is added from half of that.
OVERFLOW_MARGIN = 2.0 ** 30
#: Ops whose output values are among their (activation) inputs' values, or 0 (padding).
SELECTING = ("RESHAPE", "TRANSPOSE", "STRIDED_SLICE", "GATHER", "GATHER_ND", "CONCATENATION", "MAX_POOL_2D",
             "AVERAGE_POOL_2D", "RESIZE_NEAREST_NEIGHBOR", "RESIZE_BILINEAR", "DEPTH_TO_SPACE", "SPACE_TO_DEPTH",
             "MIRROR_PAD", "MEAN", "REDUCE_MAX")


def _int_range(bits: int) -> tuple[int, int]:
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1)


def clamp_range(qp: Any) -> tuple[float, float]:
    """The lowest and highest real values quantization ``qp`` (:class:`converters.quantize.QParams`) represents."""
    qmin, qmax = _int_range(qp.bits)
    return (float(np.float32((qmin - qp.zero_point) * qp.scale)), float(np.float32((qmax - qp.zero_point) * qp.scale)))


def needs_clamp(bounds: Interval, qp: Any) -> tuple[bool, bool]:
    """(low, high): whether float values within ``bounds`` can overflow the int32 conversion of TFLite's
    QUANTIZE to ``qp`` below and above (from ``2**30`` steps of its scale; infinite bounds always can)."""
    limit = OVERFLOW_MARGIN * qp.scale
    return (not bounds[0] > -limit, not bounds[1] < limit)


def _safe(lo: float, hi: float) -> Interval:
    """An interval, NaN bounds widened to infinities."""
    return (-INF if math.isnan(lo) else lo, INF if math.isnan(hi) else hi)


def _corners(f: Callable[[float, float], float], a: Interval, b: Interval) -> Interval:
    with np.errstate(all="ignore"):
        vals = [float(f(np.float64(x), np.float64(y))) for x in a for y in b]
    if any(math.isnan(v) for v in vals):
        return ANY
    return (min(vals), max(vals))


def _hull(*ivs: Interval) -> Interval:
    return (min(i[0] for i in ivs), max(i[1] for i in ivs))


def _monotone(f: Callable[[float], float], x: Interval) -> Interval:
    with np.errstate(all="ignore"):
        return _safe(float(f(np.float64(x[0]))), float(f(np.float64(x[1]))))


def _fused(act: str, b: Interval) -> Interval:
    if act == "RELU":
        return (max(b[0], 0.0), max(b[1], 0.0))
    if act == "RELU6":
        return (min(max(b[0], 0.0), 6.0), min(max(b[1], 0.0), 6.0))
    if act == "RELU_N1_TO_1":
        return (min(max(b[0], -1.0), 1.0), min(max(b[1], -1.0), 1.0))
    return b


def _weighted(graph: Graph, op: Op, x: Interval) -> Interval:
    """Per output channel: the sums of its positive and of its negative weights times the ends of ``x``
    (widened to hold 0, so padding and the partial sums of a TRANSPOSE_CONV stay inside), plus the bias."""
    w = graph.tensors[op.inputs[1]].data.astype(np.float64)
    axis = 3 if op.kind == "DEPTHWISE_CONV_2D" else 0
    w = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
    pos, neg = np.clip(w, 0, None).sum(axis=1), np.clip(w, None, 0).sum(axis=1)
    b = graph.tensors[op.inputs[2]].data.astype(np.float64) if len(op.inputs) > 2 else np.zeros(len(pos))
    lo, hi = min(x[0], 0.0), max(x[1], 0.0)
    if not pos.size:
        return (0.0, 0.0)
    with np.errstate(all="ignore"):
        low = np.nan_to_num(pos * lo, nan=-INF) + np.nan_to_num(neg * hi, nan=-INF) + b
        high = np.nan_to_num(pos * hi, nan=INF) + np.nan_to_num(neg * lo, nan=INF) + b
    return _safe(float(low.min()), float(high.max()))


def _reduced_count(graph: Graph, op: Op) -> int:
    shape = graph.tensors[op.inputs[0]].shape
    if op.kind == "CUMSUM":
        return int(shape[int(op.attrs.get("axis", 0)) % max(len(shape), 1)]) if shape else 1
    axes = op.attrs.get("axes", range(len(shape)))
    return int(np.prod([shape[int(a) % len(shape)] for a in axes])) if shape else 1


def _unary(kind: str, op: Op, x: Interval) -> Interval:
    lo, hi = x
    if kind == "EXP":
        return _monotone(np.exp, x)
    if kind == "LOG":
        return (math.log(lo) if lo > 0 else -INF, math.log(hi) if 0 < hi < INF else (INF if hi == INF else -INF))
    if kind == "SQRT":
        return _monotone(np.sqrt, (max(lo, 0.0), max(hi, 0.0)))
    if kind == "RSQRT":
        return (1.0 / math.sqrt(hi), 1.0 / math.sqrt(lo)) if lo > 0 and hi < INF else (0.0, INF)
    if kind in ("FLOOR", "CEIL", "ROUND"):
        return (math.floor(lo) if lo > -INF else lo, math.ceil(hi) if hi < INF else hi)
    if kind in ("SIN", "COS", "TANH", "RELU_N1_TO_1"):
        return (-1.0, 1.0)
    if kind == "LOGISTIC":
        return (0.0, 1.0)
    if kind == "ABS":
        return (0.0 if lo <= 0 <= hi else min(abs(lo), abs(hi)), max(abs(lo), abs(hi)))
    if kind == "RELU":
        return (max(lo, 0.0), max(hi, 0.0))
    if kind == "RELU6":
        return (min(max(lo, 0.0), 6.0), min(max(hi, 0.0), 6.0))
    if kind == "LEAKY_RELU":
        a = float(op.attrs.get("alpha", 0.2))
        return _hull((lo, hi), (a * lo, a * hi)) if lo < 0 else (lo, hi)
    if kind in ("GELU", "HARD_SWISH", "ELU"):  # their minimum: -0.17, -0.375, -1; below x's for x > 0
        floor = -1.0 if kind == "ELU" else -0.5
        return (floor if lo < 0 else lo, max(hi, 0.0))
    return ANY


def _binary(kind: str, a: Interval, b: Interval) -> Interval:
    if kind == "ADD":
        return _corners(lambda x, y: x + y, a, b)
    if kind == "SUB":
        return _corners(lambda x, y: x - y, a, b)
    if kind == "MUL":
        return _corners(lambda x, y: x * y, a, b)
    if kind == "DIV":  # a divisor reaching 0 from one side: that side's infinity (0 / 0 is NaN either way)
        if b[0] < 0.0 < b[1] or b == (0.0, 0.0):
            return ANY
        if b[0] == 0.0 or b[1] == 0.0:  # x / +0.0 and x / -0.0: the infinities of x's sign
            return _corners(lambda x, y: x / y, a, (0.0, b[1]) if b[0] == 0.0 else (b[0], -0.0))
        return _corners(lambda x, y: x / y, a, b)
    if kind == "MAXIMUM":
        return (max(a[0], b[0]), max(a[1], b[1]))
    if kind == "MINIMUM":
        return (min(a[0], b[0]), min(a[1], b[1]))
    if kind == "SQUARED_DIFFERENCE":
        d = _corners(lambda x, y: x - y, a, b)
        return (0.0, max(d[0] * d[0], d[1] * d[1]))
    return ANY


def op_bounds(graph: Graph, op: Op, ins: list[Interval]) -> Interval:
    """An interval holding every value ``op`` computes in float from inputs in ``ins`` (its fused
    activation applied); ``(-inf, inf)`` for ops without a rule."""
    kind = op.kind
    if kind in UNARY:
        b = _unary(kind, op, ins[0])
    elif kind == "MUL" and len(ins) == 2 and op.inputs[0] == op.inputs[1]:  # a square
        b = _binary("SQUARED_DIFFERENCE", ins[0], (0.0, 0.0))
    elif kind in ("ADD", "SUB", "MUL", "DIV", "SQUARED_DIFFERENCE", "MAXIMUM", "MINIMUM") and len(ins) == 2:
        b = _binary(kind, ins[0], ins[1])
    elif kind == "SOFTMAX":
        b = (0.0, 1.0)
    elif kind == "LOG_SOFTMAX":
        b = (-INF, 0.0)
    elif kind in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV"):
        b = _weighted(graph, op, ins[0])
    elif kind in ("SUM", "CUMSUM"):
        n = _reduced_count(graph, op)
        b = (min(n * ins[0][0], ins[0][0]), max(n * ins[0][1], ins[0][1]))
    elif kind == "BATCH_MATMUL":
        k = int(graph.tensors[op.inputs[0]].shape[-1]) if graph.tensors[op.inputs[0]].shape else 1
        m = k * _corners(lambda x, y: abs(x) * abs(y), ins[0], ins[1])[1]
        b = (-m, m)
    elif kind == "PRELU":
        b = _hull(ins[0], _corners(lambda x, y: x * y, ins[0], ins[1]))
    elif kind == "SELECT_V2":
        b = _hull(ins[1], ins[2])
    elif kind in SELECTING:
        b = _hull(*(ins if kind == "CONCATENATION" else ins[:1]))
    elif kind in ("PAD", "PADV2"):
        v = float(op.attrs.get("value", 0.0)) if kind == "PADV2" else 0.0
        b = _hull(ins[0], (v, v)) if math.isfinite(v) else ins[0]
    else:
        b = ANY
    return _fused(op.act, _safe(*b))


def float_bounds(graph: Graph, plan: Any) -> dict[str, Interval]:
    """For the output of every op a plan (:class:`converters.quantize.QuantPlan`) runs in float: an interval
    holding the float values it computes (before any QUANTIZE). Inputs stored as int8/int16 are bounded by
    their quantization parameters, float constants by their values, float-stored activations by what their
    producer computes."""
    computed: dict[str, Interval] = {}

    def read(name: str) -> Interval:
        t = graph.tensors[name]
        if t.is_constant:
            d = np.asarray(t.data, np.float64)
            return _safe(float(d.min()), float(d.max())) if d.size else (0.0, 0.0)
        if name in computed:
            return computed[name]
        dt = plan.tensor_dtype(name)
        if dt in ("int8", "int16"):
            try:
                qp = plan.params(name, dt)
            except KeyError:
                return ANY
            qmin, qmax = _int_range(qp.bits)
            return ((qmin - qp.zero_point) * qp.scale, (qmax - qp.zero_point) * qp.scale)
        return (0.0, 1.0) if dt == "bool" else ANY

    for op in graph.ops:
        if plan.op_dtype(op) != "float32" or not op.outputs:
            continue
        b = op_bounds(graph, op, [read(i) for i in op.inputs])
        for o in op.outputs:
            computed[o] = b
    return computed
