"""Pow with a constant exponent that is not one of the single-op cases of
:func:`converters.importers.onnx_ops.elementwise.pow_` (a scalar such as 1.7 or 4, or one exponent per element):

- **integer exponents in [0, MAX_PRODUCT_EXPONENT]**: the powers ``x, x^2, ..., x^kmax`` as a chain of MULs
  (exact for negative bases and 0), each exponent's power kept where the exponent array has it (a MUL by a
  0/1 constant mask) and the terms added; an exponent of 0 adds a constant 1 where it appears;
- **any other exponents**: ``exp(e * log(max(|x|, MIN_BASE)))`` (LOG, MUL, EXP). Where an exponent is an odd
  integer, the sign of a negative base is put back (LESS + SELECT_V2); a negative base under a non-integer
  exponent (NaN in ONNX; int8 has none) gives ``|x|^e``. Bases below :data:`MIN_BASE` count as
  :data:`MIN_BASE`, which keeps LOG's int8 input away from 0 (log 0 is -inf, which no runtime quantizes the
  same way) and LOG's output range short (``log(MIN_BASE) = -4.85``); for a positive exponent, bases below it
  take the line from ``0^e = 0`` to ``MIN_BASE^e`` (LESS, MUL, SELECT_V2), so ``0^0.4`` is 0, not 0.14.
  int8 keeps each value to about ``e`` times one int8 step of the LOG output, relative.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from converters.importers.onnx_ops.context import ImportContext, const_to_ir
from converters.importers.onnx_ops.math_chain import Chain

#: largest integer exponent computed as a chain of MULs
MAX_PRODUCT_EXPONENT = 8
#: smallest base magnitude the exp/log form takes the log of
MIN_BASE = 1.0 / 128.0


def emit_pow(ctx: ImportContext, node: Any, e: np.ndarray) -> None:
    """``x ** e`` for the node's first input ``x`` and the constant exponent array ``e`` (ONNX layout,
    broadcasting with ``x``) into the node's output."""
    src = tuple(ctx.src_shape(node, node.input[0]))
    rank = len(ctx.src_shape(node, node.output[0]))
    try:
        np.broadcast_shapes(src, e.shape)
    except ValueError:
        raise ctx.err(node, f"Pow exponent of shape {e.shape} does not broadcast to the input {src}") from None
    if not np.all(np.isfinite(e)):
        raise ctx.err(node, "Pow exponent holds inf or NaN")
    x = ctx.lift(node, ctx.act(node, node.input[0]), src, rank)
    ch = Chain(ctx, node, x)
    integer = bool(np.all(e == np.round(e)))
    if integer and e.min() >= 0 and e.max() <= MAX_PRODUCT_EXPONENT:
        if e.max() == 0:
            raise ctx.err(node, "Pow with exponent 0 everywhere is the constant 1; constant folding should remove it")
        _products(ch, e, rank)
    else:
        _exp_log(ch, e, rank)


def _mask(ch: Chain, where: np.ndarray, rank: int, tag: str) -> str:
    """A 0/1 float constant (IR layout) that is 1 where ``where`` holds."""
    return ch.ctx.add_const(f"{ch.out}/{tag}", const_to_ir(where.astype(np.float32), rank))


def _products(ch: Chain, e: np.ndarray, rank: int) -> None:
    """Integer exponents in [0, MAX_PRODUCT_EXPONENT]: powers by repeated MUL, selected by masks."""
    ks = sorted(int(k) for k in np.unique(e) if k > 0)
    kmax = ks[-1]
    uniform = e.size == 1
    powers = {1: ch.x}
    for k in range(2, kmax + 1):
        powers[k] = ch.op("MUL", [powers[k - 1], ch.x], f"power{k}", last=uniform and k == kmax)
    if uniform:
        if kmax == 1:  # x ** 1 as a one-element exponent array of another shape: a copy
            ch.op("MUL", [ch.x, 1.0], last=True)
        return
    has_zero = bool(np.any(e == 0))
    total = None
    for j, k in enumerate(ks):
        last = j == len(ks) - 1 and not has_zero
        term = ch.op("MUL", [powers[k], _mask(ch, e == k, rank, f"mask{k}")], f"term{k}",
                     last=last and total is None)
        if total is not None:
            term = ch.op("ADD", [total, term], f"sum{k}", last=last)
        total = term
    if has_zero:
        ch.op("ADD", [total, _mask(ch, e == 0, rank, "ones")], last=True)


def _exp_log(ch: Chain, e: np.ndarray, rank: int) -> None:
    """``exp(e * log(max(|x|, MIN_BASE)))``, with the sign of negative bases under odd integer exponents."""
    ab = ch.op("ABS", [ch.x], "abs")
    lg = ch.op("LOG", [ch.op("MAXIMUM", [ab, MIN_BASE], "base")], "log")
    exponent = float(e.reshape(-1)[0]) if e.size == 1 else ch.ctx.add_const(f"{ch.out}/exponent",
                                                                             const_to_ir(e.astype(np.float32), rank))
    odd = (e == np.round(e)) & (np.abs(np.round(e)) % 2 == 1)
    positive = e > 0
    mag = ch.op("EXP", [ch.op("MUL", [lg, exponent], "scaled_log")], "magnitude",
                last=not odd.any() and not positive.any())
    if positive.any():  # below MIN_BASE, a line from 0 (0^e = 0) to MIN_BASE^e instead of the constant MIN_BASE^e
        slope = np.where(positive, MIN_BASE ** (e - 1.0), 0.0)
        limit = np.where(positive, MIN_BASE, 0.0)
        const = (lambda v, tag: float(v.reshape(-1)[0]) if v.size == 1 else
                 ch.ctx.add_const(f"{ch.out}/{tag}", const_to_ir(v.astype(np.float32), rank)))
        lim = const(limit, "small_limit")
        small = ch.op("LESS", [ab, lim], "small")
        # clipped first: int8 SELECT_V2 shares one scale between its choices, so the line must stay in mag's range
        line = ch.op("MUL", [ch.op("MINIMUM", [ab, lim], "small_base"), const(slope, "small_slope")], "small_line")
        mag = ch.op("SELECT_V2", [small, line, mag], "near_zero", last=not odd.any())
    if not odd.any():
        return
    signed = ch.x if odd.all() else ch.op("MUL", [ch.x, _mask(ch, odd, rank, "odd")], "odd_base")
    neg = ch.op("LESS", [signed, 0.0], "negative")
    ch.op("SELECT_V2", [neg, ch.op("MUL", [mag, -1.0], "negated"), mag], last=True)
