"""Activation histograms for range search, taken in the same float pass that finds the ranges.

Every searched tensor has a :class:`GrowingHistogram`: equal bins over a grid that starts at the range
of the samples seen when binning starts and grows by whole bins when a later sample reaches beyond it
(pairs of bins are merged whenever the grid passes :data:`MAX_BINS`, so it always has more than
:data:`BINS` / 2 ... :data:`MAX_BINS` bins across the tensor's range, aligned so that a merge is exact).
One pass over the calibration set then gives both the exact min/max and the histogram the range search
needs; a second float pass over every sample (which binned over the final min/max) is not needed.

When the activations of every calibration sample are remembered (small models, see
:class:`converters.calibrate.FloatRuns`), the grid is seeded with the final min/max before any value is
binned: it never grows, and the counts are exactly those of :data:`BINS` bins over [min, max].

:class:`HistogramSet` keeps the histograms of a graph's searched tensors: a padded or reshaped copy of
another searched tensor is not binned (its counts are its source's, plus the pad elements in the pad
value's bin: :func:`derived_sources`), and small tensors are binned several samples at a time
(:class:`SmallBatches`).
"""
from __future__ import annotations

from math import ceil, floor, isfinite
from typing import Optional, Sequence

import numpy as np

BINS = 2048
#: A grid that would pass this many bins merges pairs of bins (halving its resolution) until it does not.
MAX_BINS = 2 * BINS
#: A grid that would have to merge more than this factor at once is laid out again over the new range
#: (each old bin's count goes to the new bin holding its centre): an integer grid that far apart would
#: need indices beyond int64.
_MAX_MERGE = 1 << 30


def histogram_counts(v: np.ndarray, lo: float, hi: float, bins: int = BINS) -> np.ndarray:
    """Counts of ``v`` in ``bins`` equal bins over [lo, hi]; values outside go to the end bins.

    Same bins as ``np.histogram(v, bins, (lo, hi))`` up to float rounding at bin edges, several times
    faster: one scaled float32 cast and a bincount. :class:`Binner` gives the same counts, faster still.
    """
    scaled = (np.asarray(v).reshape(-1) - np.float32(lo)) * np.float32(bins / (hi - lo))
    # clipped before the cast (the same bins as truncating first, and a value too far out for an integer
    # index, or infinite, still lands in the end bin on its side), and after it (NaN: the first bin)
    with np.errstate(invalid="ignore"):
        idx = np.clip(scaled, 0, bins - 1).astype(np.intp)
    np.clip(idx, 0, bins - 1, out=idx)
    return np.bincount(idx, minlength=bins)


class Binner:
    """:func:`histogram_counts` for values known to lie in [lo, hi], in reused buffers.

    The same float32 arithmetic, so every count is identical; but a value in [lo, hi] gives an index
    from 0 to ``bins`` (hi itself, or rounding next to it), never below, so instead of clipping every
    index the count of index ``bins`` is added to the last bin. The scaled values are cast to int32 while
    they are multiplied (one pass; the same truncation as ``astype(np.intp)`` for every index up to
    ``bins``, and float32 -> int32 is vectorised where float32 -> int64 is not: 0.1 against 0.6 ms for 1.3M
    values), and ``v - lo`` is skipped when lo is 0 (it is ``v`` exactly). Anything else (an index below 0
    or above ``bins``, a value that is not float32) falls back to :func:`histogram_counts`.
    """

    def __init__(self, size: int = 0) -> None:
        self._scaled = np.empty(size, np.float32)
        self._index = np.empty(size, np.int32)

    def __call__(self, v: np.ndarray, lo: float, hi: float, bins: int = BINS) -> np.ndarray:
        """Counts of ``v`` in ``bins`` bins over [lo, hi], exactly as :func:`histogram_counts` gives them."""
        n = v.size
        if v.dtype != np.float32 or not (isfinite(lo) and isfinite(hi)):
            return histogram_counts(v, lo, hi, bins)
        if n > self._index.size:  # buffers as large as the largest tensor binned so far
            self._scaled = np.empty(n, np.float32)
            self._index = np.empty(n, np.int32)
        index = self._index[:n]
        scale = np.float32(bins / (hi - lo))
        with np.errstate(invalid="ignore"):  # a value far outside the range overflows int32: it falls back below
            if lo == 0.0:
                np.multiply(v.reshape(-1), scale, out=index, casting="unsafe")  # truncation, as astype(np.intp)
            else:
                scaled = self._scaled[:n]
                np.subtract(v.reshape(-1), np.float32(lo), out=scaled)
                np.multiply(scaled, scale, out=index, casting="unsafe")
        try:
            counts = np.bincount(index, minlength=bins + 1)
        except ValueError:  # a negative index: not within the range after all
            return histogram_counts(v, lo, hi, bins)
        if counts.size != bins + 1:  # beyond the range: clip as histogram_counts does
            return histogram_counts(v, lo, hi, bins)
        counts[bins - 1] += counts[bins]
        return counts[:bins]


