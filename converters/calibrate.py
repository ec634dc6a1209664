"""Calibration: stream samples through the float model and choose a real range for every activation.

The float model runs in ONNX Runtime (the IR written by :mod:`converters.writers.onnx` with every
activation exposed), through one :class:`FloatRuns` that the whole conversion shares. Two streaming
passes: the first records min/max per tensor (and feeds any observers, e.g. bias correction's input
means), the second fills a 2048-bin histogram over that range (only for methods that need one).
The activations of the first samples are kept within a byte budget, so the second pass and the
report run the float model only for the samples that did not fit. While this sample's statistics
are taken, the float model runs on the next ones in background threads (:func:`ahead`): on the next
two in two threads in both passes (the statistics take less than a run, so one model thread left a
core idle: 0.42 s against 0.27 s for the first pass on the 96x96 benchmark CNN). The second pass bins
only the tensors whose counts do not follow from another's (:func:`derived_histograms`: a padded or
reshaped copy), and small tensors several samples at a time (:class:`_SmallBatches`: one numpy call per
tensor and batch). Every statistic is computed exactly as a serial pass computes it.
Methods:

- ``minmax``: the observed range;
- ``percentile``: the 0.01 % and 99.99 % quantiles;
- ``mse``: the range that minimises the expected squared quantization error (rounding noise
  scale^2/12 inside, clipping error outside), searched over shrunken ranges of the histogram;
- ``auto``: the default, ``mse`` (it measured best; see ``benchmarks/convert_quality.py``).

Model inputs always keep their observed range: clipping the data the user feeds is never helpful.
Ranges the source model fixes (a QDQ model's QuantizeLinear/DequantizeLinear pairs, ``fixed``) are kept as
given and never searched.
"""
from __future__ import annotations

import logging
import os
import time
from contextlib import nullcontext
from math import isfinite
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence

import numpy as np

from converters.calibration_data import CalibrationDataError, CalibrationSet
from converters.ir import Graph, ir_feed
from converters.masked_softmax import masked_softmax_chains, masked_sums
from edge_runtime.progress import NoBar

log = logging.getLogger("converters.calibrate")

METHODS = ("auto", "minmax", "percentile", "mse")
BINS = 2048


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


_M_ARENA_MAX = -8  # glibc's mallopt parameter


def share_one_heap() -> None:
    """Make threads started from now on allocate from the main heap (glibc's ``M_ARENA_MAX`` = 1).

    A thread that gets its own glibc arena keeps what it freed there: with the float model running
    in a background thread (:func:`ahead`) and ONNX Runtime's worker threads, that measured 12 MB more
    peak RSS on a 1.9M-parameter CNN, and the extra varied from run to run. One heap keeps the peak
    where a single thread has it. It stays in effect for the process (glibc fixes its arena limit when
    it first needs it); the only cost is a shared malloc lock. No-op off glibc.
    """
    global _heap_shared
    if _heap_shared:
        return
    _heap_shared = True
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").mallopt(_M_ARENA_MAX, 1)
    except (OSError, AttributeError):
        pass


_heap_shared = False


def float_session(graph: Graph, expose_all: bool = True, threads: int = 1) -> Any:
    """An ONNX Runtime session over the float IR (NHWC inputs), all activations exposed when asked.

    ``threads`` intra-op threads (idle ones sleep rather than spin). More than one gave bit-identical
    activations on every test and benchmark model tried (``tests/test_convert_speed_exact.py`` checks
    two), but the conversion runs the model in a background thread (:func:`ahead`) next to its own
    numpy work, and there two threads cost 46 % more CPU per run on the 96x96 benchmark CNN (2.79
    against 1.91 ms) and made the conversion slower (1.95 against 1.81 s, 7 alternated runs); on the
    digits CNN each run took 1.7-4x as long. So one thread by default.
    """
    import onnxruntime as ort

    from converters.writers.onnx import build_onnx

    serialized = build_onnx(graph, None, expose_all=expose_all, source_layout=False).SerializeToString()
    share_one_heap()  # before ONNX Runtime starts its threads
    so = ort.SessionOptions()
    so.intra_op_num_threads = max(1, threads)
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3
    so.enable_cpu_mem_arena = False  # same results; the arena would keep every activation's peak (~12 MB on a 2M CNN)
    return ort.InferenceSession(serialized, so, providers=["CPUExecutionProvider"])


