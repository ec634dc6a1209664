"""Sequence RNNs unrolled over their static sequence, as UNIDIRECTIONAL_SEQUENCE_LSTM is (``recurrent``):
UNIDIRECTIONAL_SEQUENCE_RNN (FULLY_CONNECTED, ADD and the activation per step) and
BIDIRECTIONAL_SEQUENCE_LSTM (two :func:`~converters.importers.tflite_ops.recurrent.unroll_lstm` directions,
the backward one from the last step, concatenated on the features when merged). Each invocation starts
from a zero state, as the LSTM import does.

SVDF with a memory longer than 1 keeps its past between invocations and is refused in one line (so is
RNN, one step whose hidden state does, by not being registered); SVDF with memory 1 holds no past: it is
one FULLY_CONNECTED whose weights fold the feature and time weights and the rank sum.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from converters.importers.tflite_ops.context import ACT, TFLiteContext
from converters.importers.tflite_ops.recurrent import (
    TANH,
    optional_weight,
    time_step,
    unroll_lstm,
)

STATEFUL = ("its state is a variable tensor carried from one invocation to the next; stateful ops are not "
            "supported")


def _zero_state(ctx: TFLiteContext, op: Any, ks: tuple[int, ...]) -> None:
    for k in ks:
        if len(op.inputs) <= k or op.inputs[k] < 0:
            continue
        state = ctx.tensors[ctx.name(op.inputs[k])]
        if state.data is not None and np.any(state.data != 0):
            raise ctx.err(op, "a non-zero initial state is not supported")


def _activation(ctx: TFLiteContext, op: Any, code: int) -> str:
    if code == TANH:
        return "TANH"
    if code not in ACT:
        raise ctx.err(op, f"fused activation code {code} is not supported")
    return ACT[code]


def sequence_rnn(ctx: TFLiteContext, op: Any) -> None:
    """UNIDIRECTIONAL_SEQUENCE_RNN(x, W [H, I], R [H, H], b [H], state): ``h_t = act(x_t W' + h_{t-1} R' + b)``."""
    w, r, b = (optional_weight(ctx, op, k) for k in (1, 2, 3))
    if w is None or r is None or b is None:
        raise ctx.err(op, "input weights, recurrent weights and bias are required")
    _zero_state(ctx, op, (4,))
    time_major = bool(ctx.option(op, 0, "b", False))
    act = _activation(ctx, op, int(ctx.option(op, 1, "b", 0)))
    x, out = ctx.act_in(op, 0), ctx.name(op.outputs[0])
    shape = ctx.shape(x)
    if len(shape) != 3:
        raise ctx.err(op, f"input of rank {len(shape)}; [batch, time, features] (or time-major) is required")
    seq, batch, size = (shape[0], shape[1], shape[2]) if time_major else (shape[1], shape[0], shape[2])
    hidden = w.shape[0]
    wname, rname = ctx.add_const(f"{out}/w", w), ctx.add_const(f"{out}/r", r)
    step = (batch, hidden)
    fused = act if act != "TANH" else "NONE"
    h: Optional[str] = None
    outs = []
    for t in range(seq):
        xt = time_step(ctx, op, x, shape, t, time_major, out)
        xw = ctx.emit(op, "FULLY_CONNECTED", [xt, wname, ctx.add_const(f"{out}/b{t}", b)],
                      ctx.tmp(f"{out}/xw{t}", step), {"act": fused if h is None else "NONE"})
        if h is None:
            pre = xw
        else:
            hw = ctx.emit(op, "FULLY_CONNECTED", [h, rname, ctx.add_const(f"{out}/rb{t}", np.zeros(hidden))],
                          ctx.tmp(f"{out}/hw{t}", step), {"act": "NONE"})
            pre = ctx.emit(op, "ADD", [xw, hw], ctx.tmp(f"{out}/pre{t}", step), {"act": fused})
        h = ctx.emit(op, "TANH", [pre], ctx.tmp(f"{out}/h{t}", step)) if act == "TANH" else pre
        piece = (1, batch, hidden) if time_major else (batch, 1, hidden)
        outs.append(ctx.emit(op, "RESHAPE", [h], ctx.tmp(f"{out}/y{t}", piece)))
    if len(outs) == 1:
        ctx.emit(op, "RESHAPE", outs, out)
    else:
        ctx.emit(op, "CONCATENATION", outs, out, {"axis": 0 if time_major else 1, "act": "NONE"})


def _direction(ctx: TFLiteContext, op: Any, first: int) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """One direction's gate weights from input ``first`` on (4 input, 4 recurrent, 3 peephole, 4 bias, 2 projection)."""
    w = [optional_weight(ctx, op, first + k) for k in range(4)]
    r = [optional_weight(ctx, op, first + 4 + k) for k in range(4)]
    if any(v is None for v in w + r):
        raise ctx.err(op, "CIFG LSTMs (no input gate) are not supported")
    if any(optional_weight(ctx, op, first + k) is not None for k in (8, 9, 10, 15, 16)):
        raise ctx.err(op, "peephole and projection LSTMs are not supported")
    hidden = w[0].shape[0]  # type: ignore[union-attr]
    b = [optional_weight(ctx, op, first + 11 + k) for k in range(4)]
    return w, r, [np.zeros(hidden, np.float32) if v is None else v for v in b]  # type: ignore[return-value]


