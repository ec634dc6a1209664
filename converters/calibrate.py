"""Calibration: stream samples through the float model and choose a real range for every activation.

The float model runs in ONNX Runtime (the IR written by :mod:`converters.writers.onnx` with every
activation exposed), through one :class:`FloatRuns` that the whole conversion shares, in one streaming
pass: each sample's min/max per tensor, its counts for the histogram methods
(:mod:`converters.calibration_histograms`: grids that grow with the data, or that are laid out over the
final ranges when every sample's activations are remembered), and any observers (e.g. bias correction's
input means). The activations of the first samples are kept within a byte budget, so the report runs
the float model only for the samples that did not fit. While this sample's statistics are taken, the
float model runs on the next two in two background threads (:func:`ahead`).
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
#: small models): the report reuses them instead of running the model again, and when every sample fits,
#: the histograms are binned over the final ranges.
KEEP_BYTES = 8 << 20
Observer = Callable[[int, dict], None]


#: :meth:`FloatRuns.stream` runs the float model on this many samples at once (one ONNX Runtime thread
#: each, at most one per CPU) while the caller works on the current one.
FLOAT_WORKERS = 2

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

    One float pass over ``data``: each sample's min/max per tensor, and for the histogram methods its
    counts (:class:`converters.calibration_histograms.HistogramSet`). While every sample so far is
    remembered by ``runs``, binning waits: if all of them are, the grids are laid out over the final
    min/max and never grow; otherwise binning starts at the first sample not remembered, over the range of
    the samples before it, and grows with later samples.

    ``runs`` (or else ``session``) runs the float model; pass the conversion's :class:`FloatRuns` so
    that later steps reuse what it remembers. Each of ``observers`` is called as ``observer(i, values)``
    with every sample's activations (e.g. bias correction's input means).
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
    masked = masked_sums(graph)  # -inf expected there (a masked softmax's float island); NaN is not
    fixed = fixed or {}
    inputs = set(graph.inputs)
    hists = None
    if method != "minmax":  # inputs keep their observed range
        from converters.calibration_histograms import HistogramSet

        candidates = [t for t in graph.activations() if t not in inputs and t not in masked and t not in fixed]
        hists = HistogramSet(graph, candidates) if candidates else None
    held: list[tuple[dict[str, float], dict[str, float]]] = []  # remembered samples' min/max, while binning waits
    binning = False
    check_calibration_size(len(data))
    with _progress(len(data), "calibrating", progress) as bar:
        for i, x, vals in run.stream(data, check_calibration_sample):
            mins: dict[str, float] = {}
            maxs: dict[str, float] = {}
            for t, v in vals.items():
                vmin, vmax = float(v.min()), float(v.max())
                if t in masked and vmin == float("-inf") and isfinite(vmax):
                    vmin = float(v[np.isfinite(v)].min(initial=vmax))
                if not (isfinite(vmin) and isfinite(vmax)):  # NaN propagates to both, inf to one
                    raise non_finite_activation(graph, i, vals)
                lo[t] = min(lo.get(t, vmin), vmin)
                hi[t] = max(hi.get(t, vmax), vmax)
                mins[t], maxs[t] = vmin, vmax
            for observe in observers:
                observe(i, vals)
            if hists is not None:
                if binning:
                    hists.add(vals, mins, maxs)
                elif run.kept > i:  # remembered: binned once the ranges are known, or binning starts
                    held.append((mins, maxs))
                else:  # the first sample not remembered: bin from here on, on grids over the ranges so far
                    binning = True
                    _bin_held(hists, run, held, lo, hi)
                    hists.add(vals, mins, maxs)
            bar.update(1)
    ranges = {t: (lo[t], hi[t]) for t in lo}
    kept = {t: (float(a), float(b)) for t, (a, b) in fixed.items() if t in ranges}
    if hists is None:
        return {**ranges, **kept}
    if not binning:  # every sample remembered: grids over the final ranges
        _bin_held(hists, run, held, lo, hi)
    hists.finish()
    from converters.calibration_histograms import mse_range, percentile_range

    search = percentile_range if method == "percentile" else mse_range
    searched = [t for t in hists.hists if t in ranges and ranges[t][1] > ranges[t][0]]
    # one range at a time: each search is many small numpy calls, and threads measured no faster; a
    # graph with thousands of activations (an unrolled recurrence) takes seconds here, so it has a bar
    found = {}
    with _progress(len(searched), "calibrating (choosing ranges)", progress and len(searched) >= 500) as bar:
        for t in searched:
            got = hists.result(t)
            if got is not None:
                found[t] = search(got[0], got[1], got[2], *ranges[t])
            bar.update(1)
    found.update(kept)
    return {t: found.get(t, r) for t, r in ranges.items()}


def _bin_held(hists, run: FloatRuns, held: list, lo: dict[str, float],  # type: ignore[no-untyped-def]
              hi: dict[str, float]) -> None:
    """Lay the grids out over the ranges so far and count the remembered samples whose binning waited."""
    hists.seed({t: (lo[t], hi[t]) for t in lo})
    for j, (mins, maxs) in enumerate(held):
        hists.add(run(j, None), mins, maxs)
    held.clear()
