"""REVERSE_V2: reverse the input along a set of contiguous axes (constant or computed at run time)."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from edge_runtime.backends.micro.kernels.base import Inputs, Kernel, OpContext, Outputs, Scratch, Workspace
from edge_runtime.backends.micro.kernels.layout.common import (
    BOOL, F32, I8, I16, I32, I64, INDEX32, U8, fail_at_run, io, max_rank, maybe_const_ints, same_shape,
)

TYPES = (F32, I8, I16, I32, I64, U8, BOOL)
MAX_DIMS = 6


def reverse_index(axes: Sequence[int], rank: int) -> Optional[tuple[slice, ...]]:
    """The index that reverses ``axes`` (negative ones count from the end), or None when TFLM refuses them:
    out of range, or not contiguous once sorted."""
    flip = [False] * rank
    lo, hi = rank, -1
    for a in axes:  # plain loops: this runs at invoke for computed axes and must leave no garbage
        a = a + rank if a < 0 else a
        if not 0 <= a < rank or flip[a]:
            return None
        flip[a] = True
        lo, hi = min(lo, a), max(hi, a)
    if hi - lo + 1 != len(axes):
        return None
    return tuple([slice(None, None, -1) if f else slice(None) for f in flip])


class ReverseV2(Kernel):
    """REVERSE_V2 with int32 axes."""

    max_version = 3

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        x, y = io(ctx, TYPES)
        max_rank(ctx, x, MAX_DIMS)
        same_shape(ctx, y.shape, x.shape)
        a = ctx.input(1)
        axes = maybe_const_ints(ctx, a, "axis", INDEX32)
        if len(a.shape) != 1 or not 1 <= a.shape[0] <= len(x.shape):
            raise ctx.fail("the axis must be a vector of 1 to rank entries (TFLM cannot reverse along no axis)")
        self.rank = len(x.shape)
        self.index = None
        if axes is not None:
            self.index = reverse_index(axes.tolist(), self.rank)
            if self.index is None:
                raise ctx.fail(f"axes {axes.tolist()} are out of range or not contiguous (TFLM needs contiguous axes)")

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Views (the reversed view is precomputed for constant axes)."""
        self.x, self.axes, self.y = inputs[0], inputs[1], outputs[0]
        self.src = self.x[self.index] if self.index is not None else None

    def run(self) -> None:
        """Copy the reversed view."""
        if self.src is not None:
            np.copyto(self.y, self.src)
            return
        index = reverse_index(self.axes.tolist(), self.rank)
        if index is None:
            raise fail_at_run(self, "the axes are out of range or not contiguous")
        np.copyto(self.y, self.x[index])
