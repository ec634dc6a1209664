"""Erf on its own (not inside a Gelu pattern) as int8 ops every runtime has: MUL, ADD and TANH.

``erf(x) ~= tanh(t * (c0 + c1 t^2 + c2 t^4))`` with ``t = clip(x / ERF_CLIP, -1, 1)`` (a MUL's fused
RELU_N1_TO_1): :data:`ERF_COEFFS` is a minimax fit (iteratively reweighted least squares on 80,000 points of
[0, 8]; erf and the form are odd), max abs error 3.8e-5 over the whole real line, 0.005 of an int8 step of
erf's output. Clipping first keeps every intermediate bounded (``|t| <= 1``, the TANH argument within
+-5.8, whose int8 range the quantizer cuts to where TANH saturates), so a wide input range cannot blow up
the polynomial; beyond ``|x| = 3`` erf is within 2.3e-5 of +-1, and the form gives ``tanh(5.76)``.
"""
from __future__ import annotations

import numpy as np

from converters.importers.onnx_ops.math_chain import Chain

#: where the input is clipped: ``|erf(x)|`` is within 2.3e-5 of 1 beyond it
ERF_CLIP = 3.0
#: ``atanh(erf(ERF_CLIP * t)) ~= t * (c0 + c1 t^2 + c2 t^4)`` for ``t`` in [-1, 1] (c0 up)
ERF_COEFFS = (3.3844162564706903, 2.8104885375361452, -0.4347879776050166)


def erf_reference(x: np.ndarray) -> np.ndarray:
    """The float function :func:`emit_erf` computes (for tests and documentation)."""
    t = np.clip(np.asarray(x, np.float64) / ERF_CLIP, -1.0, 1.0)
    s = t * t
    return np.tanh(t * (ERF_COEFFS[0] + s * (ERF_COEFFS[1] + s * ERF_COEFFS[2]))).astype(np.float32)


def emit_erf(ch: Chain, x: str, tag: str = "erf", last: bool = True) -> str:
    """``erf(x)`` for IR activation ``x``, into the node's output when ``last`` (else a fresh intermediate
    named after ``tag``); returns the tensor written."""
    t = ch.op("MUL", [x, 1.0 / ERF_CLIP], f"{tag}_clipped", act="RELU_N1_TO_1")
    u = ch.odd_poly(t, ERF_COEFFS, f"{tag}_arg")
    return ch.op("TANH", [u], tag, last=last)
