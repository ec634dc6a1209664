"""ReverseSequence with constant sequence lengths: a fixed permutation of the elements, so one GATHER_ND by
constant index tuples (:func:`converters.importers.onnx_ops.scan._emit_gather_nd`, as GatherElements)."""
from __future__ import annotations

from typing import Any

import numpy as np

from converters.importers.onnx_ops.context import ImportContext
from converters.importers.onnx_ops.scan import _emit_gather_nd


def reverse_sequence(ctx: ImportContext, node: Any, a: dict) -> None:
    """Reverse the first ``sequence_lens[b]`` steps on ``time_axis`` of each batch ``b`` on ``batch_axis``."""
    shape = tuple(int(d) for d in ctx.src_shape(node, node.input[0]))
    rank = len(shape)
    batch_axis, time_axis = int(a.get("batch_axis", 1)), int(a.get("time_axis", 0))
    if rank < 2 or sorted((batch_axis, time_axis)) != [0, 1]:
        raise ctx.err(node, f"batch_axis {batch_axis} and time_axis {time_axis} must be 0 and 1 (in either order) "
                            f"of an input of rank 2 or more (shape {shape})")
    lens = np.asarray(ctx.const(node, node.input[1])).astype(np.int64).reshape(-1)
    if lens.size != shape[batch_axis] or np.any(lens < 0) or np.any(lens > shape[time_axis]):
        raise ctx.err(node, f"sequence_lens {lens.tolist()} must hold {shape[batch_axis]} values in "
                            f"[0, {shape[time_axis]}]")
    grids = list(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"))
    b, t = grids[batch_axis], grids[time_axis]
    n = lens[b]
    grids[time_axis] = np.where(t < n, n - 1 - t, t)
    _emit_gather_nd(ctx, node, shape, np.stack(grids, axis=-1))


REGISTRY = {"ReverseSequence": reverse_sequence}
