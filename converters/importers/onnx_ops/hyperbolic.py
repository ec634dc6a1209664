"""Sinh, Cosh, Asinh, Acosh and Atanh as chains of ops tflite-micro runs (EXP, LOG, SQRT and DIV run in
float between int8 tensors; it has none of these five ops).

Each formula keeps its int8 intermediates bounded, or as precise as the input itself, over the op's
whole domain:

- ``sinh(x) = e^(x - ln 2) - e^(-x - ln 2)``, ``cosh(x) = e^(x - ln 2) + e^(-x - ln 2)``;
- ``asinh(x) = asinh(s) + s * (asinh(d) - asinh(1))`` with ``s = clip(x, -1, 1)`` and ``d = max(|x|, 1)``
  (for ``|x| > 1``, ``s`` is the sign), where ``asinh(s) = (log(r + s) - log(r - s)) / 2`` with
  ``r = sqrt(1 + s^2)`` (both logs of values in [0.41, 2.42]) and ``asinh(d) = log(d) + log(1 + sqrt(1 +
  i^2))`` with ``i = 1/d``: ``log(|x| + sqrt(x^2 + 1))`` as written would hold ``x^2`` in int8, whose step
  grows with the square of the input range and wipes out the small values;
- ``acosh(x) = log(d) + log(1 + sqrt(1 - i^2))``, ``d = max(x, 1)``, ``i = 1/d``;
- ``atanh(x) = (log(1 + p) - log(1 - p)) / 2``, ``p = clip(x, -1, 1)``, each log's argument at least
  :data:`MIN_LOG_ARG`: an int8 LOG input that rounds to 0 gives -inf, which no runtime quantizes the same
  way. |atanh| so stops at ``atanh(1 - MIN_LOG_ARG)`` (2.77), the value of the int8 input step next to 1.

Inputs outside the domain (NaN in ONNX; int8 has none) give the value at the nearer end of it.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from converters.importers.onnx_ops.context import ImportContext
from converters.importers.onnx_ops.math_chain import Chain

#: smallest argument of Atanh's logs: one int8 step of a tensor over [0, 2]
MIN_LOG_ARG = 2.0 / 255.0
LN2 = float(np.log(2.0))


def _half_exps(ch: Chain) -> tuple[str, str]:
    """``e^x / 2`` and ``e^-x / 2``."""
    x = ch.x
    up = ch.op("EXP", [ch.op("ADD", [x, -LN2], "x_minus_ln2")], "half_exp")
    down = ch.op("EXP", [ch.op("SUB", [-LN2, x], "minus_x_minus_ln2")], "half_exp_neg")
    return up, down


def sinh(ctx: ImportContext, node: Any, a: dict) -> None:
    """Sinh: ``e^x / 2 - e^-x / 2``."""
    ch = Chain(ctx, node, ctx.act(node, node.input[0]))
    up, down = _half_exps(ch)
    ch.op("SUB", [up, down], last=True)


def cosh(ctx: ImportContext, node: Any, a: dict) -> None:
    """Cosh: ``e^x / 2 + e^-x / 2``."""
    ch = Chain(ctx, node, ctx.act(node, node.input[0]))
    up, down = _half_exps(ch)
    ch.op("ADD", [up, down], last=True)


def _log1p_sqrt(ch: Chain, i: str, sign: float, tag: str) -> str:
    """``log(1 + sqrt(1 + sign * i^2))`` for ``i`` in [0, 1]."""
    sq = ch.op("MUL", [i, i], f"{tag}_square")
    rest = ch.op("ADD" if sign > 0 else "SUB", [sq, 1.0] if sign > 0 else [1.0, sq], f"{tag}_rest", act="RELU")
    root = ch.op("SQRT", [rest], f"{tag}_root")
    return ch.op("LOG", [ch.op("ADD", [root, 1.0], f"{tag}_den")], f"{tag}_log")


def asinh(ctx: ImportContext, node: Any, a: dict) -> None:
    """Asinh over the whole real line (see the module docstring)."""
    ch = Chain(ctx, node, ctx.act(node, node.input[0]))
    x = ch.x
    s = ch.op("MUL", [x, 1.0], "clipped", act="RELU_N1_TO_1")
    r = ch.op("SQRT", [ch.op("ADD", [ch.op("MUL", [s, s], "square"), 1.0], "one_plus_square")], "hypot")
    up = ch.op("LOG", [ch.op("ADD", [r, s], "hypot_plus")], "log_plus")
    down = ch.op("LOG", [ch.op("SUB", [r, s], "hypot_minus")], "log_minus")
    inner = ch.op("MUL", [ch.op("SUB", [up, down], "log_ratio"), 0.5], "inner")
    ab = ch.op("ABS", [x], "abs")
    d = ch.op("MAXIMUM", [ab, 1.0], "outer_arg")
    inv = ch.op("DIV", [1.0, ab], "inverse", act="RELU_N1_TO_1")
    outer = ch.op("ADD", [ch.op("LOG", [d], "log_outer"), _log1p_sqrt(ch, inv, 1.0, "outer")], "outer_sum")
    outer = ch.op("ADD", [outer, -float(np.arcsinh(1.0))], "outer")
    ch.op("ADD", [inner, ch.op("MUL", [s, outer], "signed_outer")], last=True)


def acosh(ctx: ImportContext, node: Any, a: dict) -> None:
    """Acosh: ``log(d) + log(1 + sqrt(1 - 1/d^2))`` with ``d = max(x, 1)``."""
    ch = Chain(ctx, node, ctx.act(node, node.input[0]))
    d = ch.op("MAXIMUM", [ch.x, 1.0], "arg")
    inv = ch.op("DIV", [1.0, d], "inverse", act="RELU_N1_TO_1")
    ch.op("ADD", [ch.op("LOG", [d], "log_arg"), _log1p_sqrt(ch, inv, -1.0, "rest")], last=True)


def atanh(ctx: ImportContext, node: Any, a: dict) -> None:
    """Atanh: ``(log(1 + p) - log(1 - p)) / 2`` with ``p = clip(x, -1, 1)`` and the logs' arguments at least
    :data:`MIN_LOG_ARG`."""
    ch = Chain(ctx, node, ctx.act(node, node.input[0]))
    p = ch.op("MUL", [ch.x, 1.0], "clipped", act="RELU_N1_TO_1")
    up = ch.op("MAXIMUM", [ch.op("ADD", [p, 1.0], "one_plus"), MIN_LOG_ARG], "one_plus_kept")
    down = ch.op("MAXIMUM", [ch.op("SUB", [1.0, p], "one_minus"), MIN_LOG_ARG], "one_minus_kept")
    diff = ch.op("SUB", [ch.op("LOG", [up], "log_plus"), ch.op("LOG", [down], "log_minus")], "log_ratio")
    ch.op("MUL", [diff, 0.5], last=True)


REGISTRY = {"Sinh": sinh, "Cosh": cosh, "Asinh": asinh, "Acosh": acosh, "Atanh": atanh}
