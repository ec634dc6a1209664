"""Elementwise ops: arithmetic with broadcasting, activations, Clip, Pow (:mod:`.power` beyond one op), Erf
(:mod:`.erf` outside Gelu), and the Gelu/HardSwish patterns.

Patterns (recognised across nodes, because TFLite has one op for them):

- ``x * 0.5 * (1 + Erf(x / sqrt(2)))`` (torch's exact Gelu below opset 20), the tanh approximation
  ``x * 0.5 * (1 + Tanh(sqrt(2/pi) * (x + 0.044715 x^3)))`` and the Gelu op -> GELU's tanh form as
  int8 ops every runtime has (:mod:`converters.importers.onnx_ops.gelu`);
- ``x * HardSigmoid(x)`` with alpha 1/6, beta 1/2 (torch's Hardswish below opset 14) -> ``HARD_SWISH``;
- ``x / Sqrt(v)`` (LayerNorm decompositions) -> ``x * RSQRT(v)``; ``Reciprocal(Sqrt(v))`` -> ``RSQRT(v)``;
- ``Add`` of a per-channel constant right after MatMul/Gemm/Conv -> folded into the bias.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from converters.importers.onnx_ops.context import (
    ImportContext,
    Pending,
    const_to_ir,
    nhwc,
)
from converters.importers.onnx_ops.erf import emit_erf
from converters.importers.onnx_ops.gelu import expand_gelu
from converters.importers.onnx_ops.int_arith import integer_binary, integer_input, reads_integers
from converters.importers.onnx_ops.math_chain import Chain
from converters.importers.onnx_ops.power import emit_pow
from converters.ir import Op

BINARY = {"Add": "ADD", "Sub": "SUB", "Mul": "MUL", "Div": "DIV", "Max": "MAXIMUM", "Min": "MINIMUM"}
UNARY = {"Relu": "RELU", "Sigmoid": "LOGISTIC", "Exp": "EXP", "Log": "LOG", "Sqrt": "SQRT",
         "Abs": "ABS", "HardSwish": "HARD_SWISH"}


def _scalar(ctx: ImportContext, n: str) -> Optional[float]:
    """The value of ``n`` when it is a one-element constant."""
    if not n or not ctx.is_const(n):
        return None
    v = np.asarray(ctx.consts[ctx.name(n)])
    return float(v.reshape(-1)[0]) if v.size == 1 else None


def _out_rank(ctx: ImportContext, node: Any) -> int:
    return len(ctx.src_shape(node, node.output[0]))


def _fold_bias(ctx: ImportContext, node: Any) -> bool:
    """Add(MatMul/Gemm/Conv output, per-channel constant): fold into that op's bias."""
    ins = node.input
    if len(ins) != 2 or ctx.is_const(ins[0]) == ctx.is_const(ins[1]):
        return False
    act_in, c_in = (ins[1], ins[0]) if ctx.is_const(ins[0]) else (ins[0], ins[1])
    key = ctx.name(act_in)
    if key in ctx.pending or key not in ctx.tensors or ctx.uses.get(act_in, 0) != 1:
        return False
    prev = ctx.producer(key)
    hops: list[Op] = []
    while prev is not None and prev.kind == "RESHAPE" and ctx.consumers(prev.inputs[0]) == 1:
        before, after = ctx.ir_shape(prev.inputs[0]), ctx.ir_shape(prev.outputs[0])
        if not before or not after or before[-1] != after[-1]:  # (a 0-d result has no channel axis)
            return False
        hops.append(prev)
        prev = ctx.producer(prev.inputs[0])
    if prev is None or prev.kind not in ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV"):
        return False
    if prev.act != "NONE" or ctx.consumers(prev.outputs[0]) != (1 if hops else 0):
        return False
    c = np.asarray(ctx.consts[ctx.name(c_in)], np.float32)
    out_shape = ctx.src_shape(node, node.output[0])
    if tuple(np.broadcast_shapes(c.shape, ctx.src_shape(node, act_in))) != tuple(out_shape):
        return False
    cir = const_to_ir(c, len(out_shape))
    bias = ctx.tensors[prev.inputs[2]]
    if cir.size not in (1, bias.data.shape[0]) or (cir.size > 1 and cir.shape[-1] != cir.size):
        return False
    bias.data = (bias.data + cir.reshape(-1)).astype(np.float32)
    ctx.alias[node.output[0]] = key
    return True


