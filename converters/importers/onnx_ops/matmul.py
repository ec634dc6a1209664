"""Gemm and MatMul: FULLY_CONNECTED for constant 2-D weights, BATCH_MATMUL otherwise."""
from __future__ import annotations

from typing import Any

import numpy as np

from converters.importers.onnx_ops.context import ImportContext


def fully_connected(ctx: ImportContext, node: Any, x: str, x_shape: tuple[int, ...], w: np.ndarray,
                    bias: np.ndarray) -> None:
    """``x @ w.T + bias`` for ``x`` of ONNX shape ``x_shape`` (any rank >= 2; leading axes are batch)."""
    out = node.output[0]
    n_out, k = w.shape
    if x_shape[-1] != k:
        raise ctx.err(node, f"input of shape {x_shape} does not match weights of shape {w.shape[::-1]}")
    attrs = {"act": "NONE"}
    consts = [ctx.add_const(f"{out}/weights", w), ctx.add_const(f"{out}/bias", bias)]
    if len(x_shape) == 2 and len(ctx.ir_shape(x)) == 2:
        ctx.emit("FULLY_CONNECTED", [x] + consts, out, attrs, node, shape=(x_shape[0], n_out))
        return
    rows = int(np.prod(x_shape[:-1]))
    flat = ctx.reshape(x, (rows, k), node=node)
    y = ctx.emit("FULLY_CONNECTED", [flat] + consts, ctx.tmp(f"{out}/flat", (rows, n_out)), attrs, node,
                 shape=(rows, n_out))
    ctx.reshape(y, tuple(x_shape[:-1]) + (n_out,), out, node)


def gemm(ctx: ImportContext, node: Any, a: dict) -> None:
    """Gemm with constant B -> FULLY_CONNECTED (alpha, beta and transB folded into the constants)."""
    if a.get("transA", 0):
        raise ctx.err(node, "Gemm with transA=1 is not supported; export x @ W with the activation first")
    x = ctx.act(node, node.input[0])
    w = np.asarray(ctx.const(node, node.input[1]), np.float32)
    w = (w if a.get("transB", 0) else w.T) * float(a.get("alpha", 1.0))
    bias = np.zeros(w.shape[0], np.float32)
    if len(node.input) > 2 and node.input[2]:
        c = np.asarray(ctx.const(node, node.input[2]), np.float32) * float(a.get("beta", 1.0))
        if c.size not in (1, w.shape[0]):
            raise ctx.err(node, f"Gemm bias of shape {c.shape} is not per output feature")
        bias = np.broadcast_to(c.reshape(-1), (w.shape[0],)).astype(np.float32)
    fully_connected(ctx, node, x, ctx.src_shape(node, node.input[0]), w, bias)


def matmul(ctx: ImportContext, node: Any, a: dict) -> None:
    """MatMul: a constant 2-D right operand becomes FULLY_CONNECTED; anything else BATCH_MATMUL
    (computed in ONNX layout; constant operands allowed)."""
    sa, sb = ctx.src_shape(node, node.input[0]), ctx.src_shape(node, node.input[1])
    if len(sa) < 2 or len(sb) < 2:
        raise ctx.err(node, f"MatMul of 1-D operands ({sa} @ {sb}) is not supported")
    if ctx.is_const(node.input[1]) and len(sb) == 2 and not ctx.is_const(node.input[0]):
        w = np.asarray(ctx.const(node, node.input[1]), np.float32).T
        fully_connected(ctx, node, ctx.act(node, node.input[0]), sa, w, np.zeros(w.shape[0], np.float32))
        return
    out = node.output[0]
    out_shape = ctx.src_shape(node, out)
    rank = len(out_shape)
    operands = []
    for name, shape in ((node.input[0], sa), (node.input[1], sb)):
        if ctx.is_const(name):
            v = np.asarray(ctx.const(node, name), np.float32)
            operands.append(ctx.add_const(f"{out}/const", v.reshape((1,) * (rank - v.ndim) + v.shape)))
        else:
            x = ctx.act(node, name)
            if len(shape) < rank:
                x = ctx.reshape(x, (1,) * (rank - len(shape)) + tuple(shape), node=node)
            operands.append(ctx.to_src(x))
    if all(ctx.tensors[o].is_constant for o in operands):
        raise ctx.err(node, "operates on constants only; constant folding should have removed it")
    if rank == 4:
        y = ctx.emit("BATCH_MATMUL", operands, ctx.tmp(f"{out}/src", out_shape), {}, node, shape=out_shape)
        ctx.from_src(y, out, node)
    else:
        ctx.emit("BATCH_MATMUL", operands, out, {}, node, shape=out_shape)


REGISTRY = {"Gemm": gemm, "MatMul": matmul}
