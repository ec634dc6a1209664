"""MIRROR_PAD: pad by mirroring the input (REFLECT excludes the edge, SYMMETRIC repeats it)."""
from __future__ import annotations

from typing import Optional

import numpy as np

from edge_runtime.backends.micro.kernels.base import Inputs, Kernel, OpContext, Outputs, Scratch, Workspace
from edge_runtime.backends.micro.kernels.layout.common import (
    F32, I8, INDEX, fail_at_run, io, maybe_const_ints, option, prod,
)

REFLECT = 0


def fill_source_index(maps: list[np.ndarray], bufs: tuple[np.ndarray, np.ndarray], in_shape: tuple[int, ...],
                      lefts: list[int], offset: int) -> Optional[np.ndarray]:
    """The flat input position each output element copies, as TFLM maps padded positions: before the data
    p -> (left + offset - 1) - min(p, left - 1), after it mirrored from the end. ``maps`` are per-dimension
    int64 buffers; the result is built in the two output-shaped ``bufs`` in turn (an in-place broadcast add
    would make numpy copy) and the one holding it is returned; None when a position falls outside the input."""
    rank = len(in_shape)
    stride = 1
    for d in range(rank - 1, -1, -1):
        m, n, left = maps[d], in_shape[d], lefts[d]
        for p in range(m.shape[0]):
            if p < left:
                orig = left + offset - 1
                v = orig - min(p, orig - offset)
            elif p - left >= n:
                orig = n - (1 + offset)
                v = orig - min(p - left - n, orig)
            else:
                v = p - left
            if not 0 <= v < n:
                return None
            m[p] = v * stride
        stride *= n
    cur, nxt = bufs
    if rank == 0:
        cur.fill(0)
        return cur
    np.copyto(cur, maps[0].reshape((-1,) + (1,) * (rank - 1)))
    for d in range(1, rank):
        np.add(cur, maps[d].reshape((1,) * d + (-1,) + (1,) * (rank - 1 - d)), out=nxt)
        cur, nxt = nxt, cur
    return cur


class MirrorPad(Kernel):
    """MIRROR_PAD (MirrorPadOptions.mode) with int32/int64 paddings, constant or computed at run time."""

    max_version = 3

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        x, y = io(ctx, (F32, I8))
        p = ctx.input(1)
        pads = maybe_const_ints(ctx, p, "paddings", INDEX)
        rank = len(x.shape)
        if len(p.shape) != 2 or p.shape[0] != rank or p.shape[1] != 2 or len(y.shape) != rank:
            raise ctx.fail("paddings must be a [rank, 2] matrix and the output have the input's rank")
        self.offset = 1 if int(option(ctx.op, 0, "b", REFLECT)) == REFLECT else 0
        self.in_shape, self.out_shape = tuple(int(s) for s in x.shape), tuple(int(s) for s in y.shape)
        self.out_dims = prod(self.out_shape)
        self.static = pads is not None
        if self.static:
            self.maps = [np.empty(n, np.int64) for n in self.out_shape]
            self.bufs = (np.empty(self.out_shape, np.int64), np.empty(self.out_shape, np.int64))
            if not self._index(pads.reshape(-1, 2)[:, 0].tolist()):
                raise ctx.fail(f"paddings {pads.reshape(-1, 2).tolist()} reach outside input {self.in_shape}")
            self.bufs = (self.flat, self.flat)
            self.cache_bytes = self.flat.nbytes
        else:
            self.workspace = {f"m{d}": ((n,), np.dtype(np.int64)) for d, n in enumerate(self.out_shape)}
            self.workspace["flat"] = (self.out_shape, np.dtype(np.int64))
            self.workspace["flat2"] = (self.out_shape, np.dtype(np.int64))

    def _index(self, lefts: list[int]) -> bool:
        """Recompute ``self.flat`` for these left paddings; False when they reach outside the input."""
        if self.out_dims == 0:
            return True
        flat = fill_source_index(self.maps, self.bufs, self.in_shape, lefts, self.offset)
        if flat is None:
            return False
        self.flat = flat
        return True

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Views (and index buffers when the paddings are computed)."""
        self.x, self.p, self.y = inputs[0].reshape(-1), inputs[1], outputs[0]
        if not self.static:
            self.maps = [ws[f"m{d}"] for d in range(len(self.out_shape))]
            self.bufs = (ws["flat"], ws["flat2"])

    def run(self) -> None:
        """Gather every output element from its mirrored input position."""
        if self.out_dims == 0:
            return
        if not self.static and not self._index(self.p.reshape(-1, 2)[:, 0].tolist()):
            raise fail_at_run(self, "the paddings reach outside the input")
        np.take(self.x, self.flat, out=self.y, mode="clip")