def _gelu_step(ctx: ImportContext, node: Any) -> bool:
    """Advance the exact-Gelu pattern at an Add or Mul; True when this node was consumed by it."""
    t, ins = node.op_type, list(node.input)
    for k in (0, 1):
        pend = ctx.pending.get(ctx.name(ins[k]))
        if pend is None or pend.tag != "gelu":
            continue
        other = ins[1 - k]
        stage = pend.data["stage"]
        one = _scalar(ctx, other)
        if t in ("Add", "Sum") and stage == "erf" and one is not None and abs(one - 1) < 1e-6:
            ctx.pending[node.output[0]] = Pending(pend.desc, "gelu", pend.src, _plus_one(ctx, node, ins[k], other),
                                                  dict(pend.data, stage="erf+1"))
            return True
        if t == "Mul" and stage == "erf+1":
            factor = _gelu_factor(ctx, other, pend.src)
            c = _scalar(ctx, other)
            if factor is None and c is not None:  # (1 + erf) * c first, x later (torch's dynamo exporter)
                ctx.pending[node.output[0]] = Pending(pend.desc, "gelu", pend.src,
                                                      _times(ctx, node, ins[k], c, pend.materialize),
                                                      dict(pend.data, scale=pend.data.get("scale", 1.0) * c))
                return True
            if factor is None:
                return False
            factor *= pend.data.get("scale", 1.0)
            ctx.pending.pop(ctx.name(ins[k]), None)
            shape = ctx.ir_shape(pend.src)
            if factor == 1.0:
                _gelu(ctx, node, pend.src, node.output[0])
            else:
                g = _gelu(ctx, node, pend.src, ctx.tmp(f"{node.output[0]}/gelu", shape))
                ctx.emit("MUL", [g, ctx.add_const(f"{node.output[0]}/gelu_scale", np.array([factor]))],
                         node.output[0], {"act": "NONE"}, node, shape=shape)
            return True
    return False


def _gelu(ctx: ImportContext, node: Any, x: str, out: str) -> str:
    """GELU of ``x`` into ``out`` as int8 ops TFLite Micro runs (see :mod:`converters.importers.onnx_ops.gelu`)."""
    shape = ctx.ir_shape(x)

    def emit(kind: str, inputs: list[str], dst: str) -> str:
        return ctx.emit(kind, inputs, dst, {} if kind == "LOGISTIC" else {"act": "NONE"}, node, shape=shape)

    return expand_gelu(emit, lambda suffix: ctx.tmp(f"{out}/{suffix}", shape),
                       lambda suffix, v: ctx.add_const(f"{out}/{suffix}", np.array([v])), x, out)


def _plus_one(ctx: ImportContext, node: Any, inner: str, one: str) -> Optional[Any]:
    """For a deferred value that can be emitted on its own (Tanh), emitting ``inner + 1`` later."""
    pend = ctx.pending.get(ctx.name(inner))
    if pend is None or pend.materialize is None:
        return None

    def materialize() -> None:
        x = ctx.act(node, inner)  # emits the deferred Tanh
        ctx.emit("ADD", [x, ctx.add_const(f"{node.output[0]}/one", np.array([1.0]))], node.output[0],
                 {"act": "NONE"}, node)

    return materialize


def _times(ctx: ImportContext, node: Any, inner: str, c: float, inner_materialize: Optional[Any]) -> Optional[Any]:
    """For a deferred value that can be emitted on its own, emitting ``inner * c`` later (else None)."""
    if inner_materialize is None:
        return None

    def materialize() -> None:
        x = ctx.act(node, inner)  # emits the deferred value
        ctx.emit("MUL", [x, ctx.add_const(f"{node.output[0]}/scale", np.array([c]))], node.output[0],
                 {"act": "NONE"}, node)

    return materialize


