"""SLICE: a contiguous block of the input given by begin and size (constant or computed at run time)."""
from __future__ import annotations

from typing import Optional

import numpy as np

from edge_runtime.backends.micro.kernels.base import Inputs, Kernel, OpContext, Outputs, Scratch, Workspace
from edge_runtime.backends.micro.kernels.layout.common import (
    BOOL, F32, I8, I16, I32, INDEX, fail_at_run, io, max_rank, maybe_const_ints, prod,
)

TYPES = (F32, I8, I16, I32, BOOL)


def slice_block(shape: tuple[int, ...], begin: np.ndarray, size: np.ndarray, out_elems: int
                ) -> Optional[tuple[tuple[slice, ...], tuple[int, ...]]]:
    """TFLM's checks of begin/size (size -1 = to the end); the index and block shape, or None if invalid."""
    idx, block = [], []
    for n, b, s in zip(shape, begin.tolist(), size.tolist()):
        if b < 0 or b > n:
            return None
        s = n - b if s == -1 else s
        if s < 0 or s > n - b:
            return None
        idx.append(slice(b, b + s))
        block.append(s)
    if prod(block) != out_elems:
        return None
    return tuple(idx), tuple(block)


class Slice(Kernel):
    """SLICE with int32 or int64 begin/size; the output holds the block's elements in order."""

    max_version = 6

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        x, y = io(ctx, TYPES)
        max_rank(ctx, x, 5)
        b_t, s_t = ctx.input(1), ctx.input(2)
        begin = maybe_const_ints(ctx, b_t, "begin", INDEX)
        size = maybe_const_ints(ctx, s_t, "size", INDEX)
        if b_t.type_code != s_t.type_code:
            raise ctx.fail("begin and size must have the same type")
        for t, what in ((b_t, "begin"), (s_t, "size")):
            if len(t.shape) != 1 or t.shape[0] != len(x.shape):
                raise ctx.fail(f"{what} must be a vector with one entry per input dimension")
        self.shape = tuple(int(s) for s in x.shape)
        self.out_elems = y.num_elements
        self.static = None
        if begin is not None and size is not None:
            self.static = slice_block(self.shape, begin, size, self.out_elems)
            if self.static is None:
                raise ctx.fail(f"begin {begin.tolist()} and size {size.tolist()} do not fit input {self.shape} "
                               f"and output {tuple(y.shape)}")

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Views (the whole copy is precomputed when begin and size are constant)."""
        self.x, self.begin, self.size, self.y = inputs[0], inputs[1], inputs[2], outputs[0]
        if self.static is not None:
            idx, block = self.static
            self.src, self.dst = self.x[idx], self.y.reshape(block)

    def run(self) -> None:
        """Copy the block."""
        if self.static is not None:
            np.copyto(self.dst, self.src)
            return
        got = slice_block(self.shape, self.begin.reshape(-1), self.size.reshape(-1), self.out_elems)
        if got is None:
            raise fail_at_run(self, "begin/size out of range for the input or the output")
        idx, block = got
        np.copyto(self.y.reshape(block), self.x[idx])
