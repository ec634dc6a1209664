"""GELU as ops that TFLite Micro and LiteRT both run in int8 (TFLite Micro registers no GELU).

``GELU(x) ~= x * sigmoid(x * (A + B * x^2))`` with ``A = 2 sqrt(2/pi)`` and ``B = A * 0.044715``: this
is exactly the tanh form ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`` (since
``0.5 (1 + tanh(z)) = sigmoid(2 z)``), within 3e-4 of the exact (Erf) GELU and ~100x closer than
``x * sigmoid(1.702 x)``. Six int8 ops: MUL (x^2), MUL (B), ADD (A), MUL (the sigmoid's argument),
LOGISTIC, MUL. The sigmoid's argument feeds LOGISTIC only, so its int8 range is cut to where the
sigmoid saturates (:func:`converters.quantize.plan_quantization`), which keeps its step small.

Both importers use :func:`expand_gelu` through their own ``emit``/``tmp``/``add_const`` helpers.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

#: ``2 sqrt(2 / pi)``: the linear coefficient of the sigmoid's argument
GELU_A = float(2.0 * np.sqrt(2.0 / np.pi))
#: ``2 sqrt(2 / pi) * 0.044715``: the cubic coefficient
GELU_B = GELU_A * 0.044715


def gelu_reference(x: np.ndarray) -> np.ndarray:
    """The float function the emitted ops compute (for tests and documentation)."""
    x64 = np.asarray(x, np.float64)
    return (x64 / (1.0 + np.exp(-x64 * (GELU_A + GELU_B * x64 * x64)))).astype(np.float32)


def expand_gelu(emit: Callable[[str, list[str], str], str], tmp: Callable[[str], str],
                const: Callable[[str, float], str], x: str, out: str) -> str:
    """Emit the six ops computing GELU of activation ``x`` into ``out``; returns ``out``.

    ``emit(kind, inputs, output)`` appends one op (MUL/ADD get ``act NONE``), ``tmp(suffix)`` makes a
    fresh activation of ``x``'s shape, ``const(suffix, value)`` a one-element float constant.
    """
    sq = emit("MUL", [x, x], tmp("gelu_square"))
    cubic = emit("MUL", [sq, const("gelu_b", GELU_B)], tmp("gelu_cubic"))
    slope = emit("ADD", [cubic, const("gelu_a", GELU_A)], tmp("gelu_slope"))
    arg = emit("MUL", [x, slope], tmp("gelu_arg"))
    gate = emit("LOGISTIC", [arg], tmp("gelu_gate"))
    return emit("MUL", [x, gate], out)