def _gelu_factor(ctx: ImportContext, other: str, src: str) -> Optional[float]:
    """``x * (1 + erf)`` is ``2 * gelu``: the scale left over when ``other`` is ``x`` or ``x * c``."""
    key = ctx.name(other)
    if key == src:
        return 2.0
    prev = ctx.producer(key) if key in ctx.tensors else None
    if prev is not None and prev.kind == "MUL" and src in prev.inputs:
        c = [i for i in prev.inputs if ctx.tensors[i].is_constant]
        if c and ctx.tensors[c[0]].data.size == 1:
            return 2.0 * float(ctx.tensors[c[0]].data.reshape(-1)[0])
    return None


def binary(ctx: ImportContext, node: Any, a: dict) -> None:
    """Add/Sub/Mul/Div/Max/Min (two or more inputs for Max/Min/Sum) with numpy broadcasting."""
    t = node.op_type
    if reads_integers(ctx, node):  # int32 indices: int32 arithmetic, or one refusal line
        integer_binary(ctx, node, a)
        return
    ins = [i for i in node.input if i]
    if (t in ("Add", "Mul") or (t == "Sum" and len(ins) == 2)) and _gelu_step(ctx, node):
        return
    if t == "Mul" and _hardswish(ctx, node):
        return
    if t == "Add" and _fold_bias(ctx, node):
        return
    rank = _out_rank(ctx, node)
    if t == "Div" and _scalar(ctx, ins[1]) is not None:  # divide by a constant: multiply by its inverse
        inv = 1.0 / _scalar(ctx, ins[1])
        ctx.emit("MUL", [ctx.broadcast_operand(node, ins[0], rank), ctx.add_const(f"{node.output[0]}/inv",
                                                                              np.array([inv]))],
                 node.output[0], {"act": "NONE"}, node)
        return
    if t == "Div" and ctx.is_const(ins[1]):
        c = np.asarray(ctx.const(node, ins[1]), np.float32)
        ctx.emit("MUL", [ctx.broadcast_operand(node, ins[0], rank),
                         ctx.add_const(f"{node.output[0]}/inv", const_to_ir(1.0 / c, rank))],
                 node.output[0], {"act": "NONE"}, node)
        return
    if t == "Div" and not ctx.is_const(ins[1]) and ctx.name(ins[1]) in ctx.tensors:
        prev = ctx.producer(ctx.name(ins[1]))
        if prev is not None and prev.kind == "SQRT":  # x / sqrt(v) -> x * rsqrt(v)
            r = ctx.emit("RSQRT", [prev.inputs[0]], ctx.tmp(f"{node.output[0]}/rsqrt", ctx.ir_shape(prev.inputs[0])),
                         {}, node, shape=ctx.ir_shape(prev.inputs[0]))
            r = ctx.lift(node, r, ctx.src_shape(node, ins[1]), rank)
            ctx.emit("MUL", [ctx.broadcast_operand(node, ins[0], rank), r], node.output[0], {"act": "NONE"}, node)
            return
    if t in ("Max", "Min"):  # max(x, -inf) and min(x, +inf) are x (jax2tf's stabilised reductions)
        ident = -np.inf if t == "Max" else np.inf
        kept = [i for i in ins if not (ctx.is_const(i) and np.asarray(ctx.const(node, i)).size == 1
                                       and float(np.asarray(ctx.const(node, i)).reshape(-1)[0]) == ident)]
        if kept and len(kept) < len(ins):
            ins = kept
    kind = BINARY.get(t, "ADD")
    if len(ins) == 1:  # a one-input Sum/Max/Min/Mean
        ctx.transpose(ctx.act(node, ins[0]), tuple(range(len(ctx.ir_shape(ctx.name(ins[0]))))), node.output[0], node)
        return
    operands = [ctx.broadcast_operand(node, i, rank) for i in ins]
    if t == "Mean":
        summed = ctx.tmp(f"{node.output[0]}/sum", nhwc(ctx.src_shape(node, node.output[0])))
        _chain(ctx, node, "ADD", operands, summed)
        ctx.emit("MUL", [summed, ctx.add_const(f"{node.output[0]}/inv_n", np.array([1.0 / len(ins)]))],
                 node.output[0], {"act": "NONE"}, node)
        return
    if all(ctx.tensors[o].is_constant for o in operands):
        raise ctx.err(node, "operates on constants only; constant folding should have removed it")
    if kind == "SUB" and ctx.tensors[operands[1]].is_constant:  # x - c == x + (-c)
        c = operands[1]
        operands[1] = ctx.add_const(f"{node.output[0]}/neg", -ctx.tensors[c].data)
        kind = "ADD"
    _chain(ctx, node, kind, operands, node.output[0])


