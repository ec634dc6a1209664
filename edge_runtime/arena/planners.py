"""Offset planners: place buffers with known lifetimes in one arena without live overlaps.

A buffer is a :class:`Block` (16-byte-aligned size, inclusive op range). A planner
returns one offset per block. Two planners:

- ``greedy``: TFLM's GreedyMemoryPlanner: blocks in order of decreasing size, each
  placed at the lowest offset where it fits among the already placed blocks whose
  lifetimes overlap its own (first fit). Equal sizes go later-requested first: with
  that tie order the plan's size equals the head tflite-micro records with its own
  planner on all five MLPerf Tiny models (VWW: 73,728 B; request order would give 64,512).
- ``best``: first fit over several orderings (by size, by start, by lifetime length,
  by size x length), then a seeded local search that swaps blocks in the best order.
  It stops as soon as it reaches the lower bound. Deterministic, never worse than
  ``greedy`` (greedy's order is one of the candidates).
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Optional, Sequence


@dataclass(frozen=True)
class Block:
    """A buffer to place: ``size`` bytes (already aligned), live at ops ``first``..``last`` inclusive."""

    size: int
    first: int
    last: int

    def overlaps(self, other: "Block") -> bool:
        """True when both are live at some common op."""
        return self.first <= other.last and other.first <= self.last


def lower_bound(blocks: Sequence[Block]) -> int:
    """The most bytes live at once at any op: no plan of these blocks can be smaller."""
    if not blocks:
        return 0
    end = max(b.last for b in blocks) + 2
    delta = [0] * end
    for b in blocks:
        delta[b.first] += b.size
        delta[b.last + 1] -= b.size
    best = cur = 0
    for d in delta:
        cur += d
        best = max(best, cur)
    return best


def arena_size(blocks: Sequence[Block], offsets: Sequence[int]) -> int:
    """Bytes the plan needs: the highest end of any block."""
    return max((o + b.size for b, o in zip(blocks, offsets)), default=0)


#: From this many blocks on, :func:`first_fit` looks only at the placed blocks whose lifetimes overlap
#: (found with numpy) instead of walking every placed block: same offsets, linear work per block in C
#: rather than in Python (an unrolled recurrence has thousands of short-lived blocks).
VECTOR_MIN_BLOCKS = 256


def first_fit(blocks: Sequence[Block], order: Sequence[int]) -> list[int]:
    """Place blocks in ``order``, each at the lowest offset free over its whole lifetime."""
    if len(blocks) >= VECTOR_MIN_BLOCKS:
        return _first_fit_overlapping(blocks, order)
    return _first_fit_scan(blocks, order)


def _first_fit_overlapping(blocks: Sequence[Block], order: Sequence[int]) -> list[int]:
    """:func:`_first_fit_scan`'s offsets, visiting only the lifetime-overlapping placed blocks.

    The scan's answer depends only on the overlapping placed blocks, in order of offset (ties in
    placement order): the candidate is the running maximum of their ends, and the first block that
    starts at least ``size`` above it stops the walk. Both are computed over those blocks at once.
    """
    import numpy as np

    n = len(blocks)
    first = np.fromiter((b.first for b in blocks), np.int64, n)
    last = np.fromiter((b.last for b in blocks), np.int64, n)
    size = np.fromiter((b.size for b in blocks), np.int64, n)
    pf = np.empty(n, np.int64)  # placed blocks' first/last/offset/end, in placement order
    pl = np.empty(n, np.int64)
    po = np.empty(n, np.int64)
    pe = np.empty(n, np.int64)
    offsets = [0] * n
    m = 0
    for i in order:
        f, l_, s = int(first[i]), int(last[i]), int(size[i])
        hit = np.flatnonzero((pf[:m] <= l_) & (pl[:m] >= f))
        candidate = 0
        if hit.size:
            by = hit[np.argsort(po[hit], kind="stable")]  # by offset, ties in placement order
            starts, ends = po[by], pe[by]
            before = np.empty(by.size, np.int64)  # the candidate when each block is reached
            before[0] = 0
            np.maximum.accumulate(ends[:-1], out=before[1:])
            np.maximum(before, 0, out=before)
            stop = np.flatnonzero(starts >= before + s)
            candidate = int(before[stop[0]]) if stop.size else max(0, int(ends.max()))
        offsets[i] = candidate
        pf[m], pl[m], po[m], pe[m] = f, l_, candidate, candidate + s
        m += 1
    return offsets


def _first_fit_scan(blocks: Sequence[Block], order: Sequence[int]) -> list[int]:
    """First fit walking the placed blocks in order of offset (the reference for small graphs)."""
    offsets = [0] * len(blocks)
    placed: list[int] = []  # indices, kept sorted by offset
    for i in order:
        b = blocks[i]
        candidate = 0
        for j in placed:
            p = blocks[j]
            if not b.overlaps(p):
                continue
            if offsets[j] >= candidate + b.size:
                break
            candidate = max(candidate, offsets[j] + p.size)
        offsets[i] = candidate
        # insert keeping the list sorted by offset (stable: equal offsets keep placement order)
        k = len(placed)
        while k > 0 and offsets[placed[k - 1]] > candidate:
            k -= 1
        placed.insert(k, i)
    return offsets


def greedy_by_size(blocks: Sequence[Block]) -> list[int]:
    """TFLM's greedy planner: largest first, first fit among lifetime-overlapping blocks."""
    order = sorted(range(len(blocks)), key=lambda i: (-blocks[i].size, -i))
    return first_fit(blocks, order)


