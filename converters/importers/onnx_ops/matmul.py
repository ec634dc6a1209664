"""Gemm, MatMul and two-operand Einsum: FULLY_CONNECTED for constant 2-D weights, BATCH_MATMUL
otherwise."""
from __future__ import annotations

from typing import Any

import numpy as np

from converters.importers.onnx_ops.context import ImportContext


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


def _einsum_operand(ctx: ImportContext, node: Any, name: str, labels: str, order: str,
                    shape3: tuple[int, int, int]) -> str:
    """Operand ``name`` (ONNX labels ``labels``) transposed to ``order`` and reshaped to ``shape3``,
    in ONNX layout (constants are rearranged here)."""
    perm = tuple(labels.index(c) for c in order)
    if ctx.is_const(name):
        v = np.asarray(ctx.const(node, name), np.float32).transpose(perm).reshape(shape3)
        return ctx.add_const(f"{node.output[0]}/operand", v)
    x = ctx.to_src(ctx.act(node, name))
    x = ctx.transpose(x, perm)
    return ctx.emit("RESHAPE", [x], ctx.tmp(f"{node.output[0]}/operand", shape3), {}, node, shape=shape3)


def einsum(ctx: ImportContext, node: Any, a: dict) -> None:
    """Two-operand Einsum (batch, contracted and free labels, no repeats) as one BATCH_MATMUL with
    the transposes and reshapes around it."""
    eq = a["equation"].decode() if isinstance(a["equation"], bytes) else a["equation"]
    eq = eq.replace(" ", "")
    if "->" not in eq or "." in eq or len(node.input) != 2:
        raise ctx.err(node, f"Einsum '{eq}' is not supported (two operands, explicit output, no ellipsis)")
    lhs, out_l = eq.split("->")
    la, lb = lhs.split(",")
    if any(len(set(t)) != len(t) for t in (la, lb, out_l)) or set(out_l) - set(la) - set(lb):
        raise ctx.err(node, f"Einsum '{eq}' with repeated or unknown labels is not supported")
    if (set(la) ^ set(lb)) - set(out_l):
        raise ctx.err(node, f"Einsum '{eq}' sums a label of one operand only; not supported")
    sa, sb = ctx.src_shape(node, node.input[0]), ctx.src_shape(node, node.input[1])
    size = {**dict(zip(la, sa)), **dict(zip(lb, sb))}
    batch = [c for c in out_l if c in la and c in lb]
    contract = [c for c in la if c in lb and c not in out_l]
    left = [c for c in la if c not in lb]
    right = [c for c in lb if c not in la]
    nb = int(np.prod([size[c] for c in batch])) if batch else 1
    nl = int(np.prod([size[c] for c in left])) if left else 1
    nk = int(np.prod([size[c] for c in contract])) if contract else 1
    nr = int(np.prod([size[c] for c in right])) if right else 1
    if ctx.is_const(node.input[0]) and ctx.is_const(node.input[1]):
        raise ctx.err(node, "operates on constants only; constant folding should have removed it")
    ia = _einsum_operand(ctx, node, node.input[0], la, "".join(batch + left + contract), (nb, nl, nk))
    ib = _einsum_operand(ctx, node, node.input[1], lb, "".join(batch + contract + right), (nb, nk, nr))
    out = node.output[0]
    y = ctx.emit("BATCH_MATMUL", [ia, ib], ctx.tmp(f"{out}/bmm", (nb, nl, nr)), {}, node, shape=(nb, nl, nr))
    natural = "".join(batch + left + right)
    mid_shape = tuple(size[c] for c in natural)
    y = ctx.emit("RESHAPE", [y], ctx.tmp(f"{out}/unflat", mid_shape), {}, node, shape=mid_shape)
    y = ctx.transpose(y, tuple(natural.index(c) for c in out_l))
    if len(out_l) == 4:  # the result is in ONNX layout; the IR keeps 4-D tensors NHWC
        ctx.from_src(y, out, node)
    else:
        ctx.transpose(y, tuple(range(len(out_l))), out, node)


REGISTRY = {"Gemm": gemm, "MatMul": matmul, "Einsum": einsum}