def _chain(ctx: ImportContext, node: Any, kind: str, operands: list[str], out: str) -> None:
    """``operands[0] kind operands[1] kind ...`` into ``out`` (two-input ops, left to right)."""
    cur = operands[0]
    for k, other in enumerate(operands[1:]):
        last = k == len(operands) - 2
        dst = out if last else ctx.tmp(f"{out}/partial", ctx.ir_shape(cur))
        if ctx.tensors[cur].is_constant and kind in ("ADD", "MUL", "MAXIMUM", "MINIMUM"):
            cur, other = other, cur  # put the activation first (TFLite kernels broadcast either way)
        shape = (None if last and out in ctx.shapes
                 else tuple(np.broadcast_shapes(ctx.tensors[cur].shape, ctx.tensors[other].shape)))
        cur = ctx.emit(kind, [cur, other], dst, {"act": "NONE"}, node, shape=shape)


def _hardswish(ctx: ImportContext, node: Any) -> bool:
    """``x * HardSigmoid(x)`` with the Hardswish constants -> HARD_SWISH."""
    ins = list(node.input)
    for k in (0, 1):
        pend = ctx.pending.get(ctx.name(ins[k]))
        if pend is None or pend.tag != "hardsigmoid":
            continue
        if ctx.name(ins[1 - k]) != pend.src:
            return False
        alpha, beta = pend.data["alpha"], pend.data["beta"]
        if abs(alpha - 1 / 6) > 1e-6 or abs(beta - 0.5) > 1e-6:
            return False
        del ctx.pending[ctx.name(ins[k])]
        ctx.emit("HARD_SWISH", [pend.src], node.output[0], {}, node)
        return True
    return False


def _refuse_integers(ctx: ImportContext, node: Any) -> None:
    """One refusal line for float math on int32 indices (a TopK/ArgMax position, an integer input)."""
    n = integer_input(ctx, node)
    if n is not None:
        raise ctx.err(node, f"{node.op_type} of the integer indices '{n}' is not supported; only Add, Sub, Mul, Div "
                            "and Mod convert on integer indices")


