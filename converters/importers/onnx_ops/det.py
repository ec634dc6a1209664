"""Det of small square matrices, by the explicit (Leibniz) expansion: ``det A = sum over permutations p of
sign(p) * A[0, p0] * A[1, p1] * ...``.

Each row's factors of every term come from one GATHER of the flattened matrices (they keep the input's int8
parameters), the rows' factors are multiplied (``n - 1`` MULs over all ``n!`` terms at once), and the signed
sum is a MUL by a constant of +-1 and a SUM. Orders up to :data:`MAX_ORDER` (24 terms); the int8 result
carries the cancellation of the terms, so a determinant much smaller than its terms loses precision.
"""
from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from converters.importers.onnx_ops.context import ImportContext

#: largest matrix order converted (4! = 24 products)
MAX_ORDER = 4


def _parity(p: tuple[int, ...]) -> int:
    """+1 for an even permutation, -1 for an odd one."""
    sign, seen = 1, set()
    for start in range(len(p)):
        if start in seen:
            continue
        k, length = start, 0
        while k not in seen:
            seen.add(k)
            k, length = p[k], length + 1
        sign *= -1 if length % 2 == 0 else 1
    return sign


def det(ctx: ImportContext, node: Any, a: dict) -> None:
    """Det of ``[..., n, n]`` with ``n`` at most :data:`MAX_ORDER` -> ``[...]``."""
    shape = tuple(int(d) for d in ctx.src_shape(node, node.input[0]))
    if len(shape) < 2 or shape[-1] != shape[-2]:
        raise ctx.err(node, f"Det needs square matrices in the last two axes, not shape {shape}")
    n = shape[-1]
    if n > MAX_ORDER:
        raise ctx.err(node, f"Det of {n}x{n} matrices is not supported (at most {MAX_ORDER}x{MAX_ORDER}: the "
                            f"explicit expansion has n! terms)")
    out = node.output[0]
    batch = int(np.prod(shape[:-2], dtype=np.int64))
    flat = ctx.reshape(ctx.act(node, node.input[0]), (batch, n * n), node=node)
    perms = list(itertools.permutations(range(n)))
    terms = (batch, len(perms))
    prod = None
    for i in range(n):
        idx = ctx.add_const(f"{out}/row{i}_indices", np.array([i * n + p[i] for p in perms], np.int32), np.int32)
        g = ctx.emit("GATHER", [flat, idx], ctx.tmp(f"{out}/row{i}", terms), {"axis": 1}, node, shape=terms)
        prod = g if prod is None else ctx.emit("MUL", [prod, g], ctx.tmp(f"{out}/product{i}", terms),
                                               {"act": "NONE"}, node, shape=terms)
    signs = ctx.add_const(f"{out}/signs", np.array([_parity(p) for p in perms], np.float32))
    signed = ctx.emit("MUL", [prod, signs], ctx.tmp(f"{out}/signed", terms), {"act": "NONE"}, node, shape=terms)
    total = ctx.emit("SUM", [signed], ctx.tmp(f"{out}/sum", (batch,)), {"axes": (1,), "keep_dims": False}, node,
                     shape=(batch,))
    ctx.reshape(total, shape[:-2], out, node)


REGISTRY = {"Det": det}
