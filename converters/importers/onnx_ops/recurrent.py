"""LSTM, GRU and RNN, unrolled over the (static) sequence into FULLY_CONNECTED, LOGISTIC, TANH, MUL and ADD.

TFLite Micro's UNIDIRECTIONAL_SEQUENCE_LSTM needs int16 cell state and its own quantization
recipe; the unrolled form uses only int8 kernels every runtime has, so it is used for all targets.
Every op of the recurrence carries :data:`RECURRENCE_ATTR`, so the default precision policy
(:mod:`converters.quality.default_precision`) can run it in 16x8, as TFLite Micro's integer LSTM keeps
its gates and cell state in int16.
Supported: forward, reverse and bidirectional; default activations; zero, constant or run-time
initial state (``initial_h``/``initial_c`` computed in the graph, e.g. from an encoder); LSTM peepholes (``P``: the
cell state times the per-unit weights, added to the i/f/o pre-activations); no clipping or ``input_forget``;
``layout=0`` (sequence first) or 1.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from converters.importers.onnx_ops.context import ImportContext

#: Attribute set on every op of an unrolled recurrence (the gate projections and nonlinearities, the cell
#: and hidden state updates), ``LSTM`` or ``GRU``: :mod:`converters.quality.default_precision` keeps them
#: in int16 as TFLite Micro's integer LSTM does. Writers ignore it.
RECURRENCE_ATTR = "recurrence"


def _check(ctx: ImportContext, node: Any, a: dict, n_gates: int) -> None:
    acts = [(x.decode() if isinstance(x, bytes) else x).lower() for x in a.get("activations", [])]
    default = {4: ["sigmoid", "tanh", "tanh"], 3: ["sigmoid", "tanh"], 1: ["tanh"]}[n_gates]
    if acts and acts != default * (len(acts) // len(default)):
        raise ctx.err(node, f"activations {acts} are not supported (only the defaults {default})")
    if a.get("clip") is not None:
        raise ctx.err(node, "cell clipping is not supported")
    if a.get("input_forget", 0):
        raise ctx.err(node, "input_forget=1 is not supported")


def _step_input(ctx: ImportContext, node: Any, x: str, t: int, layout: int, batch: int, size: int) -> str:
    """Rows of time step ``t`` as ``[batch, size]``."""
    shape = ctx.ir_shape(x)
    begin = [0, 0, 0]
    end = list(shape)
    axis = 0 if layout == 0 else 1
    begin[axis], end[axis] = t, t + 1
    step_shape = list(shape)
    step_shape[axis] = 1
    s = ctx.emit("STRIDED_SLICE", [x], ctx.tmp(f"{node.output[0] or node.name}/x{t}", tuple(step_shape)),
                 {"begin": tuple(begin), "end": tuple(end), "strides": (1, 1, 1)}, node, shape=tuple(step_shape))
    return ctx.emit("RESHAPE", [s], ctx.tmp(f"{node.output[0] or node.name}/x{t}r", (batch, size)), {}, node,
                    shape=(batch, size))


class _Cell:
    """Emits one direction's recurrence step by step."""

    def __init__(self, ctx: ImportContext, node: Any, tag: str, batch: int, hidden: int) -> None:
        self.ctx, self.node, self.tag, self.batch, self.hidden = ctx, node, tag, batch, hidden
        self.shape = (batch, hidden)
        self.weights: dict[tuple, str] = {}

    def fc(self, x: str, w: np.ndarray, b: np.ndarray, name: str) -> str:
        """``x @ w.T + b``; the weights are one constant shared by every step, the bias one per step
        (its int32 scale follows each step's input scale)."""
        ctx = self.ctx
        shape = (self.batch, w.shape[0])
        key = (w.__array_interface__["data"][0], w.shape)
        if key not in self.weights:
            self.weights[key] = ctx.add_const(f"{self.tag}/{name}_w", w)
        return ctx.emit("FULLY_CONNECTED", [x, self.weights[key], ctx.add_const(f"{self.tag}/{name}_b", b)],
                        ctx.tmp(f"{self.tag}/{name}", shape), {"act": "NONE"}, self.node, shape=shape)

    def op(self, kind: str, ins: list[str], name: str, attrs: Optional[dict] = None) -> str:
        ctx = self.ctx
        return ctx.emit(kind, ins, ctx.tmp(f"{self.tag}/{name}", self.shape),
                        attrs if attrs is not None else ({"act": "NONE"} if kind in ("ADD", "MUL", "SUB") else {}),
                        self.node, shape=self.shape)

    def gate(self, xw: str, hw: Optional[str], k: int, name: str, fn: str, extra: Optional[str] = None) -> str:
        """Activation of gate ``k`` of the stacked pre-activations ``xw`` (+ ``hw``, + ``extra``: a peephole term)."""
        ctx, h = self.ctx, self.hidden
        parts = [] if extra is None else [extra]
        for src in [xw] + ([hw] if hw else []):
            parts.append(ctx.emit("STRIDED_SLICE", [src], ctx.tmp(f"{self.tag}/{name}_pre", self.shape),
                                  {"begin": (0, k * h), "end": (self.batch, (k + 1) * h), "strides": (1, 1)},
                                  self.node, shape=self.shape))
        pre = parts[0] if len(parts) == 1 else self.op("ADD", parts[-2:], f"{name}_sum")
        if len(parts) == 3:  # the peephole term last: ADD takes two inputs
            pre = self.op("ADD", [pre, parts[0]], f"{name}_peep")
        return self.op(fn, [pre], name)