def unary(ctx: ImportContext, node: Any, a: dict) -> None:
    """One-input activations and math functions."""
    _refuse_integers(ctx, node)
    t = node.op_type
    x = ctx.act(node, node.input[0])
    out = node.output[0]
    if t == "Neg":
        ctx.emit("MUL", [x, ctx.add_const(f"{out}/minus_one", np.array([-1.0]))], out, {"act": "NONE"}, node)
    elif t == "Reciprocal":
        prev = ctx.producer(x)
        if prev is not None and prev.kind == "SQRT":  # 1 / sqrt(v) -> rsqrt(v), as x / Sqrt(v) (jax2tf LayerNorm)
            ctx.emit("RSQRT", [prev.inputs[0]], out, {}, node, shape=ctx.ir_shape(x))
            return
        ctx.emit("DIV", [ctx.add_const(f"{out}/one", np.array([1.0])), x], out, {"act": "NONE"}, node)
    elif t == "Gelu":  # both forms (approximate none/tanh) as the tanh form: see onnx_ops.gelu
        _gelu(ctx, node, x, out)
    elif t == "LeakyRelu":
        ctx.emit("LEAKY_RELU", [x], out, {"alpha": float(a.get("alpha", 0.01))}, node)
    elif t == "Elu":
        alpha = float(a.get("alpha", 1.0))
        if abs(alpha - 1.0) <= 1e-6:
            ctx.emit("ELU", [x], out, {}, node)
            return
        # alpha * (exp(x) - 1) below 0 = ELU(x) + (alpha - 1) * min(ELU(x), 0); x above 0 is left as it is
        shape = ctx.ir_shape(x)
        e = ctx.emit("ELU", [x], ctx.tmp(f"{out}/elu", shape), {}, node, shape=shape)
        neg = ctx.emit("MINIMUM", [e, ctx.add_const(f"{out}/zero", np.array([0.0]))], ctx.tmp(f"{out}/neg", shape),
                       {}, node, shape=shape)
        extra = ctx.emit("MUL", [neg, ctx.add_const(f"{out}/alpha_minus_one", np.array([alpha - 1.0]))],
                         ctx.tmp(f"{out}/extra", shape), {"act": "NONE"}, node, shape=shape)
        ctx.emit("ADD", [e, extra], out, {"act": "NONE"}, node)
    elif t in ("Softplus", "Mish"):
        # softplus(x) = relu(x) + log(1 + exp(-|x|)): every intermediate stays bounded (exp in (0, 1], log in
        # (0, ln 2]), so int8 keeps its resolution and float never overflows (log(1 + exp(x)) put e^max(x) in
        # the int8 range of EXP's output: test_mish on [-10, 10] lost every small value, 0 dB)
        shape = ctx.ir_shape(x)
        ab = ctx.emit("ABS", [x], ctx.tmp(f"{out}/abs", shape), {}, node, shape=shape)
        na = ctx.emit("MUL", [ab, ctx.add_const(f"{out}/minus_one", np.array([-1.0]))],
                      ctx.tmp(f"{out}/neg_abs", shape), {"act": "NONE"}, node, shape=shape)
        e = ctx.emit("EXP", [na], ctx.tmp(f"{out}/exp", shape), {}, node, shape=shape)
        e1 = ctx.emit("ADD", [e, ctx.add_const(f"{out}/one", np.array([1.0]))], ctx.tmp(f"{out}/exp1", shape),
                      {"act": "NONE"}, node, shape=shape)
        lg = ctx.emit("LOG", [e1], ctx.tmp(f"{out}/log1p", shape), {}, node, shape=shape)
        r = ctx.emit("RELU", [x], ctx.tmp(f"{out}/relu", shape), {}, node, shape=shape)
        if t == "Softplus":
            ctx.emit("ADD", [r, lg], out, {"act": "NONE"}, node)
            return
        sp = ctx.emit("ADD", [r, lg], ctx.tmp(f"{out}/softplus", shape), {"act": "NONE"}, node, shape=shape)
        th = ctx.emit("TANH", [sp], ctx.tmp(f"{out}/tanh", shape), {}, node, shape=shape)
        ctx.emit("MUL", [x, th], out, {"act": "NONE"}, node)
    else:
        ctx.emit(UNARY[t], [x], out, {}, node)