def run_float(sess, graph: Graph, x_ir: "np.ndarray | dict[str, np.ndarray]",  # type: ignore[no-untyped-def]
              only: Optional[Sequence[str]] = None) -> dict[str, np.ndarray]:
    """Run one NHWC sample; return every exposed tensor by IR name (plus the inputs). ``x_ir`` is the
    input's array (a one-input model) or ``{input name: array}`` (:func:`converters.ir.ir_feed`). An
    integer input (token ids, bytes, indices) is fed as int32, whatever integer type it has.

    ``only``: the IR names wanted (e.g. the graph outputs); ONNX Runtime then hands back just those
    (the same values, without copying every activation out). All are returned when one is not exposed.
    """
    feed = dict(x_ir) if isinstance(x_ir, dict) else {graph.inputs[0]: x_ir}
    for n, v in feed.items():
        if n in graph.input_dtypes and v.dtype != np.int32:  # token ids, bytes, indices: int32
            feed[n] = np.asarray(v).astype(np.int32)
    names = [o.name for o in sess.get_outputs()]
    if only is not None:
        wanted = {n for n in only if n not in feed}
        picked = [n for n in names if n.removesuffix("/float") in wanted]
        if len(picked) == len(wanted):
            names = picked
    vals = sess.run(names, feed)
    out = {n.removesuffix("/float"): v for n, v in zip(names, vals)}
    out.update(feed)
    return out


def _progress(total: int, desc: str, enabled: bool):  # type: ignore[no-untyped-def]
    """A bar on stderr when ``enabled`` (tqdm is imported only then), as a context manager."""
    if not enabled:
        return nullcontext(NoBar())
    from edge_runtime.progress import progress

    return progress(total, desc, show=True)


#: Float activations of the first calibration samples are kept up to this many bytes (all of them for
#: small models): the histogram pass and the report reuse them instead of running the model again.
KEEP_BYTES = 8 << 20
Observer = Callable[[int, dict], None]


#: :meth:`FloatRuns.stream` runs the float model on this many samples at once (one ONNX Runtime thread
#: each, at most one per CPU) while the caller works on the current one.
FLOAT_WORKERS = 2

#: ... and this many in the histogram pass: its binning now takes less CPU a sample than a model run
#: (2.8-3.4 against 3.4-3.6 ms on the 96x96 benchmark CNN, measured in the pass), so a second model
#: thread keeps both cores busy (calibration 0.625 against 0.659 s, medians of 11 alternated runs).
HIST_WORKERS = 2

#: :func:`ahead` hands items to its background thread only when ``fn`` takes at least this long on the
#: first item: for a small model (the digits CNN: 0.02-0.1 ms a float run) handing each sample to another
#: thread costs more than it saves.
AHEAD_MIN_S = 1e-3


def ahead(fn: Callable[[Any], Any], items: Iterable[Any], background: Optional[bool] = None,
          workers: int = 1) -> Iterator[tuple[Any, Any]]:
    """Yield ``(item, fn(item))`` for every item in order, computing ``fn`` of the next ``workers``
    items in as many background threads while the caller works on this one.

    Worth it when ``fn`` mostly runs native code that releases the GIL (ONNX Runtime, LiteRT) and
    takes a while: the first item runs in the caller's thread, and when it took less than
    :data:`AHEAD_MIN_S` the rest do too (``background`` True or False decides without timing).
    ``items`` is read in the caller's thread, ``workers`` items ahead of the one yielded; ``fn``'s
    exceptions reach the caller in item order. With ``workers`` > 1, ``fn`` runs on several items at
    once, so it must be safe for that. Items already handed to a thread are finished on the way out.
    """
    it = iter(items)
    end = object()
    item = next(it, end)
    if item is end:
        return
    t0 = time.perf_counter()
    value = fn(item)
    if background is None:
        background = time.perf_counter() - t0 >= AHEAD_MIN_S
    if not background:
        yield item, value
        for item in it:
            yield item, fn(item)
        return
    from collections import deque
    from concurrent.futures import Future, ThreadPoolExecutor

    share_one_heap()
    pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="converter-ahead")
    pending: "deque[tuple[Any, Future]]" = deque()

    def submit() -> None:
        nxt = next(it, end)
        if nxt is not end:
            pending.append((nxt, pool.submit(fn, nxt)))

    try:
        for _ in range(max(1, workers)):
            submit()
        yield item, value
        while pending:
            done, job = pending.popleft()
            value = job.result()
            submit()
            yield done, value
    finally:
        pool.shutdown(wait=True)