def _const_or_none(ctx: ImportContext, node: Any, k: int) -> Optional[np.ndarray]:
    if len(node.input) > k and node.input[k]:
        return np.asarray(ctx.const(node, node.input[k]), np.float32)
    return None


def _state_or_none(ctx: ImportContext, node: Any, k: int) -> "np.ndarray | str | None":
    """Initial state input ``k`` (``initial_h``/``initial_c``): a constant array, the IR activation
    when it is computed at run time (a state a streaming model reads from its input), or None."""
    if len(node.input) <= k or not node.input[k]:
        return None
    if ctx.is_const(node.input[k]):
        return np.asarray(ctx.const(node, node.input[k]), np.float32)
    return ctx.act(node, node.input[k])


def _direction(state: np.ndarray, d: int, layout: int) -> np.ndarray:
    """Direction ``d`` of a constant state ``[dirs, batch, H]`` (``[batch, dirs, H]`` with layout 1)."""
    return state[d] if layout == 0 else state[:, d]


def _direction_state(ctx: ImportContext, node: Any, state: str, d: int, layout: int, batch: int, hidden: int,
                     tag: str) -> str:
    """Direction ``d`` of a run-time state ``[dirs, batch, H]`` (``[batch, dirs, H]`` with layout 1) as
    ``[batch, H]``."""
    shape = ctx.ir_shape(state)
    axis = 0 if layout == 0 else 1
    begin, end = [0, 0, 0], list(shape)
    begin[axis], end[axis] = d, d + 1
    part = tuple(1 if k == axis else s for k, s in enumerate(shape))
    s = ctx.emit("STRIDED_SLICE", [state], ctx.tmp(f"{tag}/slice", part),
                 {"begin": tuple(begin), "end": tuple(end), "strides": (1, 1, 1)}, node, shape=part)
    return ctx.emit("RESHAPE", [s], ctx.tmp(tag, (batch, hidden)), {}, node, shape=(batch, hidden))