def erf(ctx: ImportContext, node: Any, a: dict) -> None:
    """Erf: deferred when it reads ``x / sqrt(2)`` (a following ``x * 0.5 * (1 + erf)`` becomes one GELU), else,
    and when that pattern does not follow, the standalone form of :mod:`converters.importers.onnx_ops.erf`."""
    _refuse_integers(ctx, node)
    key = ctx.name(node.input[0])
    prev = ctx.producer(key) if key in ctx.tensors else None
    src = None
    if prev is not None and prev.kind == "MUL":
        consts = [i for i in prev.inputs if ctx.tensors[i].is_constant]
        acts = [i for i in prev.inputs if not ctx.tensors[i].is_constant]
        if consts and acts and ctx.tensors[consts[0]].data.size == 1:
            if abs(float(ctx.tensors[consts[0]].data.reshape(-1)[0]) - 1 / np.sqrt(2)) < 1e-4:
                src = acts[0]
    x = ctx.act(node, node.input[0])

    def materialize() -> None:
        emit_erf(Chain(ctx, node, x), x)

    if src is None:
        materialize()
        return
    ctx.pending[node.output[0]] = Pending(f"Erf node '{node.name or node.output[0]}'", "gelu", src, materialize,
                                          {"stage": "erf"})


def _scaled_by(ctx: ImportContext, name: str, value: float) -> Optional[str]:
    """The activation ``a`` when IR tensor ``name`` is ``MUL(a, value)`` (value a one-element constant)."""
    prev = ctx.producer(name) if name in ctx.tensors else None
    if prev is None or prev.kind != "MUL":
        return None
    consts = [i for i in prev.inputs if ctx.tensors[i].is_constant]
    acts = [i for i in prev.inputs if not ctx.tensors[i].is_constant]
    if len(consts) != 1 or len(acts) != 1 or ctx.tensors[consts[0]].data.size != 1:
        return None
    return acts[0] if abs(float(ctx.tensors[consts[0]].data.reshape(-1)[0]) - value) < 1e-4 else None


def _gelu_tanh_source(ctx: ImportContext, name: str) -> Optional[str]:
    """``x`` when ``name`` is ``sqrt(2/pi) * (x + 0.044715 * x^3)`` (Gelu's tanh approximation)."""
    inner = _scaled_by(ctx, name, float(np.sqrt(2 / np.pi)))
    add = ctx.producer(inner) if inner is not None else None
    if add is None or add.kind != "ADD" or len(add.inputs) != 2:
        return None
    for x, cubed_scaled in (add.inputs, add.inputs[::-1]):
        cube = _scaled_by(ctx, cubed_scaled, 0.044715)
        mul = ctx.producer(cube) if cube is not None else None
        if mul is None or mul.kind != "MUL" or x not in mul.inputs:
            continue
        sq = ctx.producer([i for i in mul.inputs if i != x][0]) if len(set(mul.inputs)) == 2 else None
        if sq is not None and sq.kind == "MUL" and sq.inputs == [x, x]:
            return x
    return None


def tanh(ctx: ImportContext, node: Any, a: dict) -> None:
    """Tanh: TANH, or the middle of Gelu's tanh approximation (then deferred like Erf)."""
    _refuse_integers(ctx, node)
    key = ctx.name(node.input[0])
    src = _gelu_tanh_source(ctx, key) if key in ctx.tensors else None
    x = ctx.act(node, node.input[0])
    if src is None:
        ctx.emit("TANH", [x], node.output[0], {}, node)
        return
    out = node.output[0]

    def materialize() -> None:
        ctx.emit("TANH", [x], out, {}, node)

    ctx.pending[out] = Pending(f"Tanh node '{node.name or out}'", "gelu", src, materialize,
                               {"stage": "erf", "approximate": True})


