"""OneHot on its own (a OneHot feeding a MatMul is an embedding lookup already:
:mod:`converters.importers.one_hot`): ``values[1]`` where the index equals the position on the new axis,
``values[0]`` elsewhere, with constant ``depth`` and ``values``.

The mask is built from comparisons with constants along the new axis (bool tensors, never quantized) and
picks between the two values with SELECT_V2. The indices are float activations (an integer model input
read only by a OneHot is refused by the importer), int8 in the converted model, which holds an integer only
up to its quantization step: an index matches position ``k`` when it lies within 0.5 of ``k`` or of
``k - depth`` (negative indices count from the end), i.e. it is rounded where ONNX truncates a non-integer.
Indices outside ``[-depth, depth - 1]`` give a row of ``values[0]``, as ONNX defines.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from converters.importers.onnx_ops.context import ImportContext, const_to_ir, nhwc


def one_hot(ctx: ImportContext, node: Any, a: dict) -> None:
    """OneHot(indices, depth, values) along ``axis``."""
    shape = tuple(int(d) for d in ctx.src_shape(node, node.input[0]))
    rank = len(shape) + 1
    axis = int(a.get("axis", -1))
    if not -rank <= axis < rank:
        raise ctx.err(node, f"axis {axis} is outside [{-rank}, {rank - 1}]")
    axis %= rank
    depth_v = np.asarray(ctx.const(node, node.input[1])).reshape(-1)
    values = np.asarray(ctx.const(node, node.input[2])).astype(np.float32).reshape(-1)
    if depth_v.size != 1 or int(depth_v[0]) < 1 or values.size != 2:
        raise ctx.err(node, f"depth must be one positive value and values two (off, on); got depth "
                            f"{depth_v.tolist()} and {values.size} values")
    depth = int(depth_v[0])
    out = node.output[0]
    out_src = shape[:axis] + (depth,) + shape[axis:]
    out_ir = nhwc(out_src)
    x = ctx.reshape(ctx.act(node, node.input[0]), shape[:axis] + (1,) + shape[axis:], node=node)
    along = (1,) * axis + (depth,) + (1,) * (rank - axis - 1)
    k = np.arange(depth, dtype=np.float64).reshape(along)

    def mask(kind: str, inputs: list[str], tag: str) -> str:
        return ctx.emit(kind, inputs, ctx.tmp(f"{out}/{tag}", out_ir), {}, node, shape=out_ir)

    def positions(v: np.ndarray, tag: str) -> str:
        return ctx.add_const(f"{out}/{tag}", const_to_ir(v.astype(np.float32), rank))

    hits = []
    for j, shift in enumerate((0.0, -float(depth))):
        above = mask("GREATER", [x, positions(k + shift - 0.5, f"low{j}")], f"above{j}")
        below = mask("LESS", [x, positions(k + shift + 0.5, f"high{j}")], f"below{j}")
        hits.append(mask("LOGICAL_AND", [above, below], f"hit{j}"))
    hit = mask("LOGICAL_OR", hits, "hit")
    on = ctx.add_const(f"{out}/on", values[1:2])
    off = ctx.add_const(f"{out}/off", values[0:1])
    ctx.emit("SELECT_V2", [hit, on, off], out, {}, node, shape=out_ir)


REGISTRY = {"OneHot": one_hot}