def _recurrent(ctx: ImportContext, node: Any, a: dict, n_gates: int) -> None:
    _check(ctx, node, a, n_gates)
    x = ctx.act(node, node.input[0])
    w = np.asarray(ctx.const(node, node.input[1]), np.float32)  # [dirs, G*H, I]
    r = np.asarray(ctx.const(node, node.input[2]), np.float32)  # [dirs, G*H, H]
    dirs, _, hidden = r.shape
    b = _const_or_none(ctx, node, 3)
    b = np.zeros((dirs, 2 * n_gates * hidden), np.float32) if b is None else b
    if len(node.input) > 4 and node.input[4]:
        lens = np.asarray(ctx.const(node, node.input[4])).reshape(-1)
        layout_ = int(a.get("layout", 0))
        seq = ctx.src_shape(node, node.input[0])[0 if layout_ == 0 else 1]
        if np.any(lens != seq):
            raise ctx.err(node, "sequence_lens shorter than the sequence are not supported")
    if n_gates == 4 and len(node.input) > 7 and node.input[7]:
        peep = np.asarray(ctx.const(node, node.input[7]), np.float32)  # [dirs, 3H]: i, o, f
    else:
        peep = None
    layout = int(a.get("layout", 0))
    shape = ctx.src_shape(node, node.input[0])
    seq, batch, size = (shape[0], shape[1], shape[2]) if layout == 0 else (shape[1], shape[0], shape[2])
    h0 = _state_or_none(ctx, node, 5)
    c0 = _state_or_none(ctx, node, 6) if n_gates == 4 else None
    direction = a.get("direction", b"forward")
    direction = direction.decode() if isinstance(direction, bytes) else direction
    order = {"forward": [False], "reverse": [True], "bidirectional": [False, True]}[direction]
    steps_x = [_step_input(ctx, node, x, t, layout, batch, size) for t in range(seq)]
    outs_per_dir, last_h, last_c = [], [], []
    for d, backwards in enumerate(order):
        tag = f"{node.output[0] or node.name}/dir{d}"
        cell = _Cell(ctx, node, tag, batch, hidden)
        wb, rb = b[d, :n_gates * hidden], b[d, n_gates * hidden:]
        h: Optional[str] = None
        c: Optional[str] = None
        if isinstance(h0, str):
            h = _direction_state(ctx, node, h0, d, layout, batch, hidden, f"{tag}/h0")
        elif h0 is not None and np.any(_direction(h0, d, layout) != 0):
            h = ctx.add_const(f"{tag}/h0", _direction(h0, d, layout))
        if isinstance(c0, str):
            c = _direction_state(ctx, node, c0, d, layout, batch, hidden, f"{tag}/c0")
        elif c0 is not None and np.any(_direction(c0, d, layout) != 0):
            c = ctx.add_const(f"{tag}/c0", _direction(c0, d, layout))
        hs: list[str] = [""] * seq
        first = len(ctx.ops)
        for t in (range(seq - 1, -1, -1) if backwards else range(seq)):
            if n_gates == 4:
                h, c = _lstm_step(ctx, cell, steps_x[t], h, c, w[d], r[d], wb, rb, t,
                                  None if peep is None or not np.any(peep[d]) else peep[d])
            elif n_gates == 1:
                h = _rnn_step(ctx, cell, steps_x[t], h, w[d], r[d], wb, rb, t)
            else:
                h = _gru_step(ctx, cell, steps_x[t], h, w[d], r[d], wb, rb, t, int(a.get("linear_before_reset", 0)))
            hs[t] = h
        for op in ctx.ops[first:]:  # the recurrence (gates, cell and hidden state): see RECURRENCE_ATTR
            op.attrs[RECURRENCE_ATTR] = {4: "LSTM", 3: "GRU", 1: "RNN"}[n_gates]
        outs_per_dir.append(hs)
        last_h.append(h)
        last_c.append(c)
    _write_outputs(ctx, node, outs_per_dir, last_h, last_c, batch, hidden, layout)


def _lstm_step(ctx: ImportContext, cell: _Cell, xt: str, h: Optional[str], c: Optional[str], w: np.ndarray,
               r: np.ndarray, wb: np.ndarray, rb: np.ndarray, t: int,
               peep: Optional[np.ndarray] = None) -> tuple[str, str]:
    """One LSTM step (ONNX gate order i, o, f, c); a zero or constant state folds into the bias. ``peep``
    (``[3H]``: i, o, f) adds ``P_i * c`` and ``P_f * c`` (previous cell) to the i and f gates and ``P_o * c``
    (new cell) to the o gate."""
    hid = cell.hidden

    def peephole(k: int, state: Optional[str], name: str) -> Optional[str]:
        if peep is None or state is None or not np.any(peep[k * hid:(k + 1) * hid]):
            return None
        if ("peephole", k) not in cell.weights:  # one constant shared by every step
            part = peep[k * hid:(k + 1) * hid].reshape(1, hid)
            cell.weights[("peephole", k)] = ctx.add_const(f"{cell.tag}/p{k}", part)
        return cell.op("MUL", [state, cell.weights[("peephole", k)]], name)

    if h is None or ctx.tensors[h].is_constant:
        h_term = rb if h is None else ctx.tensors[h].data @ r.T + rb  # [batch, 4H] for a constant state
        if h_term.ndim == 2 and np.any(h_term != h_term[:1]):
            raise ctx.err(cell.node, "a constant initial state that differs between batch rows is not supported")
        xw, hw = cell.fc(xt, w, (wb + h_term.reshape(-1, wb.shape[-1])[0]).astype(np.float32), f"xw{t}"), None
    else:
        xw, hw = cell.fc(xt, w, wb, f"xw{t}"), cell.fc(h, r, rb, f"hw{t}")
    i = cell.gate(xw, hw, 0, f"i{t}", "LOGISTIC", peephole(0, c, f"pi{t}"))
    peep_o = peep is not None and np.any(peep[hid:2 * hid])
    o = None if peep_o else cell.gate(xw, hw, 1, f"o{t}", "LOGISTIC")  # (without a peephole: the same op order)
    f = cell.gate(xw, hw, 2, f"f{t}", "LOGISTIC", peephole(2, c, f"pf{t}"))
    g = cell.gate(xw, hw, 3, f"g{t}", "TANH")
    ig = cell.op("MUL", [i, g], f"ig{t}")
    c_new = ig if c is None else cell.op("ADD", [cell.op("MUL", [f, c], f"fc{t}"), ig], f"c{t}")
    if o is None:
        o = cell.gate(xw, hw, 1, f"o{t}", "LOGISTIC", peephole(1, c_new, f"po{t}"))
    h_new = cell.op("MUL", [o, cell.op("TANH", [c_new], f"tc{t}")], f"h{t}")
    return h_new, c_new