def hard_sigmoid(ctx: ImportContext, node: Any, a: dict) -> None:
    """HardSigmoid: deferred (a following ``x * HardSigmoid(x)`` becomes HARD_SWISH), else
    ``relu6(6 alpha x + 6 beta) / 6``."""
    _refuse_integers(ctx, node)
    x = ctx.act(node, node.input[0])
    out = node.output[0]
    alpha, beta = float(a.get("alpha", 0.2)), float(a.get("beta", 0.5))

    def materialize() -> None:
        shape = ctx.ir_shape(x)
        cur = x
        if abs(alpha * 6 - 1) > 1e-6:
            cur = ctx.emit("MUL", [cur, ctx.add_const(f"{out}/alpha6", np.array([6 * alpha]))],
                           ctx.tmp(f"{out}/scaled", shape), {"act": "NONE"}, node, shape=shape)
        r6 = ctx.emit("ADD", [cur, ctx.add_const(f"{out}/beta6", np.array([6 * beta]))],
                      ctx.tmp(f"{out}/relu6", shape), {"act": "RELU6"}, node, shape=shape)
        ctx.emit("MUL", [r6, ctx.add_const(f"{out}/sixth", np.array([1 / 6]))], out, {"act": "NONE"}, node,
                 shape=shape)

    ctx.pending[out] = Pending(f"HardSigmoid node '{node.name or out}'", "hardsigmoid", x, materialize,
                               {"alpha": alpha, "beta": beta})


def clip(ctx: ImportContext, node: Any, a: dict) -> None:
    """Clip -> RELU / RELU6 / MAXIMUM+MINIMUM; a bound computed at run time -> MAXIMUM/MINIMUM against it."""
    _refuse_integers(ctx, node)
    lo = _scalar(ctx, node.input[1]) if len(node.input) > 1 and node.input[1] else a.get("min")
    hi = _scalar(ctx, node.input[2]) if len(node.input) > 2 and node.input[2] else a.get("max")
    if any(len(node.input) > k and node.input[k] and v is None for k, v in ((1, lo), (2, hi))):
        _clip_tensor_bounds(ctx, node, lo, hi)
        return
    x = ctx.act(node, node.input[0])
    out = node.output[0]
    lo = -np.inf if lo is None or lo <= -3.4e38 else float(lo)
    hi = np.inf if hi is None or hi >= 3.4e38 else float(hi)
    shape = ctx.ir_shape(x)
    if (lo, hi) == (0.0, 6.0):
        ctx.emit("RELU6", [x], out, {}, node)
    elif (lo, hi) == (0.0, np.inf):
        ctx.emit("RELU", [x], out, {}, node)
    elif lo == -np.inf and hi == np.inf:
        ctx.alias[out] = x
    else:
        cur = x
        if lo > -np.inf:
            cur = ctx.emit("MAXIMUM", [cur, ctx.add_const(f"{out}/min", np.array([lo]))],
                           out if hi == np.inf else ctx.tmp(f"{out}/lower", shape), {}, node, shape=shape)
        if hi < np.inf:
            ctx.emit("MINIMUM", [cur, ctx.add_const(f"{out}/max", np.array([hi]))], out, {}, node, shape=shape)


def _clip_tensor_bounds(ctx: ImportContext, node: Any, lo: Optional[float], hi: Optional[float]) -> None:
    """Clip with a bound that is not a one-element constant: ``MINIMUM(MAXIMUM(x, min), max)``.

    ``lo``/``hi`` are the bounds that are one-element constants (None otherwise); a missing or infinite
    bound emits no op. A bound tensor broadcasts to ``x`` (ONNX asks for a 0-d or ``(1,)`` scalar, e.g.
    power_to_db's ``ReduceMax(x) - top_db``; any shape that broadcasts to ``x`` works). The quantizer gives all
    inputs and the output of MAXIMUM/MINIMUM one set of int8 parameters, as TFLite's kernels need.
    """
    src = tuple(ctx.src_shape(node, node.input[0]))
    rank = len(src)
    bounds = []
    for k, v, kind, skip in ((1, lo, "MAXIMUM", -3.4e38), (2, hi, "MINIMUM", 3.4e38)):
        name = node.input[k] if len(node.input) > k and node.input[k] else None
        if name is None or (v is not None and (v <= skip if kind == "MAXIMUM" else v >= skip)):
            continue
        if v is not None:
            bounds.append((kind, ctx.add_const(f"{node.output[0]}/{'min' if k == 1 else 'max'}", np.array([v]))))
            continue
        bshape = tuple(ctx.src_shape(node, name))
        try:
            ok = tuple(np.broadcast_shapes(src, bshape)) == src
        except ValueError:
            ok = False
        if not ok:
            raise ctx.err(node, f"Clip {'min' if k == 1 else 'max'} of shape {bshape} does not broadcast to the "
                                f"input {src}")
        bounds.append((kind, ctx.broadcast_operand(node, name, rank)))
    cur = ctx.act(node, node.input[0])
    if not bounds:
        ctx.alias[node.output[0]] = cur
        return
    shape = ctx.ir_shape(cur)
    for j, (kind, b) in enumerate(bounds):
        last = j == len(bounds) - 1
        dst = node.output[0] if last else ctx.tmp(f"{node.output[0]}/lower", shape)
        cur = ctx.emit(kind, [cur, b], dst, {}, node, shape=shape)