class FloatRuns:
    """The float model on calibration samples: one ONNX Runtime session for the whole conversion.

    ``runs(i, x)`` returns every activation of sample ``i`` (source layout ``x``), by IR name;
    :meth:`stream` does the same for a sequence of samples while the model already runs on the
    next ones in :attr:`workers` background threads (ONNX Runtime releases the GIL, so the caller's
    numpy work on this sample and the model on the next share the machine's cores; every value is
    the one a call gives). The activations of the first samples are remembered while they fit in
    ``keep_bytes`` (default :data:`KEEP_BYTES`); asking for one of those again costs nothing.
    ``runs.count`` says how often the model actually ran.
    """

    def __init__(self, graph: Graph, session: Any = None, keep_bytes: Optional[int] = None) -> None:
        self.graph = graph
        self.session = session if session is not None else float_session(graph)
        self.keep_bytes = KEEP_BYTES if keep_bytes is None else keep_bytes
        self.count = 0
        self.run_seconds: Optional[float] = None  # how long the last float run took
        self._kept: dict[int, dict[str, np.ndarray]] = {}
        self._kept_bytes = 0
        self._closed = False
        self.workers = min(FLOAT_WORKERS, available_cpus())  # model runs at once in :meth:`stream`

    def _run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """One float run of a source-layout sample (safe in a background thread: of ``self`` it only
        sets :attr:`run_seconds`)."""
        t0 = time.perf_counter()
        vals = run_float(self.session, self.graph, ir_feed(self.graph, x))
        self.run_seconds = time.perf_counter() - t0
        return vals

    def _remember(self, index: Optional[int], vals: dict[str, np.ndarray]) -> None:
        """Count one run; keep its activations while the samples so far form a prefix that fits."""
        self.count += 1
        if index is not None and not self._closed and index == len(self._kept):  # a prefix of the samples
            n = sum(v.nbytes for v in vals.values())
            if self._kept_bytes + n <= self.keep_bytes:
                self._kept[index] = vals
                self._kept_bytes += n
            else:
                self._closed = True

    def __call__(self, index: Optional[int], x: np.ndarray) -> dict[str, np.ndarray]:
        """Every activation of sample ``index`` (``None``: a sample not from the calibration set)."""
        kept = self._kept.get(index) if index is not None else None
        if kept is not None:
            return kept
        vals = self._run(x)
        self._remember(index, vals)
        return vals

    def stream(self, samples: Iterable[np.ndarray], check: Optional[Callable[[int, np.ndarray], None]] = None,
               workers: Optional[int] = None) -> Iterator[tuple[int, np.ndarray, dict[str, np.ndarray]]]:
        """Yield ``(i, x, activations)`` for every sample in order, as ``runs(i, x)`` would give them.

        While the caller works on sample ``i``, the float model runs on the next samples in ``workers``
        background threads (default :attr:`workers`; remembered samples are not run again).
        ``check(i, x)`` is called on each sample before the model sees it; its exception, or the
        model's, reaches the caller.
        """
        def checked() -> Iterator[tuple[int, np.ndarray]]:
            for i, x in enumerate(samples):
                if check is not None:
                    check(i, x)
                yield i, x

        def job(item: tuple[int, np.ndarray]) -> tuple[dict[str, np.ndarray], bool]:
            kept = self._kept.get(item[0])
            return (kept, False) if kept is not None else (self._run(item[1]), True)

        slow = None if self.run_seconds is None else self.run_seconds >= AHEAD_MIN_S  # remembered samples run no model
        for (i, x), (vals, ran) in ahead(job, checked(), slow, workers=self.workers if workers is None else workers):
            if ran:
                self._remember(i, vals)
            yield i, x, vals

    @property
    def kept(self) -> int:
        """How many samples' activations are remembered."""
        return len(self._kept)

    def release(self, keep_first: int = 0) -> None:
        """Forget the activations of samples from ``keep_first`` on (all with 0); remember no new ones."""
        self._closed = True
        for i in [i for i in self._kept if i >= keep_first]:
            self._kept_bytes -= sum(v.nbytes for v in self._kept.pop(i).values())