def bidirectional_lstm(ctx: TFLiteContext, op: Any) -> None:
    """BIDIRECTIONAL_SEQUENCE_LSTM without auxiliary input: forward and backward LSTMs (zero initial states)."""
    if int(ctx.option(op, 0, "b", TANH)) != TANH:
        raise ctx.err(op, "only the tanh cell activation is supported")
    if float(ctx.option(op, 1, "f", 0.0)) or float(ctx.option(op, 2, "f", 0.0)):
        raise ctx.err(op, "cell/projection clipping is not supported")
    if any(optional_weight(ctx, op, k) is not None for k in range(40, 48)) or (len(op.inputs) > 39 and op.inputs[39] >= 0):
        raise ctx.err(op, "an auxiliary input is not supported")
    _zero_state(ctx, op, (35, 36, 37, 38))
    merge = bool(ctx.option(op, 3, "b", False))
    time_major = bool(ctx.option(op, 4, "b", True))
    x = ctx.act_in(op, 0)
    fw, bw = _direction(ctx, op, 1), _direction(ctx, op, 18)
    outs = [ctx.name(o) for o in op.outputs]
    if merge:
        out = outs[0]
        full = ctx.shape(out)
        half = tuple(full[:-1]) + (fw[0][0].shape[0],)
        hb = tuple(full[:-1]) + (bw[0][0].shape[0],)
        f = ctx.tmp(f"{out}/forward", half)
        bk = ctx.tmp(f"{out}/backward", hb)
        unroll_lstm(ctx, op, x, *fw, time_major, f)
        unroll_lstm(ctx, op, x, *bw, time_major, bk, reverse=True)
        ctx.emit(op, "CONCATENATION", [f, bk], out, {"axis": 2, "act": "NONE"})
        return
    if len(outs) != 2:
        raise ctx.err(op, f"{len(outs)} outputs without merge_outputs; the forward and backward outputs are expected")
    unroll_lstm(ctx, op, x, *fw, time_major, outs[0])
    unroll_lstm(ctx, op, x, *bw, time_major, outs[1], reverse=True)


def svdf(ctx: TFLiteContext, op: Any) -> None:
    """SVDF with memory size 1: FULLY_CONNECTED with ``W[u] = sum_r wf[u*rank + r] * wt[u*rank + r, 0]``."""
    wf, wt = optional_weight(ctx, op, 1), optional_weight(ctx, op, 2)
    if wf is None or wt is None:
        raise ctx.err(op, "feature and time weights are required")
    rank = int(ctx.option(op, 0, "i", 0))
    filters, memory = wt.shape
    if memory != 1:
        raise ctx.err(op, f"memory size {memory}: {STATEFUL} (memory size 1 is)")
    if rank < 1 or filters % rank or wf.shape[0] != filters:
        raise ctx.err(op, f"rank {rank} does not divide the {filters} filters")
    _zero_state(ctx, op, (4,))
    units = filters // rank
    w = (wf * wt[:, :1]).reshape(units, rank, -1).sum(axis=1)
    b = optional_weight(ctx, op, 3)
    x, out = ctx.act_in(op, 0), ctx.name(op.outputs[0])
    act = _activation(ctx, op, int(ctx.option(op, 1, "b", 0)))
    bias = ctx.add_const(f"{out}/bias", np.zeros(units) if b is None else b)
    if act == "TANH":
        y = ctx.emit(op, "FULLY_CONNECTED", [x, ctx.add_const(f"{out}/weights", w), bias],
                     ctx.tmp(f"{out}/linear", ctx.shape(out)), {"act": "NONE"})
        ctx.emit(op, "TANH", [y], out)
        return
    ctx.emit(op, "FULLY_CONNECTED", [x, ctx.add_const(f"{out}/weights", w), bias], out, {"act": act})


REGISTRY = {"UNIDIRECTIONAL_SEQUENCE_RNN": sequence_rnn, "BIDIRECTIONAL_SEQUENCE_LSTM": bidirectional_lstm,
            "SVDF": svdf}
