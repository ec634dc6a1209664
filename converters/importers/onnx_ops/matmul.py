"""Gemm and MatMul: FULLY_CONNECTED for constant 2-D weights, BATCH_MATMUL otherwise (Einsum:
:mod:`converters.importers.onnx_ops.einsum`)."""
from __future__ import annotations

from typing import Any

import numpy as np

from converters.importers.onnx_ops.context import ImportContext, nhwc


def fully_connected(ctx: ImportContext, node: Any, x: str, x_shape: tuple[int, ...], w: np.ndarray,
                    bias: np.ndarray, out: str | None = None) -> None:
    """``x @ w.T + bias`` into ``out`` (default the node's output) for ``x`` of ONNX shape ``x_shape`` (any
    rank >= 2; leading axes are batch)."""
    out = out or node.output[0]
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
    """Gemm with constant B -> FULLY_CONNECTED (alpha, beta and transB folded into the constants); transA=1
    transposes A first; a constant C that is not one value per output feature (``[M, N]``, ``[M, 1]``) is
    added after the FULLY_CONNECTED."""
    x = ctx.act(node, node.input[0])
    x_shape = tuple(ctx.src_shape(node, node.input[0]))
    if a.get("transA", 0):
        if len(x_shape) != 2:
            raise ctx.err(node, f"Gemm's A must be 2-D, not of shape {x_shape}")
        x = ctx.transpose(x, (1, 0), node=node)
        x_shape = x_shape[::-1]
    w = np.asarray(ctx.const(node, node.input[1]), np.float32)
    w = (w if a.get("transB", 0) else w.T) * float(a.get("alpha", 1.0))
    bias = np.zeros(w.shape[0], np.float32)
    matrix = None
    if len(node.input) > 2 and node.input[2]:
        c = np.asarray(ctx.const(node, node.input[2]), np.float32) * float(a.get("beta", 1.0))
        if c.size in (1, w.shape[0]) and (c.ndim < 2 or c.shape[0] == 1):
            bias = np.broadcast_to(c.reshape(-1), (w.shape[0],)).astype(np.float32)
        else:
            try:
                matrix = np.broadcast_to(c, (x_shape[0], w.shape[0])).astype(np.float32)
            except ValueError:
                raise ctx.err(node, f"Gemm's C of shape {c.shape} does not broadcast to the output "
                                    f"{(x_shape[0], w.shape[0])}") from None
    if matrix is None:
        fully_connected(ctx, node, x, x_shape, w, bias)
        return
    out = node.output[0]
    y = ctx.tmp(f"{out}/product", (x_shape[0], w.shape[0]))
    fully_connected(ctx, node, x, x_shape, w, bias, out=y)
    ctx.emit("ADD", [y, ctx.add_const(f"{out}/c", matrix)], out, {"act": "NONE"}, node,
             shape=(x_shape[0], w.shape[0]))


def matmul(ctx: ImportContext, node: Any, a: dict) -> None:
    """MatMul: a constant 2-D right operand becomes FULLY_CONNECTED; anything else BATCH_MATMUL
    (computed in ONNX layout; constant operands allowed). A 1-D operand is promoted as numpy does (a left
    vector to one row, a right vector to one column: a constant one is FULLY_CONNECTED's one output feature),
    and the promoted axis dropped from the result with a RESHAPE."""
    sa, sb = tuple(ctx.src_shape(node, node.input[0])), tuple(ctx.src_shape(node, node.input[1]))
    if not sa or not sb:
        raise ctx.err(node, f"MatMul of a 0-d operand ({sa} @ {sb}) is not defined")
    out = node.output[0]
    if len(sa) >= 2 and len(sb) >= 2:
        _matmul(ctx, node, (node.input[0], sa), (node.input[1], sb), out, ctx.src_shape(node, out))
        return
    pa = (1,) + sa if len(sa) == 1 else sa
    pb = sb + (1,) if len(sb) == 1 else sb
    if pa[-1] != pb[-2]:
        raise ctx.err(node, f"MatMul operands {sa} @ {sb} do not match")
    try:
        batch = tuple(np.broadcast_shapes(pa[:-2], pb[:-2]))
    except ValueError:
        raise ctx.err(node, f"MatMul operands {sa} @ {sb} do not broadcast") from None
    promoted = batch + (pa[-2], pb[-1])
    y = ctx.tmp(f"{out}/promoted", nhwc(promoted))
    _matmul(ctx, node, _promote(ctx, node, node.input[0], sa, pa), _promote(ctx, node, node.input[1], sb, pb), y,
            promoted)
    ctx.reshape(y, tuple(ctx.src_shape(node, out)), out, node)


def _promote(ctx: ImportContext, node: Any, name: str, shape: tuple[int, ...],
             promoted: tuple[int, ...]) -> tuple[Any, tuple[int, ...]]:
    """Operand ``name`` as an operand of ``promoted`` shape: the name itself, a reshaped activation, or (for
    a constant) its reshaped value."""
    if shape == promoted:
        return name, shape
    if ctx.is_const(name):
        return np.asarray(ctx.const(node, name), np.float32).reshape(promoted), promoted
    return ctx.reshape(ctx.act(node, name), promoted, node=node), promoted


def _operand(ctx: ImportContext, node: Any, op: tuple[Any, tuple[int, ...]]) -> tuple[Any, bool]:
    """An operand given as (ONNX name, IR activation name or constant array; shape): its constant value
    (or None) and whether it is constant."""
    v = op[0]
    if isinstance(v, np.ndarray):
        return v, True
    if ctx.is_const(v):
        return np.asarray(ctx.const(node, v), np.float32), True
    return None, False


def _matmul(ctx: ImportContext, node: Any, a_op: tuple[Any, tuple[int, ...]], b_op: tuple[Any, tuple[int, ...]],
            out: str, out_shape: tuple[int, ...]) -> None:
    """``a @ b`` of operands of rank >= 2 into ``out`` (ONNX shape ``out_shape``); an operand is an ONNX name,
    an IR activation (promoted from 1-D) or a constant array."""
    (va, sa), (vb, sb) = a_op, b_op
    ca, a_const = _operand(ctx, node, a_op)
    cb, b_const = _operand(ctx, node, b_op)
    if b_const and len(sb) == 2 and not a_const:
        w = cb.T
        fully_connected(ctx, node, ctx.act(node, va), sa, w, np.zeros(w.shape[0], np.float32), out=out)
        return
    rank = len(out_shape)
    operands = []
    for v, c, shape in ((va, ca, sa), (vb, cb, sb)):
        if c is not None:
            operands.append(ctx.add_const(f"{out}/const", c.reshape((1,) * (rank - c.ndim) + c.shape)))
        else:
            x = ctx.act(node, v)
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
