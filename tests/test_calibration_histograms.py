"""One-pass activation histograms (:mod:`converters.calibration_histograms`).

- seeded with the final range, a :class:`GrowingHistogram` never grows and its counts are exactly
  :func:`histogram_counts` over all values;
- not seeded, it grows by whole bins and merges aligned bins: totals kept, every value covered, counts
  those of equal bins over the final grid (up to float32 rounding at edges), merges exact;
- huge jumps (relay), constant starts, :class:`Binner` against :func:`histogram_counts`,
  :class:`SmallBatches`, and the range searches over a grid wider than the values.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from converters.calibration_histograms import (
    _MAX_MERGE,
    BATCH_VALUES,
    BINS,
    MAX_BINS,
    SMALL_BIN_VALUES,
    Binner,
    GrowingHistogram,
    SmallBatches,
    histogram_counts,
    mse_range,
    percentile_range,
)

SHAPES = [(1, 8, 8, 16), (300,), (3, 7, 11), (1, 1), (2, 64, 33), (4096,)]


def _chunks(kind, rng):
    """Float32 chunks of various shapes of one kind of activation."""
    out = []
    for i, shape in enumerate(SHAPES):
        x = rng.standard_normal(shape)
        if kind == "relu":
            v = np.maximum(x, 0.0) * 3.0
        elif kind == "signed":
            v = x * 2.0 - 0.5
        elif kind == "tiny":
            v = x * 1e-7
        elif kind == "huge":
            v = x * 1e6 + 3e5
        elif kind == "outliers":
            v = x.copy()
            v.reshape(-1)[0] = 40.0 * (i + 1) if i % 2 else -25.0 * (i + 1)
        elif kind == "offset":  # far from 0 relative to its spread
            v = 100.0 + x
        else:
            raise ValueError(kind)
        out.append(v.astype(np.float32))
    return out


def _moved(a, b):
    """About how many values sit in different bins in ``a`` and ``b`` (same totals): sum of |cdf difference|."""
    return int(np.abs(np.cumsum(a) - np.cumsum(b)).sum())


def _bin_of(h, value):
    """The bin of ``h``'s grid holding ``value`` (the last bin holds hi)."""
    return min(int(np.floor((value - h.lo) / h.width)), h.bins - 1)


# 1. seeded with the final range ---------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["relu", "signed", "tiny", "huge", "outliers", "offset"])
def test_seeded_with_final_range_counts_equal_histogram_counts_and_grid_never_grows(kind):
    """Seeded with the final [min, max], every chunk lands in the fixed BINS-bin grid exactly as
    histogram_counts over all values puts it."""
    chunks = _chunks(kind, np.random.default_rng(1))
    lo = float(min(c.min() for c in chunks))
    hi = float(max(c.max() for c in chunks))
    h = GrowingHistogram()
    h.seed(lo, hi)
    binner = Binner()
    for v in chunks:
        h.add(v, float(v.min()), float(v.max()), binner)
        assert h.bins == BINS and h.lo == lo and h.hi == hi
    everything = np.concatenate([c.reshape(-1) for c in chunks])
    assert np.array_equal(h.counts, histogram_counts(everything, lo, hi))
    assert h.counts.sum() == everything.size


# 2. grown from the first chunk -----------------------------------------------------------------------------

def _widening_chunks(kind, rng, n=40):
    """A narrow first chunk, then chunks reaching further out (one side or both), ~500x wider at the end."""
    chunks = []
    for i in range(n):
        grow = 1.2 ** i
        x = rng.standard_normal(int(rng.integers(200, 3000)))
        if kind == "relu":
            v = np.maximum(x, 0.0) * 0.01 * grow
        elif kind == "alternating":  # the lower end in even chunks, the upper in odd ones
            v = 0.01 * x
            v[0] = -0.03 * grow if i % 2 == 0 else 0.03 * grow
        elif kind == "upward":  # drifting up: the grid grows at its top
            v = 0.01 * x + 0.02 * grow
        else:
            raise ValueError(kind)
        chunks.append(v.astype(np.float32))
    return chunks


def _grow(chunks):
    h = GrowingHistogram()
    binner = Binner()
    sizes = []
    for v in chunks:
        h.add(v, float(v.min()), float(v.max()), binner)
        sizes.append(h.bins)
    return h, sizes