def _rnn_step(ctx: ImportContext, cell: _Cell, xt: str, h: Optional[str], w: np.ndarray, r: np.ndarray,
              wb: np.ndarray, rb: np.ndarray, t: int) -> str:
    """One simple RNN step, ``tanh(x W^T + h R^T + Wb + Rb)``; a zero or constant state folds into the bias."""
    if h is None or ctx.tensors[h].is_constant:
        h_term = rb if h is None else ctx.tensors[h].data @ r.T + rb
        if h_term.ndim == 2 and np.any(h_term != h_term[:1]):
            raise ctx.err(cell.node, "a constant initial state that differs between batch rows is not supported")
        pre = cell.fc(xt, w, (wb + h_term.reshape(-1, wb.shape[-1])[0]).astype(np.float32), f"xw{t}")
    else:
        pre = cell.op("ADD", [cell.fc(xt, w, wb, f"xw{t}"), cell.fc(h, r, rb, f"hw{t}")], f"pre{t}")
    return cell.op("TANH", [pre], f"h{t}")


def _gru_step(ctx: ImportContext, cell: _Cell, xt: str, h: Optional[str], w: np.ndarray, r: np.ndarray,
              wb: np.ndarray, rb: np.ndarray, t: int, linear_before_reset: int) -> str:
    """One GRU step (ONNX gate order z, r, h); a zero initial state folds into the bias."""
    hid = cell.hidden
    if h is not None and ctx.tensors[h].is_constant:
        raise ctx.err(cell.node, "a non-zero constant initial GRU state is not supported; start from zeros")
    rb_zr, rb_n = rb[:2 * hid], rb[2 * hid:]
    if h is None:
        n_bias = wb[2 * hid:] + (0 if linear_before_reset else rb_n)
        xw = cell.fc(xt, w, np.concatenate([wb[:2 * hid] + rb_zr, n_bias]).astype(np.float32), f"xw{t}")
        hzr = None
    else:
        xw = cell.fc(xt, w, wb, f"xw{t}")
        hzr = cell.fc(h, r[:2 * hid], rb_zr, f"hzr{t}")
    z = cell.gate(xw, hzr, 0, f"z{t}", "LOGISTIC")
    rg = cell.gate(xw, hzr, 1, f"r{t}", "LOGISTIC")
    xn = ctx.emit("STRIDED_SLICE", [xw], ctx.tmp(f"{cell.tag}/xn{t}", cell.shape),
                  {"begin": (0, 2 * hid), "end": (cell.batch, 3 * hid), "strides": (1, 1)}, cell.node,
                  shape=cell.shape)
    if h is None:
        pre = (cell.op("ADD", [xn, cell.op("MUL", [rg, ctx.add_const(f"{cell.tag}/rbn", rb_n)], f"rh{t}")],
                       f"npre{t}") if linear_before_reset else xn)
    elif linear_before_reset:
        pre = cell.op("ADD", [xn, cell.op("MUL", [rg, cell.fc(h, r[2 * hid:], rb_n, f"hn{t}")], f"rh{t}")],
                      f"npre{t}")
    else:
        pre = cell.op("ADD", [xn, cell.fc(cell.op("MUL", [rg, h], f"rhh{t}"), r[2 * hid:], rb_n, f"rh{t}")],
                      f"npre{t}")
    n = cell.op("TANH", [pre], f"n{t}")
    if h is None:  # h = (1 - z) * n
        return cell.op("SUB", [n, cell.op("MUL", [z, n], f"zn{t}")], f"h{t}")
    return cell.op("ADD", [n, cell.op("MUL", [z, cell.op("SUB", [h, n], f"hmn{t}")], f"zd{t}")], f"h{t}")