def prelu(ctx: ImportContext, node: Any, a: dict) -> None:
    """PRelu with a constant slope -> PRELU (LEAKY_RELU for one slope)."""
    _refuse_integers(ctx, node)
    x = ctx.act(node, node.input[0])
    slope = np.asarray(ctx.const(node, node.input[1]), np.float32)
    if slope.size == 1:
        ctx.emit("LEAKY_RELU", [x], node.output[0], {"alpha": float(slope.reshape(-1)[0])}, node)
        return
    src = tuple(ctx.src_shape(node, node.input[0]))
    rank = len(src)
    try:
        ok = np.broadcast_shapes(src, slope.shape) == src  # ONNX: the slope broadcasts to the input
    except ValueError:
        ok = False
    if not ok:
        raise ctx.err(node, f"PRelu slope of shape {slope.shape} does not broadcast to the input {src} (a "
                            f"per-channel slope needs the shape (C, 1, ...), as opset 7+ exports write it)")
    ctx.emit("PRELU", [x, ctx.add_const(f"{node.output[0]}/alpha", const_to_ir(slope, rank))], node.output[0], {},
             node)


def pow_(ctx: ImportContext, node: Any, a: dict) -> None:
    """Pow with a constant exponent: 1, 2, 3, 0.5, -0.5 and -1 as one op; any other scalar, and one exponent
    per element, as :mod:`converters.importers.onnx_ops.power` builds it."""
    _refuse_integers(ctx, node)
    if not ctx.is_const(node.input[1]):
        raise ctx.err(node, "Pow needs a constant exponent (one computed at run time is not supported)")
    e = _scalar(ctx, node.input[1])
    if e is None or e not in (1.0, 2.0, 3.0, 0.5, -0.5, -1.0):
        emit_pow(ctx, node, np.asarray(ctx.const(node, node.input[1])).astype(np.float64))
        return
    x = ctx.act(node, node.input[0])
    out = node.output[0]
    shape = ctx.ir_shape(x)
    if e == 1.0:
        ctx.alias[out] = x
    elif e == 2.0:
        ctx.emit("MUL", [x, x], out, {"act": "NONE"}, node)
    elif e == 3.0:
        sq = ctx.emit("MUL", [x, x], ctx.tmp(f"{out}/square", shape), {"act": "NONE"}, node, shape=shape)
        ctx.emit("MUL", [sq, x], out, {"act": "NONE"}, node)
    elif e == 0.5:
        ctx.emit("SQRT", [x], out, {}, node)
    elif e == -0.5:
        ctx.emit("RSQRT", [x], out, {}, node)
    else:
        ctx.emit("DIV", [ctx.add_const(f"{out}/one", np.array([1.0])), x], out, {"act": "NONE"}, node)


REGISTRY = {
    **{t: binary for t in BINARY}, "Sum": binary, "Mean": binary,
    **{t: unary for t in UNARY}, "Neg": unary, "Reciprocal": unary, "Gelu": unary, "LeakyRelu": unary,
    "Elu": unary, "Softplus": unary, "Mish": unary,
    "Erf": erf, "Tanh": tanh, "HardSigmoid": hard_sigmoid, "Clip": clip, "PRelu": prelu, "Pow": pow_,
}
