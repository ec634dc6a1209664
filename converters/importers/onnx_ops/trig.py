"""Tan, Atan, Asin and Acos as chains of ops tflite-micro runs (it has no TAN, ATAN2, ASIN or ACOS).

Every intermediate is an int8 tensor with its own calibrated range, so each formula keeps its
intermediates bounded over the op's whole domain (a quantity that grows with ``|x|`` would lose the
small values):

- ``atan(x) = P(s) + s * (pi/4 - P(i))`` with ``s = clip(x, -1, 1)`` (a MUL's fused RELU_N1_TO_1) and
  ``i = min(1, 1/|x|)`` (a DIV's fused RELU_N1_TO_1; ``1/0`` clamps to 1): for ``|x| <= 1`` the second term
  is 0, beyond it ``atan(x) = sign(x) pi/2 - atan(1/x)``. ``P`` is atan on [-1, 1], an odd polynomial of
  degree 7 (:data:`ATAN_COEFFS`, max error 8.2e-5, under 0.01 of an int8 step of atan's output);
- ``asin(x) = 2 atan(x / (1 + sqrt(1 - x^2)))`` (the half-angle form: the argument stays in [-1, 1]),
  ``acos(x) = pi/2 - asin(x)``; ``1 - x^2`` has a fused RELU and the argument a fused RELU_N1_TO_1, so an
  input outside [-1, 1] (NaN in ONNX; int8 has none) gives the value at the nearer end of the domain;
- ``tan(x) = sin(x) / cos(x)`` (SIN, COS and the DIV run in float between int8 tensors), with ``|cos|``
  kept at least :data:`MIN_COS`: where int8 ``cos`` would round to 0 the DIV would give an infinity that
  no runtime quantizes the same way; ``|tan|`` then stops near ``1 / MIN_COS``, where one int8 step of
  ``cos`` already moves it by half its value.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from converters.importers.onnx_ops.context import ImportContext
from converters.importers.onnx_ops.math_chain import Chain

#: atan(t) ~= t * (c0 + c1 t^2 + c2 t^4 + c3 t^6) on [-1, 1]: a minimax fit (iteratively reweighted least
#: squares on 40,000 points), max abs error 8.2e-5
ATAN_COEFFS = (0.9992138189671574, -0.3211750773408364, 0.146264775948154, -0.03898673988253195)
#: smallest |cos x| the Tan lowering divides by: one int8 step of a cos output over [-1, 1]
MIN_COS = 2.0 / 255.0


def atan_of(ch: Chain, t: str, scale: float, tag: str, last: bool = False) -> str:
    """``scale * atan(t)`` for ``t`` in [-1, 1] (the polynomial of :data:`ATAN_COEFFS`)."""
    return ch.odd_poly(t, [scale * c for c in ATAN_COEFFS], tag, last=last)


def atan(ctx: ImportContext, node: Any, a: dict) -> None:
    """Atan over the whole real line."""
    ch = Chain(ctx, node, ctx.act(node, node.input[0]))
    x = ch.x
    s = ch.op("MUL", [x, 1.0], "clipped", act="RELU_N1_TO_1")
    inner = atan_of(ch, s, 1.0, "atan_inner")
    ab = ch.op("ABS", [x], "abs")
    inv = ch.op("DIV", [1.0, ab], "inverse", act="RELU_N1_TO_1")
    q = atan_of(ch, inv, -1.0, "atan_outer")
    q = ch.op("ADD", [q, float(np.pi / 4)], "outer")
    q = ch.op("MUL", [s, q], "signed_outer")
    ch.op("ADD", [inner, q], last=True)


def _half_angle(ch: Chain) -> str:
    """``x / (1 + sqrt(1 - x^2))`` clamped to [-1, 1]: ``tan(asin(x) / 2)``."""
    x = ch.x
    sq = ch.op("MUL", [x, x], "square")
    rest = ch.op("SUB", [1.0, sq], "one_minus_square", act="RELU")
    root = ch.op("SQRT", [rest], "cos")
    den = ch.op("ADD", [root, 1.0], "den")
    return ch.op("DIV", [x, den], "half_tan", act="RELU_N1_TO_1")


def asin(ctx: ImportContext, node: Any, a: dict) -> None:
    """Asin: ``2 atan(x / (1 + sqrt(1 - x^2)))``."""
    ch = Chain(ctx, node, ctx.act(node, node.input[0]))
    atan_of(ch, _half_angle(ch), 2.0, "asin", last=True)


def acos(ctx: ImportContext, node: Any, a: dict) -> None:
    """Acos: ``pi/2 - 2 atan(x / (1 + sqrt(1 - x^2)))``."""
    ch = Chain(ctx, node, ctx.act(node, node.input[0]))
    y = atan_of(ch, _half_angle(ch), -2.0, "minus_asin")
    ch.op("ADD", [y, float(np.pi / 2)], last=True)


def tan(ctx: ImportContext, node: Any, a: dict) -> None:
    """Tan: ``sin(x) / cos(x)`` with ``|cos x|`` at least :data:`MIN_COS` (its sign kept)."""
    ch = Chain(ctx, node, ctx.act(node, node.input[0]))
    x = ch.x
    s = ch.op("SIN", [x], "sin")
    c = ch.op("COS", [x], "cos")
    neg = ch.op("LESS", [c, 0.0], "cos_negative")
    lo = ch.op("MINIMUM", [c, -MIN_COS], "cos_low")
    hi = ch.op("MAXIMUM", [c, MIN_COS], "cos_high")
    c = ch.op("SELECT_V2", [neg, lo, hi], "cos_kept")
    ch.op("DIV", [s, c], last=True)


REGISTRY = {"Atan": atan, "Asin": asin, "Acos": acos, "Tan": tan}