def _write_outputs(ctx: ImportContext, node: Any, outs: list[list[str]], last_h: list[str],
                   last_c: list[Optional[str]], batch: int, hidden: int, layout: int) -> None:
    """Y [seq, dirs, batch, H] (layout 0), Y_h and Y_c [dirs, batch, H]."""
    seq, dirs = len(outs[0]), len(outs)
    names = list(node.output) + [""] * (3 - len(node.output))
    if names[0]:
        pieces = []
        for t in range(seq):
            for d in range(dirs):
                piece_shape = (1, 1, batch, hidden) if layout == 0 else (batch, 1, 1, hidden)
                pieces.append(ctx.emit("RESHAPE", [outs[d][t]], ctx.tmp(f"{names[0]}/y{t}_{d}", piece_shape), {},
                                       node, shape=piece_shape))
        src = (seq, dirs, batch, hidden) if layout == 0 else (batch, seq, dirs, hidden)
        if layout == 0:  # per step, the directions side by side on axis 1; then the steps on axis 0
            per_t = [ctx.emit("CONCATENATION", pieces[t * dirs:(t + 1) * dirs],
                              ctx.tmp(f"{names[0]}/t{t}", (1, dirs, batch, hidden)), {"axis": 1, "act": "NONE"},
                              node, shape=(1, dirs, batch, hidden)) if dirs > 1 else pieces[t] for t in range(seq)]
            cat = ctx.emit("CONCATENATION", per_t, ctx.tmp(f"{names[0]}/src", src), {"axis": 0, "act": "NONE"},
                           node, shape=src)
        else:
            per_t = [ctx.emit("CONCATENATION", pieces[t * dirs:(t + 1) * dirs],
                              ctx.tmp(f"{names[0]}/t{t}", (batch, 1, dirs, hidden)), {"axis": 2, "act": "NONE"},
                              node, shape=(batch, 1, dirs, hidden)) if dirs > 1 else pieces[t] for t in range(seq)]
            cat = ctx.emit("CONCATENATION", per_t, ctx.tmp(f"{names[0]}/src", src), {"axis": 1, "act": "NONE"},
                           node, shape=src)
        ctx.from_src(cat, names[0], node)
    for k, states in ((1, last_h), (2, last_c)):
        if not names[k]:
            continue
        if any(s is None for s in states):
            raise ctx.err(node, "the final cell state of an empty sequence is not supported")
        shape = (dirs, batch, hidden) if layout == 0 else (batch, dirs, hidden)
        pieces = [ctx.emit("RESHAPE", [s], ctx.tmp(f"{names[k]}/d{d}", (1, batch, hidden) if layout == 0
                                                   else (batch, 1, hidden)), {}, node,
                           shape=(1, batch, hidden) if layout == 0 else (batch, 1, hidden))
                  for d, s in enumerate(states)]
        if len(pieces) == 1:
            ctx.emit("RESHAPE", pieces, names[k], {}, node, shape=shape)
        else:
            ctx.emit("CONCATENATION", pieces, names[k], {"axis": 0 if layout == 0 else 1, "act": "NONE"}, node,
                     shape=shape)


def lstm(ctx: ImportContext, node: Any, a: dict) -> None:
    """LSTM, unrolled."""
    _recurrent(ctx, node, a, 4)


def gru(ctx: ImportContext, node: Any, a: dict) -> None:
    """GRU, unrolled."""
    _recurrent(ctx, node, a, 3)


def rnn(ctx: ImportContext, node: Any, a: dict) -> None:
    """RNN (Elman, tanh), unrolled."""
    _recurrent(ctx, node, a, 1)


REGISTRY = {"LSTM": lstm, "GRU": gru, "RNN": rnn}
