"""UNIDIRECTIONAL_SEQUENCE_LSTM (float), unrolled over its static sequence into FULLY_CONNECTED,
STRIDED_SLICE, LOGISTIC, TANH, MUL and ADD, as the ONNX importer does for LSTM.

Supported: the standard LSTM with an input gate, tanh activation, zero initial state, batch-major
or time-major; refused: CIFG, peepholes, projection, layer normalisation, clipping.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from converters.importers.tflite_ops.context import TFLiteContext

TANH = 4  # ActivationFunctionType.TANH


def optional_weight(ctx: TFLiteContext, op: Any, k: int) -> Optional[np.ndarray]:
    """Constant input ``k`` of ``op`` as float32; None when the op leaves it out."""
    if len(op.inputs) <= k or op.inputs[k] < 0:
        return None
    return np.asarray(ctx.value(op, k), np.float32)


def time_step(ctx: TFLiteContext, op: Any, x: str, shape: tuple[int, ...], t: int, time_major: bool, out: str,
              ) -> str:
    """Step ``t`` of the 3-D sequence ``x`` (time on axis 0 if ``time_major``, else 1) as a ``[batch, size]``
    tensor: a STRIDED_SLICE and a RESHAPE."""
    axis = 0 if time_major else 1
    begin, end = [0, 0, 0], list(shape)
    begin[axis], end[axis] = t, t + 1
    sl_shape = list(shape)
    sl_shape[axis] = 1
    xs = ctx.emit(op, "STRIDED_SLICE", [x], ctx.tmp(f"{out}/x{t}", tuple(sl_shape)),
                  {"begin": tuple(begin), "end": tuple(end), "strides": (1, 1, 1)})
    batch, size = shape[1 - axis], shape[2]
    return ctx.emit(op, "RESHAPE", [xs], ctx.tmp(f"{out}/x{t}r", (batch, size)))


def lstm(ctx: TFLiteContext, op: Any) -> None:
    """UNIDIRECTIONAL_SEQUENCE_LSTM -> unrolled int8-friendly ops."""
    w = [optional_weight(ctx, op, k) for k in range(1, 5)]  # input, forget, cell, output [H, I]
    r = [optional_weight(ctx, op, k) for k in range(5, 9)]
    if any(v is None for v in w + r):
        raise ctx.err(op, "CIFG LSTMs (no input gate) are not supported")
    if any(optional_weight(ctx, op, k) is not None for k in (9, 10, 11, 16, 17, 20, 21, 22, 23)):
        raise ctx.err(op, "peephole, projection and layer-norm LSTMs are not supported")
    if int(ctx.option(op, 0, "b", TANH)) != TANH:
        raise ctx.err(op, "only the tanh cell activation is supported")
    if float(ctx.option(op, 1, "f", 0.0)) or float(ctx.option(op, 2, "f", 0.0)):
        raise ctx.err(op, "cell/projection clipping is not supported")
    for k in (18, 19):
        state = ctx.tensors[ctx.name(op.inputs[k])]
        if state.data is not None and np.any(state.data != 0):
            raise ctx.err(op, "a non-zero initial state is not supported")
    b = [optional_weight(ctx, op, k) for k in range(12, 16)]
    hidden = w[0].shape[0]
    b = [np.zeros(hidden, np.float32) if v is None else v for v in b]
    unroll_lstm(ctx, op, ctx.act_in(op, 0), w, r, b, bool(ctx.option(op, 3, "b", False)), ctx.name(op.outputs[0]))


def unroll_lstm(ctx: TFLiteContext, op: Any, x: str, w: list[np.ndarray], r: list[np.ndarray], b: list[np.ndarray],
                time_major: bool, out: str, reverse: bool = False) -> None:
    """One LSTM direction over ``x`` (``[batch, time, size]`` or time-major), zero initial state, into ``out``:
    ``w``/``r``/``b`` are the input, forget, cell and output gates' input weights ``[H, I]``, recurrent weights
    ``[H, H]`` and biases ``[H]``; ``reverse`` runs the sequence from its last step (outputs stay in time
    order)."""
    hidden = w[0].shape[0]
    shape = ctx.shape(x)
    seq, batch, size = (shape[0], shape[1], shape[2]) if time_major else (shape[1], shape[0], shape[2])
    wx, rx, bias = np.concatenate(w), np.concatenate(r), np.concatenate(b)
    wname, rname = ctx.add_const(f"{out}/w", wx), ctx.add_const(f"{out}/r", rx)  # shared by every step
    step_shape = (batch, hidden)
    h: Optional[str] = None
    c: Optional[str] = None
    outs = []
    for t in (reversed(range(seq)) if reverse else range(seq)):
        xt = time_step(ctx, op, x, shape, t, time_major, out)
        # biases are per step: their int32 scale depends on each step's input scale
        xw = ctx.emit(op, "FULLY_CONNECTED", [xt, wname, ctx.add_const(f"{out}/b{t}", bias)],
                      ctx.tmp(f"{out}/xw{t}", (batch, 4 * hidden)), {"act": "NONE"})
        hw = None if h is None else ctx.emit(op, "FULLY_CONNECTED", [h, rname, ctx.add_const(
            f"{out}/rb{t}", np.zeros_like(bias))], ctx.tmp(f"{out}/hw{t}", (batch, 4 * hidden)), {"act": "NONE"})
        gates = []
        for k, fn in enumerate(("LOGISTIC", "LOGISTIC", "TANH", "LOGISTIC")):  # input, forget, cell, output
            parts = [ctx.emit(op, "STRIDED_SLICE", [src], ctx.tmp(f"{out}/g{k}_{t}", step_shape),
                              {"begin": (0, k * hidden), "end": (batch, (k + 1) * hidden), "strides": (1, 1)})
                     for src in ([xw] + ([hw] if hw else []))]
            pre = parts[0] if len(parts) == 1 else ctx.emit(op, "ADD", parts, ctx.tmp(f"{out}/p{k}_{t}", step_shape),
                                                            {"act": "NONE"})
            gates.append(ctx.emit(op, fn, [pre], ctx.tmp(f"{out}/a{k}_{t}", step_shape)))
        i, f, g, o = gates
        ig = ctx.emit(op, "MUL", [i, g], ctx.tmp(f"{out}/ig{t}", step_shape), {"act": "NONE"})
        if c is not None:
            fc = ctx.emit(op, "MUL", [f, c], ctx.tmp(f"{out}/fc{t}", step_shape), {"act": "NONE"})
            ig = ctx.emit(op, "ADD", [fc, ig], ctx.tmp(f"{out}/c{t}", step_shape), {"act": "NONE"})
        c = ig
        tc = ctx.emit(op, "TANH", [c], ctx.tmp(f"{out}/tc{t}", step_shape))
        h = ctx.emit(op, "MUL", [o, tc], ctx.tmp(f"{out}/h{t}", step_shape), {"act": "NONE"})
        piece = (1, batch, hidden) if time_major else (batch, 1, hidden)
        outs.append(ctx.emit(op, "RESHAPE", [h], ctx.tmp(f"{out}/y{t}", piece)))
    if reverse:
        outs.reverse()
    if len(outs) == 1:
        ctx.emit(op, "RESHAPE", outs, out)
    else:
        ctx.emit(op, "CONCATENATION", outs, out, {"axis": 0 if time_major else 1, "act": "NONE"})


REGISTRY = {"UNIDIRECTIONAL_SEQUENCE_LSTM": lstm}