@pytest.mark.parametrize("kind", ["relu", "alternating", "upward"])
def test_unseeded_grid_grows_to_cover_every_value_with_bounded_bins(kind):
    """Grown from the first chunk: the total is every value, the grid covers [min, max], and it holds
    BINS..MAX_BINS bins (BINS exactly until it first grows; never fewer, as a merge is only by the factor
    needed, which leaves more than MAX_BINS / 2 = BINS bins), of which more than BINS / 2 lie across
    [min, max]."""
    chunks = _widening_chunks(kind, np.random.default_rng(2))
    h, sizes = _grow(chunks)
    everything = np.concatenate(chunks)
    assert h.counts.sum() == everything.size
    assert h.lo <= float(everything.min()) and h.hi >= float(everything.max())
    assert sizes[0] == BINS
    assert all(BINS <= s <= MAX_BINS for s in sizes)
    assert len(set(sizes)) > 3  # it did grow, and merged (sizes fell back) along the way
    assert any(b < a for a, b in zip(sizes, sizes[1:]))
    across = (float(everything.max()) - float(everything.min())) / h.width
    assert across > BINS // 2


@pytest.mark.parametrize("kind", ["relu", "alternating", "upward"])
def test_unseeded_counts_equal_equal_bins_over_final_grid_up_to_edge_rounding(kind):
    """The grown counts are np.histogram's over the final grid but for values within float32 rounding of a
    bin edge; a grid off by one bin would move far more values."""
    chunks = _widening_chunks(kind, np.random.default_rng(3))
    h, _ = _grow(chunks)
    everything = np.concatenate(chunks).astype(np.float64)
    want, _ = np.histogram(everything, bins=np.linspace(h.lo, h.hi, h.bins + 1))
    assert want.sum() == everything.size
    bound = 1e-4 * everything.size
    assert _moved(h.counts, want) <= bound
    shifted, _ = np.histogram(everything, bins=np.linspace(h.lo + h.width, h.hi + h.width, h.bins + 1))
    shifted[-1] += everything.size - shifted.sum()  # values below the shifted grid: same total
    assert _moved(h.counts, shifted) > 50 * bound


# 3. merges are exact ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("reach", [(-0.5, 1.0), (0.0, 1.7), (-3.2, 2.0), (-40.0, 0.5), (0.0, 123.4)])
def test_cover_merges_pre_merge_counts_in_aligned_groups(reach):
    """cover() keeps old bin edges as new bin edges (origin fixed, width times k) and each new bin's count is
    the sum of the old bins inside it."""
    rng = np.random.default_rng(4)
    h = GrowingHistogram()
    h.seed(0.0, 1.0)
    h.counts[:] = rng.integers(0, 1000, h.bins)
    for step in range(3):  # merge, then merge again from the merged grid
        vmin, vmax = reach[0] * 3 ** step, reach[1] * 3 ** step
        old, old_lo, old_w, old_first = h.counts.copy(), h.lo, h.width, h.first
        assert h.cover(vmin, vmax)
        k = round(h.width / old_w)
        assert h.width == old_w * k and k >= 1 and (k & (k - 1)) == 0
        assert h.lo <= vmin and h.hi >= vmax and h.bins <= MAX_BINS
        # each old bin [old_lo + i w, old_lo + (i + 1) w) lies inside new bin j = (old_first + i) // k - first
        j = (old_first + np.arange(old.size)) // k - h.first
        assert j.min() >= 0 and j.max() < h.bins
        left = h.lo + j * h.width
        assert np.all(left <= old_lo + np.arange(old.size) * old_w + 1e-9 * old_w * k)
        assert np.all(old_lo + (np.arange(old.size) + 1) * old_w <= left + h.width + 1e-9 * old_w * k)
        want = np.bincount(j, weights=old, minlength=h.bins).astype(np.int64)
        assert np.array_equal(h.counts, want)
        assert (h.lo - h.origin) / h.width == pytest.approx(round((h.lo - h.origin) / h.width), abs=1e-6)


def test_cover_within_grid_changes_nothing():
    """A range already inside the grid leaves grid and counts as they are."""
    h = GrowingHistogram()
    h.seed(-1.0, 2.0)
    h.counts[:] = 3
    assert h.cover(-1.0, 2.0) and h.cover(0.5, 0.5)
    assert (h.lo, h.hi, h.bins, h.width) == (-1.0, 2.0, BINS, 3.0 / BINS)
    assert np.all(h.counts == 3)


