"""SPLIT: cut a tensor into equal parts along a constant axis."""
from __future__ import annotations

from edge_runtime.backends.micro.kernels.base import Inputs, OpContext, Outputs, Scratch, Workspace
from edge_runtime.backends.micro.kernels.layout.common import (
    F32, I8, I16, I32, CopyViews, const_ints, io, norm_axis, same_shape,
)

TYPES = (F32, I8, I16, I32)


def split_bounds(ctx: OpContext, in_shape: tuple[int, ...], axis: int) -> list[tuple[int, int]]:
    """Start and end along ``axis`` of every output (each output keeps the input's other dimensions)."""
    bounds, pos = [], 0
    for i in range(len(ctx.op.outputs)):
        t = ctx.output(i)
        if t.type_code != ctx.input(1 if ctx.op.name == "SPLIT" else 0).type_code:
            raise ctx.fail(f"output {i} has type {t.type_name}, unlike the input")
        if len(t.shape) != len(in_shape):
            raise ctx.fail(f"output {i} has rank {len(t.shape)}, the input {len(in_shape)}")
        want = list(in_shape)
        want[axis] = t.shape[axis]
        same_shape(ctx, t.shape, want, f"output {i}")
        bounds.append((pos, pos + int(t.shape[axis])))
        pos += int(t.shape[axis])
    if pos != in_shape[axis]:
        raise ctx.fail(f"the outputs add up to {pos} along axis {axis}, the input has {in_shape[axis]}")
    return bounds


class SplitCopy(CopyViews):
    """Shared bind of SPLIT and SPLIT_V: the output views are slices of the input along ``self.axis``."""

    axis: int
    bounds: list[tuple[int, int]]
    data_pos: int

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """One input slice per output."""
        x = inputs[self.data_pos]
        self.pairs = []
        for (a, b), y in zip(self.bounds, outputs):
            idx = [slice(None)] * x.ndim
            idx[self.axis] = slice(a, b)
            self.pairs.append((x[tuple(idx)], y))


class Split(SplitCopy):
    """SPLIT (inputs: axis, data): ``num_splits`` equal outputs."""

    max_version = 4
    data_pos = 1

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        x, _ = io(ctx, TYPES, pos=1)
        axis = const_ints(ctx, ctx.input(0), "axis")
        if axis.size != 1:
            raise ctx.fail("the axis tensor must hold one value")
        if not x.shape:
            raise ctx.fail("the input must have at least one dimension")
        self.axis = norm_axis(ctx, int(axis[0]), len(x.shape))
        n = len(ctx.op.outputs)
        if x.shape[self.axis] % n:
            raise ctx.fail(f"dimension {x.shape[self.axis]} does not split into {n} equal parts")
        self.bounds = split_bounds(ctx, tuple(x.shape), self.axis)
        if len({b - a for a, b in self.bounds}) > 1:
            raise ctx.fail("SPLIT outputs must all have the same size along the axis")
