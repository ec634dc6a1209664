"""BROADCAST_TO of an activation (constant target shape): copies concatenated along each broadcast axis,
as the ONNX importer does for Expand (CONCATENATION has an int8 kernel everywhere)."""
from __future__ import annotations

from typing import Any

import numpy as np

from converters.importers.tflite_ops.context import TFLiteContext


def broadcast_to(ctx: TFLiteContext, op: Any) -> None:
    """BROADCAST_TO(x, shape)."""
    x, out = ctx.act_in(op, 0), ctx.name(op.outputs[0])
    if ctx.tensors[x].is_constant:
        ctx.tensors[out].data = np.ascontiguousarray(np.broadcast_to(ctx.tensors[x].data, ctx.shape(out)))
        return
    target = tuple(int(d) for d in np.asarray(ctx.value(op, 1)).reshape(-1))
    shape = ctx.shape(x)
    if len(shape) > len(target):
        raise ctx.err(op, f"cannot broadcast {shape} to {target}")
    cur = x
    if len(shape) < len(target):
        shape = (1,) * (len(target) - len(shape)) + tuple(shape)
        cur = ctx.emit(op, "RESHAPE", [x], ctx.tmp(f"{out}/lifted", shape))
    for d, want in enumerate(target):
        have = ctx.shape(cur)[d]
        if have == want:
            continue
        if have != 1:
            raise ctx.err(op, f"cannot broadcast size {have} to {want} on axis {d}")
        new_shape = tuple(want if k == d else s for k, s in enumerate(ctx.shape(cur)))
        cur = ctx.emit(op, "CONCATENATION", [cur] * want, ctx.tmp(f"{out}/axis{d}", new_shape),
                       {"axis": d, "act": "NONE"})
    ctx.emit(op, "RESHAPE", [cur], out)


REGISTRY = {"BROADCAST_TO": broadcast_to}