#: The MSE search's clipping-error buffer (see :func:`_mse_range`).
_ERR_BLOCK_BYTES = 512 << 10


def _mse_range(hist: np.ndarray, lo: float, hi: float) -> tuple[float, float]:
    """Range minimising expected quantization MSE for a histogram over [lo, hi].

    Error model per bin centre x: rounding noise scale^2/12 inside the range, (x - clip(x))^2
    outside. The two ends are searched separately (a few rounds of coordinate descent over
    86 shrink factors each), so a one-sided outlier does not drag the other end in.
    """
    edges = np.linspace(lo, hi, hist.size + 1)
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


def _histogram(v: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Counts of ``v`` in :data:`BINS` equal bins over [lo, hi] (the values' own range).

    Same bins as ``np.histogram(v, BINS, (lo, hi))`` up to float rounding at bin edges, several times
    faster: one scaled cast and a bincount. :class:`_Binner` gives the same counts, faster still.
    """
    idx = ((v.reshape(-1) - np.float32(lo)) * np.float32(BINS / (hi - lo))).astype(np.intp)
    np.clip(idx, 0, BINS - 1, out=idx)
    return np.bincount(idx, minlength=BINS)


class _Binner:
    """:func:`_histogram` for values known to lie in their finite range [lo, hi], in reused buffers.

    The same float32 arithmetic, so every count is identical; but a value in [lo, hi] gives an index
    from 0 to BINS (hi itself, or rounding next to it), never below, so instead of clipping every
    index the count of index BINS is added to the last bin. The scaled values are cast to int32 while
    they are multiplied (one pass; the same truncation as ``astype(np.intp)`` for every index up to
    BINS, and float32 -> int32 is vectorised where float32 -> int64 is not: 0.1 against 0.6 ms for 1.3M
    values), and ``v - lo`` is skipped when lo is 0 (it is ``v`` exactly). Anything else (an index
    below 0 or above BINS) falls back to :func:`_histogram`.
    """

    def __init__(self, size: int) -> None:
        self._scaled = np.empty(size, np.float32)
        self._index = np.empty(size, np.int32)

    def __call__(self, v: np.ndarray, lo: float, hi: float) -> np.ndarray:
        """Counts of ``v`` in :data:`BINS` bins over [lo, hi], exactly as :func:`_histogram` gives them."""
        n = v.size
        if n > self._scaled.size or v.dtype != np.float32 or not (np.isfinite(lo) and np.isfinite(hi)):
            return _histogram(v, lo, hi)
        index = self._index[:n]
        scale = np.float32(BINS / (hi - lo))
        with np.errstate(invalid="ignore"):  # a value far outside the range overflows int32: it falls back below
            if lo == 0.0:
                np.multiply(v.reshape(-1), scale, out=index, casting="unsafe")  # truncation, as astype(np.intp)
            else:
                scaled = self._scaled[:n]
                np.subtract(v.reshape(-1), np.float32(lo), out=scaled)
                np.multiply(scaled, scale, out=index, casting="unsafe")
        try:
            counts = np.bincount(index, minlength=BINS + 1)
        except ValueError:  # a negative index: not within the range after all
            return _histogram(v, lo, hi)
        if counts.size != BINS + 1:  # beyond the range: clip as _histogram does
            return _histogram(v, lo, hi)
        counts[BINS - 1] += counts[BINS]
        return counts[:BINS]


#: Tensors of at most this many values are binned several samples at a time in the histogram pass
#: (:class:`_SmallBatches`), in buffers of at most :data:`BATCH_VALUES` values over all of them.
SMALL_BIN_VALUES = 4096
BATCH_VALUES = 1 << 18
#: ... and at most this many samples a batch.
BATCH_SAMPLES = 64


class _SmallBatches:
    """Float32 values of small tensors gathered over several samples and binned in one call per tensor.

    Counts add up, and binning is element by element (the same float32 arithmetic for every value), so the
    counts of a batch are the sum of the counts each of its samples gives (:class:`_Binner` and
    :func:`_histogram` agree on every value): the same histograms, with one numpy call per tensor and batch
    instead of one per tensor and sample (on the digits CNN, 10 binning calls instead of 512). A value that
    is not float32 of the tensor's usual size is binned on its own, as the unbatched pass does.
    """

    def __init__(self, sizes: dict[str, int], samples: int) -> None:
        self.sizes = sizes
        self.samples = samples
        self._bufs = {t: np.empty(n * samples, np.float32) for t, n in sizes.items()}
        self._fill = dict.fromkeys(sizes, 0)
        self._held = 0
        self._binner = _Binner(max(sizes.values()) * samples)

    @classmethod
    def plan(cls, sizes: dict[str, int]) -> "Optional[_SmallBatches]":
        """Batches for the tensors of ``sizes`` (values a sample) of at most :data:`SMALL_BIN_VALUES` values,
        as many samples a batch as :data:`BATCH_VALUES` allows (None when fewer than two would fit)."""
        small = {t: n for t, n in sizes.items() if 0 < n <= SMALL_BIN_VALUES}
        total = sum(small.values())
        samples = min(BATCH_SAMPLES, BATCH_VALUES // total) if total else 0
        return cls(small, samples) if samples >= 2 else None

    def add(self, t: str, v: np.ndarray, lo: float, hi: float, hist: np.ndarray) -> None:
        """Take one sample's values ``v`` of tensor ``t`` (binned into ``hist`` now when they cannot wait)."""
        n = self.sizes[t]
        if v.dtype != np.float32 or v.size != n:
            hist += _histogram(v, lo, hi)
            return
        i = self._fill[t]
        self._bufs[t][i:i + n] = v.reshape(-1)
        self._fill[t] = i + n

    def sample_done(self, ranges: dict[str, tuple[float, float]], hists: dict[str, np.ndarray]) -> None:
        """One more sample taken: bin the batch when it is full."""
        self._held += 1
        if self._held >= self.samples:
            self.flush(ranges, hists)

    def flush(self, ranges: dict[str, tuple[float, float]], hists: dict[str, np.ndarray]) -> None:
        """Bin every value gathered so far into ``hists``."""
        for t, k in self._fill.items():
            if k:
                hists[t] += self._binner(self._bufs[t][:k], *ranges[t])
                self._fill[t] = 0
        self._held = 0


#: Ops whose output holds its first input's values rearranged: the same values, so (over the same range)
#: the same histogram.
_SAME_VALUES = ("RESHAPE", "TRANSPOSE", "DEPTH_TO_SPACE", "SPACE_TO_DEPTH")


def derived_histograms(graph: Graph, ranges: dict[str, tuple[float, float]],
                       searched: Sequence[str]) -> dict[str, tuple[str, Optional[float]]]:
    """The searched tensors whose histogram follows from another searched tensor's, with no binning.

    ``{tensor: (source, pad value or None)}`` (a source may itself be derived; graph order gives the
    sources first). A RESHAPE, TRANSPOSE, DEPTH_TO_SPACE or SPACE_TO_DEPTH output holds its input's
    values; a PAD (value 0) or PADV2 (a finite value) output with no negative pad holds its input's values
    plus the pad value on every element it adds. Over the same range (pass 1 found the same min and max)
    each value falls in the same bin, so the output's counts are the input's, plus the added elements in
    the pad value's bin: the very counts binning the output gives. Float tensors only.
    """
    from converters.ir import unquantized_tensors

    raw = unquantized_tensors(graph)
    have = set(searched)
    found: dict[str, tuple[str, Optional[float]]] = {}
    for op in graph.ops:
        if not op.inputs or len(op.outputs) != 1 or op.act != "NONE":
            continue
        t, src = op.outputs[0], op.inputs[0]
        if t not in have or src not in have or t in raw or src in raw or ranges[t] != ranges[src]:
            continue
        if op.kind in _SAME_VALUES:
            found[t] = (src, None)
        elif op.kind in ("PAD", "PADV2") and all(b >= 0 and e >= 0 for b, e in op.attrs["pads"]):
            value = float(np.float32(op.attrs.get("value", 0.0))) if op.kind == "PADV2" else 0.0
            if isfinite(value):
                found[t] = (src, value)
    return found


def _percentile_range(hist: np.ndarray, lo: float, hi: float, q: float = 1e-4) -> tuple[float, float]:
    cdf = np.cumsum(hist).astype(np.float64)
    cdf /= max(cdf[-1], 1.0)
    edges = np.linspace(lo, hi, hist.size + 1)
    i_lo = int(np.searchsorted(cdf, q))
    i_hi = int(np.searchsorted(cdf, 1.0 - q))
    return float(edges[i_lo]), float(edges[min(i_hi + 1, hist.size)])


#: Calibration values beyond this magnitude are almost surely unscaled or corrupt data (they make every
#: activation range useless), so the converter says so.
IMPLAUSIBLE_MAGNITUDE = 1e6
#: Fewer samples than this rarely cover an input's distribution.
FEW_SAMPLES = 8
_warned: set = set()


def check_calibration_size(n: int) -> None:
    """Warn (one log line) about a calibration set too small to be representative."""
    if n < FEW_SAMPLES:
        log.warning("only %d calibration sample%s: the activation ranges will fit those alone; give at least "
                    "100 representative samples", n, "" if n == 1 else "s")


def check_calibration_sample(index: int, x: Any) -> None:
    """Refuse NaN/Inf calibration values (one clear error); warn once about implausibly large ones. ``x`` is
    one sample: an array, or a tuple of arrays (one per input) for a model with several inputs."""
    for a in (x if isinstance(x, (tuple, list)) else (x,)):
        _check_array(index, np.asarray(a))


def _check_array(index: int, a: np.ndarray) -> None:
    if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
        bad = int(np.count_nonzero(~np.isfinite(a)))
        raise CalibrationDataError(f"calibration sample {index} holds {bad} NaN or infinite value(s); remove or "
                                   "fix those samples")
    if (a.dtype.kind == "f" and a.size and float(np.max(np.abs(a))) > IMPLAUSIBLE_MAGNITUDE  # not token ids
            and "magnitude" not in _warned):
        _warned.add("magnitude")
        log.warning("calibration sample %d reaches %.3g in magnitude: is the data scaled as the model expects? "
                    "(ranges this wide make int8 useless)", index, float(np.max(np.abs(a))))


def non_finite_activation(graph: Graph, index: int, vals: dict[str, np.ndarray]) -> CalibrationDataError:
    """The one-line error for calibration sample ``index`` making an activation NaN or infinite.

    Names the first such tensor in graph order (where the NaN or inf starts) and the op producing it; the
    ``-inf`` of a masked softmax's sum is expected (:func:`converters.masked_softmax.masked_sums`), and a
    masked softmax's NaN (a row whose every position is masked) is named as such.
    """
    masked = masked_sums(graph)

    def bad(t: str, v: np.ndarray) -> bool:
        a = np.asarray(v)
        if a.dtype.kind not in "fc":
            return False
        if t in masked:
            return bool(np.isnan(a).any() or np.isposinf(a).any())
        return not bool(np.all(np.isfinite(a)))

    name, kind = next(((o, op.kind) for op in graph.ops for o in op.outputs if o in vals and bad(o, vals[o])),
                      next(((t, None) for t, v in vals.items() if bad(t, v)), ("?", None)))
    what = "NaN" if name in vals and np.isnan(vals[name]).any() else "infinite"
    op = f" ({kind})" if kind else ""
    softmaxes = {c[-1].outputs[0] for c in masked_softmax_chains(graph)}
    why = ("a row whose every position the attention mask hides (its float softmax is 0/0)" if name in softmaxes
           else "the float model produces NaN or inf on this data")
    return CalibrationDataError(f"calibration sample {index} makes tensor '{name}'{op} {what}: {why}; fix the "
                                "data or the model")


def calibrate(graph: Graph, data: CalibrationSet, method: str = "auto", progress: bool = False,
              session=None, *, runs: Optional[FloatRuns] = None,  # type: ignore[no-untyped-def]
              observers: Iterable[Observer] = (),
              fixed: Optional[dict[str, tuple[float, float]]] = None) -> dict[str, tuple[float, float]]:
    """Return ``{tensor: (lo, hi)}`` for every activation of ``graph`` using ``method``.

    ``runs`` (or else ``session``) runs the float model; pass the conversion's :class:`FloatRuns` so
    that later steps reuse what it remembers. Each of ``observers`` is called as ``observer(i, values)``
    with every sample's activations during the first pass (e.g. bias correction's input means).
    ``fixed``: ranges the source model fixes, by IR tensor name (a QDQ model's pairs,
    :func:`converters.qdq_source.fixed_ranges`): returned as given, and not searched.
    """
    if method not in METHODS:
        raise ValueError(f"unknown calibration method {method!r}; choose one of {', '.join(METHODS)}")
    if method == "auto":
        method = "mse"
    run = runs if runs is not None else FloatRuns(graph, session)
    observers = list(observers)
    lo: dict[str, float] = {}
    hi: dict[str, float] = {}
    size = 0
    sizes: dict[str, int] = {}
    masked = masked_sums(graph)  # -inf expected there (a masked softmax's float island); NaN is not
    check_calibration_size(len(data))
    with _progress(len(data), "calibrating (pass 1/2: ranges)" if method != "minmax" else "calibrating", progress) as bar:
        for i, x, vals in run.stream(data, check_calibration_sample):
            for t, v in vals.items():
                vmin, vmax = float(v.min()), float(v.max())
                if t in masked and vmin == float("-inf") and isfinite(vmax):
                    vmin = float(v[np.isfinite(v)].min(initial=vmax))
                if not (isfinite(vmin) and isfinite(vmax)):  # NaN propagates to both, inf to one
                    raise non_finite_activation(graph, i, vals)
                lo[t] = min(lo.get(t, vmin), vmin)
                hi[t] = max(hi.get(t, vmax), vmax)
                size = max(size, v.size)
                sizes[t] = v.size
            for observe in observers:
                observe(i, vals)
            bar.update(1)
    ranges = {t: (lo[t], hi[t]) for t in lo}
    kept = {t: (float(a), float(b)) for t, (a, b) in (fixed or {}).items() if t in ranges}
    if method == "minmax" or len(kept) == len(ranges):
        return {**ranges, **kept}
    inputs = set(graph.inputs)
    # inputs keep their observed range
    searched = [t for t, (a, b) in ranges.items() if t not in inputs and t not in masked and t not in kept and b > a]
    hists = {t: np.zeros(BINS, np.int64) for t in searched}
    histogram = _Binner(size)
    # a reshaped or padded copy of a binned tensor is not binned again: its counts are its source's (1.3
    # of the 5.0 MB a sample binned on the 96x96 benchmark CNN). All tensors are still fetched: asking
    # ONNX Runtime for fewer made each run slower (2.56 against 2.40 ms, medians of 3 x 40 runs)
    derived = derived_histograms(graph, ranges, searched)
    # small tensors are binned several samples at a time, each from its own values (a derived tensor's counts
    # need its source's counts of the same sample)
    small = _SmallBatches.plan({t: sizes[t] for t in searched if t in sizes})
    if small is not None:
        derived = {t: d for t, d in derived.items() if t not in small.sizes and d[0] not in small.sizes}
    pad_bin = {t: _histogram(np.array([value], np.float32), *ranges[t])  # the bin the pad value falls in
               for t, (_, value) in derived.items() if value is not None}
    binned = [t for t in searched if t not in derived and (small is None or t not in small.sizes)]
    order = [t for t in graph.activations() if t in derived]  # a source's counts come first
    with _progress(len(data), "calibrating (pass 2/2: histograms)", progress) as bar:
        for _, _, vals in run.stream(data, workers=min(HIST_WORKERS, run.workers)):
            counts: dict[str, np.ndarray] = {}
            for t in binned:
                if t in vals:
                    counts[t] = histogram(vals[t], *ranges[t])
                    hists[t] += counts[t]
            for t in order:
                if t not in vals:
                    continue
                src = derived[t][0]
                added = vals[t].size - vals[src].size if src in counts else -1
                if t in pad_bin and added >= 0:
                    counts[t] = counts[src] + pad_bin[t] * added
                elif t not in pad_bin and added == 0:
                    counts[t] = counts[src]
                else:  # not the values it should hold: binned as they are
                    counts[t] = histogram(vals[t], *ranges[t])
                hists[t] += counts[t]
            if small is not None:
                for t in small.sizes:
                    if t in vals:
                        small.add(t, vals[t], *ranges[t], hists[t])
                small.sample_done(ranges, hists)
            bar.update(1)
    if small is not None:
        small.flush(ranges, hists)
    search = _percentile_range if method == "percentile" else _mse_range
    # one range at a time: each search is many small numpy calls, and threads measured no faster; a
    # graph with thousands of activations (an unrolled recurrence) takes seconds here, so it has a bar
    found = {}
    with _progress(len(searched), "calibrating (choosing ranges)", progress and len(searched) >= 500) as bar:
        for t in searched:
            found[t] = search(hists[t], *ranges[t])
            bar.update(1)
    found.update(kept)
    return {t: found.get(t, r) for t, r in ranges.items()}