def _candidate_orders(blocks: Sequence[Block]) -> list[list[int]]:
    idx = range(len(blocks))
    keys: list[Callable[[int], tuple]] = [
        lambda i: (-blocks[i].size, -i),
        lambda i: (-blocks[i].size, i),
        lambda i: (blocks[i].first, -blocks[i].size),
        lambda i: (-(blocks[i].last - blocks[i].first), -blocks[i].size),
        lambda i: (-blocks[i].size * (blocks[i].last - blocks[i].first + 1), i),
        lambda i: (-blocks[i].last, -blocks[i].size),
    ]
    return [sorted(idx, key=k) for k in keys]


def best_of_orderings(blocks: Sequence[Block], *, iterations: Optional[int] = None, seed: int = 0) -> list[int]:
    """First fit over several orderings plus a seeded swap search; stops at the lower bound.

    ``iterations`` defaults to 400 for small graphs and shrinks for large ones so a plan
    stays well under a second (each first-fit pass is quadratic in the number of blocks).
    """
    if not blocks:
        return []
    if iterations is None:
        iterations = max(10, min(400, 2_000_000 // (len(blocks) ** 2)))
    bound = lower_bound(blocks)
    best_offsets: list[int] = []
    best_size = -1
    best_order: list[int] = []
    for order in _candidate_orders(blocks):
        offs = first_fit(blocks, order)
        size = arena_size(blocks, offs)
        if best_size < 0 or size < best_size:
            best_offsets, best_size, best_order = offs, size, order
        if best_size <= bound:
            return best_offsets
    rng = random.Random(seed)
    n = len(blocks)
    if n < 2:
        return best_offsets
    order = list(best_order)
    for _ in range(iterations):
        trial = list(order)
        a, b = rng.randrange(n), rng.randrange(n)
        if rng.random() < 0.5:
            trial[a], trial[b] = trial[b], trial[a]
        else:
            trial.insert(b, trial.pop(a))
        offs = first_fit(blocks, trial)
        size = arena_size(blocks, offs)
        if size <= best_size:  # accept sideways moves to cross plateaus
            if size < best_size:
                best_offsets = offs
            best_size, order = size, trial
            if best_size <= bound:
                break
    return best_offsets


PLANNERS: dict[str, Callable[[Sequence[Block]], list[int]]] = {
    "greedy": greedy_by_size,
    "best": best_of_orderings,
}
"""Planner name -> function (blocks -> offsets)."""

PLANNER_HELP = {
    "greedy": "TFLM GreedyMemoryPlanner: largest first, first fit",
    "best": "best of several orderings plus a seeded local search (default)",
}
