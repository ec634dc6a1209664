"""BatchNormalization (folded into the op before it, else MUL + ADD), InstanceNormalization and
LayerNormalization (MEAN / SUB / MUL / RSQRT / ADD, ops every runtime has in int8; the default precision
policy, :mod:`converters.quality.default_precision`, finds the chain by its structure and runs it as a
float island on profiles with an OS)."""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from converters.importers.onnx_ops.context import ImportContext, const_to_ir


def _channel_const(v: np.ndarray, rank: int) -> np.ndarray:
    """A per-channel (ONNX axis 1) vector as an IR operand for a tensor of ``rank``."""
    shape = [1] * rank
    shape[1] = -1
    return const_to_ir(v.reshape(shape), rank)


def batch_norm(ctx: ImportContext, node: Any, a: dict) -> None:
    """BatchNormalization (inference): folded into a preceding Conv/ConvTranspose/Gemm, else MUL + ADD."""
    x = ctx.act(node, node.input[0])
    gamma, beta, mean, var = (np.asarray(ctx.const(node, i), np.float32) for i in node.input[1:5])
    k = gamma / np.sqrt(var + float(a.get("epsilon", 1e-5)))
    shift = beta - mean * k
    prev = ctx.producer(x)
    if (prev is not None and prev.kind in ("CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "FULLY_CONNECTED")
            and prev.act == "NONE" and ctx.uses.get(node.input[0], 0) == 1 and ctx.consumers(x) == 0
            and ctx.tensors[prev.inputs[2]].data.shape[0] == k.size):
        wt = ctx.tensors[prev.inputs[1]]
        if prev.kind == "FULLY_CONNECTED":
            wt.data = (wt.data * k.reshape((-1, 1))).astype(np.float32)
        elif prev.kind == "DEPTHWISE_CONV_2D":
            wt.data = (wt.data * k.reshape((1, 1, 1, -1))).astype(np.float32)
        else:
            wt.data = (wt.data * k.reshape((-1, 1, 1, 1))).astype(np.float32)
        bt = ctx.tensors[prev.inputs[2]]
        bt.data = (bt.data * k + shift).astype(np.float32)
        ctx.alias[node.output[0]] = x
        return
    rank = len(ctx.src_shape(node, node.input[0]))
    shape = ctx.ir_shape(x)
    y = ctx.emit("MUL", [x, ctx.add_const(f"{node.output[0]}/scale", _channel_const(k, rank))],
                 ctx.tmp(f"{node.output[0]}/scaled", shape), {"act": "NONE"}, node, shape=shape)
    ctx.emit("ADD", [y, ctx.add_const(f"{node.output[0]}/shift", _channel_const(shift, rank))], node.output[0],
             {"act": "NONE"}, node)


def normalize(ctx: ImportContext, node: Any, x: str, ir_axes: tuple[int, ...], eps: float,
              scale: Optional[np.ndarray], shift: Optional[np.ndarray], out: str) -> tuple[str, str]:
    """``(x - mean) * rsqrt(var + eps) * scale + shift`` over ``ir_axes`` (scale/shift already in IR form);
    returns the IR tensors of the mean and of ``rsqrt(var + eps)`` (kept dims)."""
    shape = ctx.ir_shape(x)
    kept = tuple(1 if d in ir_axes else s for d, s in enumerate(shape))
    mean = ctx.emit("MEAN", [x], ctx.tmp(f"{out}/mean", kept), {"axes": ir_axes, "keep_dims": True}, node, shape=kept)
    d = ctx.emit("SUB", [x, mean], ctx.tmp(f"{out}/centered", shape), {"act": "NONE"}, node, shape=shape)
    sq = ctx.emit("MUL", [d, d], ctx.tmp(f"{out}/squared", shape), {"act": "NONE"}, node, shape=shape)
    var = ctx.emit("MEAN", [sq], ctx.tmp(f"{out}/var", kept), {"axes": ir_axes, "keep_dims": True}, node, shape=kept)
    ve = ctx.emit("ADD", [var, ctx.add_const(f"{out}/eps", np.array([eps]))], ctx.tmp(f"{out}/var_eps", kept),
                  {"act": "NONE"}, node, shape=kept)
    r = ctx.emit("RSQRT", [ve], ctx.tmp(f"{out}/rstd", kept), {}, node, shape=kept)
    last = scale is None and shift is None
    y = ctx.emit("MUL", [d, r], out if last else ctx.tmp(f"{out}/normed", shape), {"act": "NONE"}, node,
                 shape=shape)
    if scale is not None:
        last = shift is None
        y = ctx.emit("MUL", [y, ctx.add_const(f"{out}/gamma", scale)], out if last else ctx.tmp(f"{out}/g", shape),
                     {"act": "NONE"}, node, shape=shape)
    if shift is not None:
        ctx.emit("ADD", [y, ctx.add_const(f"{out}/beta", shift)], out, {"act": "NONE"}, node, shape=shape)
    return mean, r


def instance_norm(ctx: ImportContext, node: Any, a: dict) -> None:
    """InstanceNormalization: normalise each channel over the spatial axes."""
    x = ctx.act(node, node.input[0])
    rank = len(ctx.src_shape(node, node.input[0]))
    if rank < 3:
        raise ctx.err(node, f"InstanceNormalization of a {rank}-D input is not supported")
    axes = tuple(sorted(ctx.ir_axis(rank, ax) for ax in range(2, rank)))
    scale = np.asarray(ctx.const(node, node.input[1]), np.float32)
    shift = np.asarray(ctx.const(node, node.input[2]), np.float32)
    ctx.output(node, node.output[0])
    normalize(ctx, node, x, axes, float(a.get("epsilon", 1e-5)), _channel_const(scale, rank),
              _channel_const(shift, rank), node.output[0])


def layer_norm(ctx: ImportContext, node: Any, a: dict) -> None:
    """LayerNormalization (opset 17) over the axes from ``axis`` to the last; its optional Mean and InvStdDev
    outputs are the mean and ``rsqrt(var + eps)`` the normalisation computes."""
    x = ctx.act(node, node.input[0])
    rank = len(ctx.src_shape(node, node.input[0]))
    axis = int(a.get("axis", -1)) % rank
    axes = tuple(sorted(ctx.ir_axis(rank, ax) for ax in range(axis, rank)))
    scale = np.asarray(ctx.const(node, node.input[1]), np.float32)
    shift = (np.asarray(ctx.const(node, node.input[2]), np.float32)
             if len(node.input) > 2 and node.input[2] else None)
    ctx.output(node, node.output[0])
    stats = normalize(ctx, node, x, axes, float(a.get("epsilon", 1e-5)), const_to_ir(scale, rank),
                      const_to_ir(shift, rank) if shift is not None else None, node.output[0])
    for name, tensor in zip(node.output[1:3], stats):
        if name:
            ctx.alias[name] = tensor


def lp_norm(ctx: ImportContext, node: Any, a: dict) -> None:
    """LpNormalization along one axis: p=2 as ``x * rsqrt(sum(x^2))``; p=1 as ``x / sum(|x|)``, where a sum of 0
    (then every ``x`` on it is 0, and the result 0 as in onnx's reference) divides by 1 instead (LESS_EQUAL +
    SELECT_V2: a divisor that rounds to 0 in int8 never reaches the DIV)."""
    p = int(a.get("p", 2))
    if p not in (1, 2):
        raise ctx.err(node, f"LpNormalization with p={p} is not supported (p=1 and p=2 are)")
    x = ctx.act(node, node.input[0])
    rank = len(ctx.src_shape(node, node.input[0]))
    axis = ctx.ir_axis(rank, int(a.get("axis", -1)))
    shape = ctx.ir_shape(x)
    kept = tuple(1 if d == axis else s for d, s in enumerate(shape))
    out = node.output[0]
    if p == 1:
        ab = ctx.emit("ABS", [x], ctx.tmp(f"{out}/abs", shape), {}, node, shape=shape)
        s1 = ctx.emit("SUM", [ab], ctx.tmp(f"{out}/sum", kept), {"axes": (axis,), "keep_dims": True}, node,
                      shape=kept)
        zero = ctx.emit("LESS_EQUAL", [s1, ctx.add_const(f"{out}/zero", np.array([0.0]))],
                        ctx.tmp(f"{out}/is_zero", kept), {}, node, shape=kept)
        safe = ctx.emit("SELECT_V2", [zero, ctx.add_const(f"{out}/one", np.array([1.0])), s1],
                        ctx.tmp(f"{out}/divisor", kept), {}, node, shape=kept)
        ctx.emit("DIV", [x, safe], out, {"act": "NONE"}, node)
        return
    sq = ctx.emit("MUL", [x, x], ctx.tmp(f"{out}/squared", shape), {"act": "NONE"}, node, shape=shape)
    ss = ctx.emit("SUM", [sq], ctx.tmp(f"{out}/sum", kept), {"axes": (axis,), "keep_dims": True}, node, shape=kept)
    r = ctx.emit("RSQRT", [ss], ctx.tmp(f"{out}/rnorm", kept), {}, node, shape=kept)
    ctx.emit("MUL", [x, r], out, {"act": "NONE"}, node)


REGISTRY = {"BatchNormalization": batch_norm, "LpNormalization": lp_norm, "InstanceNormalization": instance_norm,
            "LayerNormalization": layer_norm}