def test_merged_grid_still_covers_the_seeded_range():
    """After growing far on one side, the grid still holds the other side's extreme value."""
    h = GrowingHistogram()
    h.seed(-1e8, 1e-5)
    h.cover(-1e9, 0.0)
    assert h.lo <= -1e9 and h.hi >= 1e-5  # origin + j * width alone gives 9.99868e-06


# 4. huge jumps ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("far", [1e12, -1e12])
def test_huge_jump_relays_the_grid_and_keeps_every_count(far):
    """A first chunk spanning 1e-6 then a value 1e12 away would merge by more than _MAX_MERGE: the grid is laid
    out again as BINS bins over the whole range, the old counts in the bin of their place."""
    rng = np.random.default_rng(5)
    first = rng.uniform(0.0, 1e-6, 1000).astype(np.float32)
    h = GrowingHistogram()
    binner = Binner()
    h.add(first, float(first.min()), float(first.max()), binner)
    span_bins = abs(far) / h.width
    assert span_bins / MAX_BINS > _MAX_MERGE  # the relay path, not a merge
    jump = np.array([far, 0.5e-6], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        h.add(jump, float(jump.min()), float(jump.max()), binner)
    assert h.bins == BINS and h.first == 0
    assert h.counts.sum() == 1002
    values = np.concatenate([first, jump])
    assert h.lo <= float(values.min()) and h.hi >= float(values.max())
    near = _bin_of(h, 0.5e-6)
    far_bin = _bin_of(h, float(np.float32(far)))
    assert h.counts[near] == 1001 and h.counts[far_bin] == 1
    later = rng.uniform(-2e12, 2e12, 500).astype(np.float32)  # and it grows on from there
    h.add(later, float(later.min()), float(later.max()), binner)
    assert h.counts.sum() == 1502 and h.lo <= float(later.min()) and h.hi >= float(later.max())


# 5. degenerate starts --------------------------------------------------------------------------------------

def test_constant_chunks_are_remembered_until_a_range_is_spanned():
    """All-zero chunks (and add_value of the same value) before any spread: no grid; the first different
    value lays out the grid over all of them, each constant in its own bin."""
    h = GrowingHistogram()
    binner = Binner()
    for shape in [(4, 4), (10,), (1, 3, 3)]:
        z = np.zeros(shape, np.float32)
        h.add(z, 0.0, 0.0, binner)
        assert h.counts is None and h.bins == 0
    h.add_value(0.0, 5)
    assert h.counts is None
    h.add(np.full(7, 2.5, np.float32), 2.5, 2.5, binner)  # another constant: now [0, 2.5] is spanned
    assert h.bins == BINS and (h.lo, h.hi) == (0.0, 2.5)
    assert h.counts.sum() == 16 + 10 + 9 + 5 + 7
    assert h.counts[0] == 16 + 10 + 9 + 5 and h.counts[-1] == 7
    h.add(np.full(3, -1.0, np.float32), -1.0, -1.0, binner)  # a third constant grows the grid
    assert h.counts.sum() == 50 and h.lo <= -1.0
    assert h.counts[_bin_of(h, -1.0)] == 3 and h.counts[_bin_of(h, 0.0)] == 40
    assert h.counts[_bin_of(h, 2.5)] == 7


def test_add_value_before_seeding_widens_the_seeded_range():
    """Values remembered before seed() are part of the grid it lays out (it spans them too)."""
    h = GrowingHistogram()
    h.add_value(5.0, 10)
    h.add_value(-2.0, 0)  # nothing counted, nothing remembered
    h.seed(0.0, 1.0)
    assert (h.lo, h.hi, h.bins) == (0.0, 5.0, BINS)
    assert h.counts.sum() == 10 and h.counts[-1] == 10


def test_add_value_after_seeding_lands_in_the_bin_holding_it():
    """add_value on a laid-out grid counts n copies in the value's bin, growing the grid when needed."""
    h = GrowingHistogram()
    h.seed(-1.0, 1.0)
    for value, n in [(0.3, 4), (-1.0, 2), (1.0, 1), (7.75, 6), (-0.999, 3)]:
        h.add_value(value, n)
        assert h.counts[_bin_of(h, value)] >= n
    assert h.counts.sum() == 16
    assert h.lo <= -1.0 and h.hi >= 7.75
    assert h.counts[_bin_of(h, 7.75)] == 6


def test_seed_with_empty_range_lays_nothing_out():
    """seed(x, x) does nothing (the grid waits for a spread), and an empty chunk counts nothing."""
    h = GrowingHistogram()
    h.seed(1.0, 1.0)
    assert h.counts is None
    h.add(np.zeros(0, np.float32), 0.0, 0.0, Binner())
    assert h.counts is None and not h._points


def test_copy_is_independent():
    """A copy's counts and remembered values do not follow the original's (nor the original the copy's)."""
    h = GrowingHistogram()
    h.add_value(1.0, 2)
    c = h.copy()
    h.add_value(3.0, 1)
    assert c.counts is None and h.counts is not None
    c.add_value(2.0, 1)
    assert c.counts.sum() == 3 and h.counts.sum() == 3
    d = h.copy()
    d.add_value(1.5, 9)
    d.add(np.array([1.0, 2.0], np.float32), 1.0, 2.0, Binner())
    assert h.counts.sum() == 3 and d.counts.sum() == 14
    assert (d.lo, d.hi, d.bins) == (h.lo, h.hi, h.bins)


# 6. Binner --------------------------------------------------------------------------------------------------

def _edge_values(lo, hi, bins):
    """float32 values at, just below and just above every bin edge of [lo, hi], clipped to it."""
    edges = np.linspace(lo, hi, bins + 1).astype(np.float32)
    v = np.concatenate([edges, np.nextafter(edges, np.float32(-np.inf)), np.nextafter(edges, np.float32(np.inf))])
    return np.clip(v, np.float32(lo), np.float32(hi))


@pytest.mark.parametrize("bins", [BINS, 3000, 4096, 1025])
@pytest.mark.parametrize("lo,hi", [(0.0, 6.0), (-2.5, 3.25), (-1e-3, 7.0), (1e-8, 3e-8), (-5e5, -1e3), (0.1, 0.7)])
def test_binner_equals_histogram_counts_at_every_bin_edge(bins, lo, hi):
    """At, just below and just above every edge (and random values), Binner's counts are histogram_counts'."""
    v = _edge_values(lo, hi, bins)
    v = np.concatenate([v, np.random.default_rng(6).uniform(lo, hi, 5000).astype(np.float32)])
    binner = Binner()
    assert np.array_equal(binner(v, lo, hi, bins), histogram_counts(v, lo, hi, bins))
    assert binner(v, lo, hi, bins).sum() == v.size
    small = v[:37]  # a smaller array in the now larger buffers
    assert np.array_equal(binner(small, lo, hi, bins), histogram_counts(small, lo, hi, bins))


@pytest.mark.parametrize("outside", [-1.0, 7.0, 3e9, -3e9, 1e16, -1e16])
def test_binner_values_outside_the_range_fall_back_quietly(outside):
    """Values below lo, beyond hi, or overflowing int32 fall back to histogram_counts' clipping (into the end
    bin on their side), warning-free."""
    v = np.array([0.5, 2.0, outside, 5.99], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = Binner()(v, 0.0, 6.0)
        got_signed = Binner()(v, -0.25, 6.0)
        want = histogram_counts(v, 0.0, 6.0)
        want_signed = histogram_counts(v, -0.25, 6.0)
    assert np.array_equal(got, want) and np.array_equal(got_signed, want_signed)
    assert got.sum() == 4
    assert got[0 if outside < 0 else BINS - 1] == 1


@pytest.mark.parametrize("outside", [1e30, -1e30, np.inf, -np.inf])
def test_binner_values_beyond_int64_indices_fall_back_quietly_to_their_end_bin(outside):
    """Values so far out that their index passes int64 still go quietly to the end bin on their side."""
    v = np.array([0.5, outside], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = Binner()(v, 0.0, 6.0)
    assert got[0 if outside < 0 else BINS - 1] == 1


def test_binner_non_float32_input_takes_the_plain_path():
    """float64 (and float16) values are binned by histogram_counts itself (in their own precision), and leave
    Binner's buffers alone."""
    rng = np.random.default_rng(7)
    lo, hi = -1.0, 3.0
    v64 = np.concatenate([np.linspace(lo, hi, BINS + 1), rng.uniform(lo, hi, 20000)])
    binner = Binner()
    assert np.array_equal(binner(v64, lo, hi), histogram_counts(v64, lo, hi))
    v16 = v64.astype(np.float16)
    assert np.array_equal(binner(v16, lo, hi), histogram_counts(v16, lo, hi))
    assert binner._index.size == 0


# 7. SmallBatches --------------------------------------------------------------------------------------------

def test_small_batches_on_a_seeded_grid_equal_per_sample_counts():
    """Batched over samples (with flushes when full and at the end), every tensor's counts equal binning each
    sample on its own, including samples of another dtype or size, which are binned at once."""
    rng = np.random.default_rng(8)
    sizes = {"a": 37, "b": 640, "c": 4096}
    ranges = {"a": (0.0, 6.0), "b": (-2.5, 3.25), "c": (float(np.float32(-1e-3)), float(np.float32(7.0)))}
    batches = SmallBatches(sizes, samples=3)
    got = {t: GrowingHistogram() for t in sizes}
    want = {t: GrowingHistogram() for t in sizes}
    for t in sizes:
        got[t].seed(*ranges[t])
        want[t].seed(*ranges[t])
    binner, plain = Binner(), Binner()
    for i in range(8):
        for t, n in sizes.items():
            lo, hi = ranges[t]
            v = rng.uniform(lo, hi, n).astype(np.float32)
            if t == "b" and i == 4:  # another dtype: float64 halfway between float32 values at bin edges
                e32 = (lo + (hi - lo) * np.arange(1, n + 1) / BINS).astype(np.float32)
                v = (e32.astype(np.float64) + np.nextafter(e32, np.float32(-np.inf)).astype(np.float64)) / 2
                assert not np.array_equal(histogram_counts(v, lo, hi), histogram_counts(v.astype(np.float32), lo, hi))
            if t == "a" and i == 5:
                v = rng.uniform(lo, hi, 50).astype(np.float32)  # another size
            v.reshape(-1)[0], v.reshape(-1)[-1] = lo, hi
            batches.add(t, v, float(v.min()), float(v.max()), got[t], binner)
            want[t].add(v, float(v.min()), float(v.max()), plain)
        batches.sample_done(got, binner)
        if i in (2, 5):  # full batches were flushed: every sample so far is counted
            assert all(np.array_equal(got[t].counts, want[t].counts) for t in sizes)
    batches.flush(got, binner)
    for t in sizes:
        assert got[t].bins == BINS
        assert np.array_equal(got[t].counts, want[t].counts)
        assert got[t].counts.sum() == 8 * sizes[t] + (50 - 37 if t == "a" else 0)


def test_small_batches_on_a_growing_grid_cover_every_sample():
    """Unseeded, a batch is binned with the min and max over all its samples: the grid grows to hold them all,
    and every value is counted."""
    rng = np.random.default_rng(12)
    batches = SmallBatches({"a": 100}, samples=4)
    hists = {"a": GrowingHistogram()}
    binner = Binner()
    seen = []
    for i in range(10):
        v = (rng.standard_normal(100) + 4.0 * i).astype(np.float32)  # drifting up: a batch's min is its first
        seen.append(v)
        batches.add("a", v, float(v.min()), float(v.max()), hists["a"], binner)
        batches.sample_done(hists, binner)
    batches.flush(hists, binner)
    everything = np.concatenate(seen)
    h = hists["a"]
    assert h.counts.sum() == 1000
    assert h.lo <= float(everything.min()) and h.hi >= float(everything.max())
    want, _ = np.histogram(everything.astype(np.float64), bins=np.linspace(h.lo, h.hi, h.bins + 1))
    assert _moved(h.counts, want) <= 2


def test_small_batches_plan_takes_small_tensors_and_needs_two_samples():
    """plan() batches only tensors of 1..SMALL_BIN_VALUES values, as many samples as BATCH_VALUES allows (at
    most 64), and gives None when fewer than two samples fit (or nothing is small)."""
    p = SmallBatches.plan({"a": 10, "b": SMALL_BIN_VALUES, "c": SMALL_BIN_VALUES + 1, "d": 0, "e": 10 ** 6})
    assert p is not None and p.sizes == {"a": 10, "b": SMALL_BIN_VALUES}
    assert p.samples == min(64, BATCH_VALUES // (10 + SMALL_BIN_VALUES))
    assert SmallBatches.plan({"a": 5}).samples == 64
    assert SmallBatches.plan({"c": SMALL_BIN_VALUES + 1}) is None
    assert SmallBatches.plan({}) is None
    half = BATCH_VALUES // 2
    many = {f"t{i}": SMALL_BIN_VALUES for i in range(half // SMALL_BIN_VALUES)}  # exactly two samples fit
    assert SmallBatches.plan(many).samples == 2
    many["extra"] = 1  # now only one does
    assert SmallBatches.plan(many) is None


# 8. range searches --------------------------------------------------------------------------------------------

def _activations(kind, rng):
    n = int(rng.integers(2000, 60000))
    if kind == "relu":
        v = np.maximum(rng.standard_normal(n), 0.0) * rng.uniform(0.5, 4.0)
    elif kind == "normal":
        v = rng.standard_normal(n) * rng.uniform(0.1, 3.0) + rng.uniform(-0.5, 0.5)
    else:  # heavy tail
        v = rng.standard_t(3, n) * rng.uniform(0.1, 2.0)
    return v.astype(np.float32)


def test_mse_range_without_lo_hi_uses_the_edges():
    """mse_range(hist, e_lo, e_hi) is mse_range(hist, e_lo, e_hi, e_lo, e_hi)."""
    rng = np.random.default_rng(9)
    for kind in ("relu", "normal", "heavy"):
        v = _activations(kind, rng)
        lo, hi = float(v.min()), float(v.max())
        hist = histogram_counts(v, lo, hi)
        assert mse_range(hist, lo, hi) == mse_range(hist, lo, hi, lo, hi)


def test_mse_range_over_a_wider_grid_picks_the_same_range_given_the_true_lo_hi():
    """Over a grid 3 % wider than [min, max] on each side, with the true lo/hi passed, mse_range picks the range
    it picks over [min, max] in at least 75 % of 40 cases (36 here; 30..39 over 40 seeds: the coarser, shifted
    bin centres tip close calls, most often for heavy tails), and is within one candidate step otherwise."""
    rng = np.random.default_rng(10)
    same = 0
    for case in range(40):
        v = _activations(("relu", "normal", "heavy")[case % 3], rng)
        lo, hi = float(v.min()), float(v.max())
        pad = 0.03 * (hi - lo)
        want = mse_range(histogram_counts(v, lo, hi), lo, hi)
        got = mse_range(histogram_counts(v, lo - pad, hi + pad), lo - pad, hi + pad, lo, hi)
        step_lo, step_hi = abs(lo) * 0.85 / 85, abs(hi) * 0.85 / 85
        same += got == want
        assert abs(got[0] - want[0]) <= step_lo * 1.0001 and abs(got[1] - want[1]) <= step_hi * 1.0001
    assert same >= 30


def test_percentile_range_stays_within_the_given_lo_hi():
    """Over a grid wider than the values, the quantile edges are clipped to the values' own [lo, hi]."""
    rng = np.random.default_rng(11)
    for kind in ("relu", "normal", "heavy"):
        v = _activations(kind, rng)
        lo, hi = float(v.min()), float(v.max())
        pad = 0.03 * (hi - lo)
        hist = histogram_counts(v, lo - pad, hi + pad)
        for q in (0.0, 1e-6, 1e-4, 1e-2):
            a, b = percentile_range(hist, lo - pad, hi + pad, lo, hi, q=q)
            assert lo <= a <= b <= hi
        assert percentile_range(hist, lo - pad, hi + pad, lo, hi, q=0.0)[0] == lo  # the grid's edge is below lo
        a, b = percentile_range(hist, lo - pad, hi + pad, q=0.0)  # without lo/hi: the grid's edges bound it
        assert a == lo - pad and lo < b <= hi + pad


def test_mse_range_keeps_a_clean_range_clips_a_lone_outlier_and_is_mirror_symmetric():
    """Uniform values keep their whole range; one far outlier among 100k is clipped (its end moves in, the
    other end within a few steps); the mirrored histogram gives the mirrored range."""
    rng = np.random.default_rng(13)
    v = rng.uniform(-1.0, 2.0, 100_000).astype(np.float32)
    v[:2] = -1.0, 2.0
    assert mse_range(histogram_counts(v, -1.0, 2.0), -1.0, 2.0) == (-1.0, 2.0)
    w = np.append(v, np.float32(60.0))
    lo, hi = mse_range(histogram_counts(w, -1.0, 60.0), -1.0, 60.0)
    assert -1.0 <= lo <= -0.95 and 2.0 <= hi < 60.0  # (with coarser bins the other end moves a few steps)
    for x in (v, w):
        a, b = float(x.min()), float(x.max())
        hist = histogram_counts(x, a, b)
        lo, hi = mse_range(hist, a, b)
        mlo, mhi = mse_range(hist[::-1].copy(), -b, -a)
        assert (mlo, mhi) == pytest.approx((-hi, -lo), rel=1e-9)