class GrowingHistogram:
    """Counts on a grid of equal bins that grows to take every value it is given.

    The grid is seeded with a range (:meth:`seed`, or the first values spanning one): :data:`BINS` bins
    over it. Bins keep their places as it grows: bin ``j`` covers ``origin + [j, j + 1) * width``; a value
    beyond the grid adds whole bins on its side, and when the grid would pass :data:`MAX_BINS` bins, bins
    are merged in aligned groups of 2, 4, ... (``j -> j // k``), which is exact. Values seen before any
    range is spanned (a constant tensor so far) are remembered by value and binned once one is.
    """

    __slots__ = ("origin", "width", "first", "counts", "lo", "hi", "_points")

    def __init__(self) -> None:
        self.origin = 0.0
        self.width = 0.0
        self.first = 0
        self.counts: Optional[np.ndarray] = None
        self.lo = self.hi = 0.0  # the grid's edges
        self._points: dict[float, int] = {}

    @property
    def bins(self) -> int:
        """How many bins the grid has (0 before it is seeded)."""
        return 0 if self.counts is None else int(self.counts.size)

    def seed(self, lo: float, hi: float) -> None:
        """Lay the grid out as :data:`BINS` bins over [lo, hi] (with the values remembered so far), unless it
        already is, or the range is empty."""
        if self.counts is not None or not hi > lo:
            return
        for value in self._points:
            lo, hi = min(lo, value), max(hi, value)
        self.origin, self.width, self.first = lo, (hi - lo) / BINS, 0
        self.lo, self.hi = lo, hi
        self.counts = np.zeros(BINS, np.int64)
        points, self._points = self._points, {}
        for value, n in points.items():
            self._add_value(value, n)

    def cover(self, vmin: float, vmax: float) -> bool:
        """Grow the grid to hold [vmin, vmax]; False while no range has been spanned yet."""
        if self.counts is None:
            span = [vmin, vmax, *self._points]
            self.seed(min(span), max(span))
            return self.counts is not None
        if vmin >= self.lo and vmax <= self.hi:
            return True
        n, w = self.counts.size, self.width
        new_first = min(self.first, floor((vmin - self.origin) / w))
        new_end = max(self.first + n, ceil((vmax - self.origin) / w))
        k = 1
        while -(-new_end // k) - new_first // k > MAX_BINS:
            k *= 2
        if k > _MAX_MERGE:
            self._relay(min(vmin, self.lo), max(vmax, self.hi))
            return True
        start = new_first // k
        grown = np.zeros(-(-new_end // k) - start, np.int64)
        old = np.arange(n, dtype=np.int64) + (self.first - start * k)  # old bins' indices from the new start
        np.add.at(grown, old // k, self.counts)
        self.counts, self.width, self.first = grown, w * k, start
        # the edges as computed, but never inside a value already counted or asked for (float rounding of
        # origin + j * width can land a hair inside)
        self.lo = min(self.origin + start * self.width, self.lo, vmin)
        self.hi = max(self.origin + (start + grown.size) * self.width, self.hi, vmax)
        return True

    def _relay(self, lo: float, hi: float) -> None:
        """Lay the grid out again as :data:`BINS` bins over [lo, hi], each old count in its centre's new bin."""
        assert self.counts is not None
        centres = self.lo + (np.arange(self.counts.size) + 0.5) * self.width
        counts = self.counts
        self.counts = None
        self.seed(lo, hi)
        assert self.counts is not None
        idx = np.clip(((centres - self.lo) / self.width).astype(np.int64), 0, BINS - 1)
        np.add.at(self.counts, idx, counts)

    def add(self, v: np.ndarray, vmin: float, vmax: float, binner: Binner) -> None:
        """Count the values ``v`` (whose min and max are ``vmin`` and ``vmax``)."""
        if not v.size:
            return
        if not self.cover(vmin, vmax):  # every value so far is vmin
            self._points[vmin] = self._points.get(vmin, 0) + int(v.size)
            return
        assert self.counts is not None
        self.counts += binner(v, self.lo, self.hi, self.counts.size)

    def add_value(self, value: float, n: int) -> None:
        """Count ``n`` copies of ``value``."""
        if n <= 0:
            return
        if not self.cover(value, value):
            self._points[value] = self._points.get(value, 0) + n
            return
        self._add_value(value, n)

    def _add_value(self, value: float, n: int) -> None:
        assert self.counts is not None
        self.counts += histogram_counts(np.array([value], np.float32), self.lo, self.hi, self.counts.size) * n

    def copy(self) -> "GrowingHistogram":
        """An independent copy."""
        c = GrowingHistogram()
        c.origin, c.width, c.first, c.lo, c.hi = self.origin, self.width, self.first, self.lo, self.hi
        c.counts = None if self.counts is None else self.counts.copy()
        c._points = dict(self._points)
        return c


#: Tensors of at most this many values are binned several samples at a time (:class:`SmallBatches`), in
#: buffers of at most :data:`BATCH_VALUES` values over all of them ...
SMALL_BIN_VALUES = 4096
BATCH_VALUES = 1 << 18
#: ... and at most this many samples a batch.
BATCH_SAMPLES = 64


class SmallBatches:
    """Float32 values of small tensors gathered over several samples and binned in one call per tensor.

    On a grid that does not grow, counts add up and binning is element by element, so a batch's counts are
    the sum of the counts each of its samples gives (on the digits CNN, 10 binning calls instead of 512). A
    value that is not float32 of the tensor's usual size is binned on its own.
    """

    def __init__(self, sizes: dict[str, int], samples: int) -> None:
        self.sizes = sizes
        self.samples = samples
        self._bufs = {t: np.empty(n * samples, np.float32) for t, n in sizes.items()}
        self._fill = dict.fromkeys(sizes, 0)
        self._lo: dict[str, float] = {}
        self._hi: dict[str, float] = {}
        self._held = 0

    @classmethod
    def plan(cls, sizes: dict[str, int]) -> "Optional[SmallBatches]":
        """Batches for the tensors of ``sizes`` (values a sample) of at most :data:`SMALL_BIN_VALUES` values,
        as many samples a batch as :data:`BATCH_VALUES` allows (None when fewer than two would fit)."""
        small = {t: n for t, n in sizes.items() if 0 < n <= SMALL_BIN_VALUES}
        total = sum(small.values())
        samples = min(BATCH_SAMPLES, BATCH_VALUES // total) if total else 0
        return cls(small, samples) if samples >= 2 else None

    def add(self, t: str, v: np.ndarray, vmin: float, vmax: float, hist: GrowingHistogram, binner: Binner) -> None:
        """Take one sample's values ``v`` of tensor ``t`` (counted into ``hist`` now when they cannot wait)."""
        n = self.sizes[t]
        if v.dtype != np.float32 or v.size != n:
            hist.add(v, vmin, vmax, binner)
            return
        i = self._fill[t]
        self._bufs[t][i:i + n] = v.reshape(-1)
        self._fill[t] = i + n
        self._lo[t] = min(self._lo.get(t, vmin), vmin)
        self._hi[t] = max(self._hi.get(t, vmax), vmax)

    def sample_done(self, hists: dict[str, GrowingHistogram], binner: Binner) -> None:
        """One more sample taken: bin the batch when it is full."""
        self._held += 1
        if self._held >= self.samples:
            self.flush(hists, binner)

    def flush(self, hists: dict[str, GrowingHistogram], binner: Binner) -> None:
        """Count every value gathered so far."""
        for t, k in self._fill.items():
            if k:
                hists[t].add(self._bufs[t][:k], self._lo.pop(t), self._hi.pop(t), binner)
                self._fill[t] = 0
        self._held = 0


#: Ops whose output holds its first input's values rearranged: the same values, so the same counts.
_SAME_VALUES = ("RESHAPE", "TRANSPOSE", "DEPTH_TO_SPACE", "SPACE_TO_DEPTH")


def derived_sources(graph, candidates: Sequence[str]) -> dict[str, tuple[str, Optional[float]]]:  # type: ignore[no-untyped-def]
    """The candidates whose histogram follows from another candidate's, with no binning.

    ``{tensor: (source, pad value or None)}`` (a source may itself be derived; graph order gives the
    sources first). A RESHAPE, TRANSPOSE, DEPTH_TO_SPACE or SPACE_TO_DEPTH output holds its input's values;
    a PAD (value 0) or PADV2 (a finite value) output with no negative pad holds its input's values plus the
    pad value on every element it adds. Float tensors only.
    """
    from converters.ir import unquantized_tensors

    raw = unquantized_tensors(graph)
    have = set(candidates)
    found: dict[str, tuple[str, Optional[float]]] = {}
    for op in graph.ops:
        if not op.inputs or len(op.outputs) != 1 or op.act != "NONE":
            continue
        t, src = op.outputs[0], op.inputs[0]
        if t not in have or src not in have or t in raw or src in raw:
            continue
        if op.kind in _SAME_VALUES:
            found[t] = (src, None)
        elif op.kind in ("PAD", "PADV2") and all(b >= 0 and e >= 0 for b, e in op.attrs["pads"]):
            value = float(np.float32(op.attrs.get("value", 0.0))) if op.kind == "PADV2" else 0.0
            if isfinite(value):
                found[t] = (src, value)
    return found


class HistogramSet:
    """The histograms of a graph's searched tensors, fed one sample's activations at a time.

    ``add(vals, mins, maxs)`` takes a sample's values with each tensor's min and max (calibration computes
    them anyway); :meth:`result` gives a tensor's final histogram. A derived tensor (:func:`derived_sources`)
    is checked on every sample (its size and min/max are what its source's give); a sample where it is not
    makes it a binned tensor from then on, starting from the counts its source gave so far.
    """

    def __init__(self, graph, candidates: Sequence[str]) -> None:  # type: ignore[no-untyped-def]
        self.hists = {t: GrowingHistogram() for t in candidates}
        self.derived = derived_sources(graph, candidates)
        self._order = [t for t in graph.activations() if t in self.derived]  # sources first
        self._pads = dict.fromkeys(self.derived, 0)
        self._small: Optional[SmallBatches] = None
        self._planned = False
        self._binned: list[str] = []
        self.binner = Binner()

    def seed(self, ranges: dict[str, tuple[float, float]]) -> None:
        """Lay out every grid not laid out yet over its tensor's range so far (called once, before any
        :meth:`add`). A derived tensor whose range so far is not its source's gets its own grid and is
        binned: over final ranges (every sample remembered), derived counts are then exactly the counts
        binning the tensor gives."""
        for t in list(self.derived):
            if ranges.get(t) != ranges.get(self.derived[t][0]):
                del self.derived[t]
        self._order = [t for t in self._order if t in self.derived]
        for t, h in self.hists.items():
            if t in ranges:
                h.seed(*ranges[t])

    def _plan(self, vals: dict[str, np.ndarray]) -> None:
        sizes = {t: int(vals[t].size) for t in self.hists if t in vals}
        small = SmallBatches.plan(sizes)
        if small is not None:  # a derived tensor's counts need its source's of the same sample: small ones are
            # batched instead (each from its own values)
            self.derived = {t: d for t, d in self.derived.items() if t not in small.sizes and d[0] not in small.sizes}
            self._order = [t for t in self._order if t in self.derived]
        self._small = small
        self._binned = [t for t in self.hists if t not in self.derived and (small is None or t not in small.sizes)]
        self._planned = True

    def _holds_source_values(self, t: str, vals: dict, mins: dict, maxs: dict) -> bool:
        src, value = self.derived[t]
        if t not in vals or src not in vals:
            return t not in vals  # nothing of it to count this sample
        added = vals[t].size - vals[src].size
        if value is None:
            return added == 0 and mins[t] == mins[src] and maxs[t] == maxs[src]
        if added < 0:
            return False
        lo, hi = (min(mins[src], value), max(maxs[src], value)) if added else (mins[src], maxs[src])
        return mins[t] == lo and maxs[t] == hi

    def add(self, vals: dict[str, np.ndarray], mins: dict[str, float], maxs: dict[str, float]) -> None:
        """Count one sample's activations."""
        if not self._planned:
            self._plan(vals)
        for t in self._order:  # before any of this sample is counted: a source's counts so far
            if t not in self.derived:
                continue
            if self._holds_source_values(t, vals, mins, maxs):
                if t in vals and self.derived[t][1] is not None:
                    self._pads[t] += vals[t].size - vals[self.derived[t][0]].size
            else:  # binned from now on
                self.hists[t] = self._resolved(t)
                del self.derived[t]
                self._binned.append(t)
        binner = self.binner
        for t in self._binned:
            if t in vals:
                self.hists[t].add(vals[t], mins[t], maxs[t], binner)
        if self._small is not None:
            for t in self._small.sizes:
                if t in vals:
                    self._small.add(t, vals[t], mins[t], maxs[t], self.hists[t], binner)
            self._small.sample_done(self.hists, binner)

    def _resolved(self, t: str) -> GrowingHistogram:
        """A derived tensor's counts so far: its source's (resolved in turn), plus its pad elements."""
        if t not in self.derived:
            return self.hists[t]
        src, value = self.derived[t]
        h = self._resolved(src).copy()
        if value is not None:
            h.add_value(value, self._pads[t])
        return h

    def finish(self) -> None:
        """Count what is still gathered in small-tensor batches."""
        if self._small is not None:
            self._small.flush(self.hists, self.binner)

    def result(self, t: str) -> Optional[tuple[np.ndarray, float, float]]:
        """``(counts, lo edge, hi edge)`` of tensor ``t`` (after :meth:`finish`); None when it never spanned a
        range."""
        h = self._resolved(t)
        return None if h.counts is None else (h.counts, h.lo, h.hi)


#: The MSE search's clipping-error buffer (see :func:`mse_range`).
_ERR_BLOCK_BYTES = 512 << 10


def mse_range(hist: np.ndarray, edge_lo: float, edge_hi: float, lo: Optional[float] = None,
              hi: Optional[float] = None) -> tuple[float, float]:
    """Range minimising expected quantization MSE for a histogram over [edge_lo, edge_hi] of values whose
    min and max are ``lo`` and ``hi`` (the edges when not given).

    Error model per bin centre x: rounding noise scale^2/12 inside the range, (x - clip(x))^2
    outside. The two ends are searched separately (a few rounds of coordinate descent over
    86 shrink factors of ``lo`` and ``hi`` each), so a one-sided outlier does not drag the other end in.
    """
    lo = edge_lo if lo is None else lo
    hi = edge_hi if hi is None else hi
    edges = np.linspace(edge_lo, edge_hi, hist.size + 1)
    keep = hist > 0  # empty bins add nothing to either error term; small tensors fill few bins
    centers = ((edges[:-1] + edges[1:]) / 2)[keep]
    w = hist[keep].astype(np.float64)
    factors = np.linspace(0.15, 1.0, 86)
    # the clipping error of a block of candidates at a time, in one buffer of at most 512 KB: each
    # row's sum is the one over the whole (candidates, bins) array, and a (86, 2048) buffer per
    # tensor (1.4 MB) measured 2 MB more peak RSS on the digits CNN
    rows = max(1, min(factors.size, _ERR_BLOCK_BYTES // (8 * max(1, centers.size))))
    err = np.empty((rows, centers.size))
    wsum = w.sum()

    def cost(clo: np.ndarray, chi: np.ndarray) -> np.ndarray:
        scale = np.maximum(chi - clo, 1e-12) / 255.0
        sums = np.empty(clo.size)
        for r in range(0, clo.size, rows):  # (centers - clip(centers, clo, chi)) ** 2 * w, summed per row
            e = err[:min(rows, clo.size - r)]
            np.maximum(centers[None, :], clo[r:r + rows, None], out=e)
            np.minimum(e, chi[r:r + rows, None], out=e)
            np.subtract(centers[None, :], e, out=e)
            np.square(e, out=e)
            np.multiply(e, w[None, :], out=e)
            e.sum(axis=1, out=sums[r:r + rows])
        return sums + wsum * scale ** 2 / 12.0

    his = np.maximum(hi * factors, 0.0)
    los = np.minimum(lo * factors, 0.0)
    # each end's search is a function of the other end alone: remember its answers, so rounds that
    # change nothing cost nothing; an end whose candidates are all equal (lo >= 0: all 0) is that value
    # (the first of equal costs, as argmin takes it)
    hi_for: dict[float, float] = {}
    lo_for: dict[float, float] = {}
    best_lo, best_hi = min(lo, 0.0), max(hi, 0.0)
    for _ in range(3):
        if best_lo not in hi_for:
            hi_for[best_lo] = float(his[0]) if hi <= 0 else \
                float(his[int(np.argmin(cost(np.full_like(his, best_lo), his)))])
        best_hi = hi_for[best_lo]
        if best_hi not in lo_for:
            lo_for[best_hi] = float(los[0]) if lo >= 0 else \
                float(los[int(np.argmin(cost(los, np.full_like(los, best_hi))))])
        best_lo = lo_for[best_hi]
    return best_lo, best_hi


def percentile_range(hist: np.ndarray, edge_lo: float, edge_hi: float, lo: Optional[float] = None,
                     hi: Optional[float] = None, q: float = 1e-4) -> tuple[float, float]:
    """The ``q`` and ``1 - q`` quantiles of a histogram over [edge_lo, edge_hi] (as bin edges), within the
    values' own [lo, hi] when given."""
    cdf = np.cumsum(hist).astype(np.float64)
    cdf /= max(cdf[-1], 1.0)
    edges = np.linspace(edge_lo, edge_hi, hist.size + 1)
    i_lo = int(np.searchsorted(cdf, q))
    i_hi = int(np.searchsorted(cdf, 1.0 - q))
    a, b = float(edges[i_lo]), float(edges[min(i_hi + 1, hist.size)])
    return max(a, edge_lo if lo is None else lo), min(b, edge_hi if hi is None else hi)
