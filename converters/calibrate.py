"""Calibration: stream samples through the float model and choose a real range for every activation.

The float model runs in ONNX Runtime (the IR written by :mod:`converters.writers.onnx` with every
activation exposed), through one :class:`FloatRuns` that the whole conversion shares. Two streaming
passes: the first records min/max per tensor (and feeds any observers, e.g. bias correction's input
means), the second fills a 2048-bin histogram over that range (only for methods that need one).
The activations of the first samples are kept within a byte budget, so the second pass and the
report run the float model only for the samples that did not fit. Methods:

- ``minmax``: the observed range;
- ``percentile``: the 0.01 % and 99.99 % quantiles;
- ``mse``: the range that minimises the expected squared quantization error (rounding noise
  scale^2/12 inside, clipping error outside), searched over shrunken ranges of the histogram;
- ``auto``: the default, ``mse`` (it measured best; see ``benchmarks/convert_quality.py``).

Model inputs always keep their observed range: clipping the data the user feeds is never helpful.
"""
from __future__ import annotations

import logging
import sys
from contextlib import nullcontext
from typing import Any, Callable, Iterable, Optional

import numpy as np

from converters.calibration_data import CalibrationDataError, CalibrationSet
from converters.ir import Graph

log = logging.getLogger("converters.calibrate")

METHODS = ("auto", "minmax", "percentile", "mse")
BINS = 2048


def float_session(graph: Graph, expose_all: bool = True) -> Any:
    """An ONNX Runtime session over the float IR (NHWC inputs), all activations exposed when asked."""
    import onnxruntime as ort

    from converters.writers.onnx import build_onnx

    serialized = build_onnx(graph, None, expose_all=expose_all, source_layout=False).SerializeToString()
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    so.enable_cpu_mem_arena = False  # same results; the arena would keep every activation's peak (~12 MB on a 2M CNN)
    return ort.InferenceSession(serialized, so, providers=["CPUExecutionProvider"])


def run_float(sess, graph: Graph, x_ir: np.ndarray) -> dict[str, np.ndarray]:  # type: ignore[no-untyped-def]
    """Run one NHWC sample; return every exposed tensor by IR name (plus the input)."""
    names = [o.name for o in sess.get_outputs()]
    vals = sess.run(None, {graph.inputs[0]: x_ir})
    out = {n.removesuffix("/float"): v for n, v in zip(names, vals)}
    out[graph.inputs[0]] = x_ir
    return out


class _NoBar:
    """Stands in for a progress bar when none is shown (tqdm is then never imported)."""

    def update(self, n: int = 1) -> None:
        """Nothing to show."""


def _progress(total: int, desc: str, enabled: bool):  # type: ignore[no-untyped-def]
    if not enabled:
        return nullcontext(_NoBar())
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, file=sys.stderr, leave=False)


#: Float activations of the first calibration samples are kept up to this many bytes (all of them for
#: small models): the histogram pass and the report reuse them instead of running the model again.
KEEP_BYTES = 8 << 20
Observer = Callable[[int, dict], None]


class FloatRuns:
    """The float model on calibration samples: one ONNX Runtime session for the whole conversion.

    ``runs(i, x)`` returns every activation of sample ``i`` (source layout ``x``), by IR name. The
    activations of the first samples are remembered while they fit in ``keep_bytes`` (default
    :data:`KEEP_BYTES`); asking for one of those again costs nothing. ``runs.count`` says how often
    the model actually ran.
    """

    def __init__(self, graph: Graph, session: Any = None, keep_bytes: Optional[int] = None) -> None:
        self.graph = graph
        self.session = session if session is not None else float_session(graph)
        self.keep_bytes = KEEP_BYTES if keep_bytes is None else keep_bytes
        self.count = 0
        self._kept: dict[int, dict[str, np.ndarray]] = {}
        self._kept_bytes = 0
        self._closed = False

    def __call__(self, index: Optional[int], x: np.ndarray) -> dict[str, np.ndarray]:
        """Every activation of sample ``index`` (``None``: a sample not from the calibration set)."""
        kept = self._kept.get(index) if index is not None else None
        if kept is not None:
            return kept
        name = self.graph.inputs[0]
        vals = run_float(self.session, self.graph, self.graph.to_ir_layout(name, x))
        self.count += 1
        if index is not None and not self._closed and index == len(self._kept):  # a prefix of the samples
            n = sum(v.nbytes for v in vals.values())
            if self._kept_bytes + n <= self.keep_bytes:
                self._kept[index] = vals
                self._kept_bytes += n
            else:
                self._closed = True
        return vals

    @property
    def kept(self) -> int:
        """How many samples' activations are remembered."""
        return len(self._kept)

    def release(self, keep_first: int = 0) -> None:
        """Forget the activations of samples from ``keep_first`` on (all with 0); remember no new ones."""
        self._closed = True
        for i in [i for i in self._kept if i >= keep_first]:
            self._kept_bytes -= sum(v.nbytes for v in self._kept.pop(i).values())


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

    def cost(clo: np.ndarray, chi: np.ndarray) -> np.ndarray:
        scale = np.maximum(chi - clo, 1e-12) / 255.0
        clipped = np.clip(centers[None, :], clo[:, None], chi[:, None])
        return ((centers[None, :] - clipped) ** 2 * w[None, :]).sum(axis=1) + w.sum() * scale ** 2 / 12.0

    best_lo, best_hi = min(lo, 0.0), max(hi, 0.0)
    for _ in range(3):
        his = np.maximum(hi * factors, 0.0)
        best_hi = float(his[int(np.argmin(cost(np.full_like(his, best_lo), his)))])
        los = np.minimum(lo * factors, 0.0)
        best_lo = float(los[int(np.argmin(cost(los, np.full_like(los, best_hi))))])
    return best_lo, best_hi


def _histogram(v: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Counts of ``v`` in :data:`BINS` equal bins over [lo, hi] (the values' own range).

    Same bins as ``np.histogram(v, BINS, (lo, hi))`` up to float rounding at bin edges, several times
    faster: one scaled cast and a bincount.
    """
    idx = ((v.reshape(-1) - np.float32(lo)) * np.float32(BINS / (hi - lo))).astype(np.intp)
    np.clip(idx, 0, BINS - 1, out=idx)
    return np.bincount(idx, minlength=BINS)


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


def check_calibration_sample(index: int, x: np.ndarray) -> None:
    """Refuse NaN/Inf calibration values (one clear error); warn once about implausibly large ones."""
    a = np.asarray(x)
    if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
        bad = int(np.count_nonzero(~np.isfinite(a)))
        raise CalibrationDataError(f"calibration sample {index} holds {bad} NaN or infinite value(s); remove or "
                                   "fix those samples")
    if a.size and float(np.max(np.abs(a))) > IMPLAUSIBLE_MAGNITUDE and "magnitude" not in _warned:
        _warned.add("magnitude")
        log.warning("calibration sample %d reaches %.3g in magnitude: is the data scaled as the model expects? "
                    "(ranges this wide make int8 useless)", index, float(np.max(np.abs(a))))


def calibrate(graph: Graph, data: CalibrationSet, method: str = "auto", progress: bool = False,
              session=None, *, runs: Optional[FloatRuns] = None,  # type: ignore[no-untyped-def]
              observers: Iterable[Observer] = ()) -> dict[str, tuple[float, float]]:
    """Return ``{tensor: (lo, hi)}`` for every activation of ``graph`` using ``method``.

    ``runs`` (or else ``session``) runs the float model; pass the conversion's :class:`FloatRuns` so
    that later steps reuse what it remembers. Each of ``observers`` is called as ``observer(i, values)``
    with every sample's activations during the first pass (e.g. bias correction's input means).
    """
    if method not in METHODS:
        raise ValueError(f"unknown calibration method {method!r}; choose one of {', '.join(METHODS)}")
    if method == "auto":
        method = "mse"
    if len(graph.inputs) != 1:
        raise ValueError("calibration supports single-input models")
    run = runs if runs is not None else FloatRuns(graph, session)
    observers = list(observers)
    lo: dict[str, float] = {}
    hi: dict[str, float] = {}
    check_calibration_size(len(data))
    with _progress(len(data), "calibrating (pass 1/2: ranges)" if method != "minmax" else "calibrating", progress) as bar:
        for i, x in enumerate(data):
            check_calibration_sample(i, x)
            vals = run(i, x)
            for t, v in vals.items():
                vmin, vmax = float(v.min()), float(v.max())
                lo[t] = min(lo.get(t, vmin), vmin)
                hi[t] = max(hi.get(t, vmax), vmax)
            for observe in observers:
                observe(i, vals)
            bar.update(1)
    ranges = {t: (lo[t], hi[t]) for t in lo}
    if method == "minmax":
        return ranges
    hists = {t: np.zeros(BINS, np.int64) for t in ranges}
    inputs = set(graph.inputs)
    with _progress(len(data), "calibrating (pass 2/2: histograms)", progress) as bar:
        for i, x in enumerate(data):
            vals = run(i, x)
            for t, v in vals.items():
                a, b = ranges[t]
                if b > a and t not in inputs:  # model inputs keep their observed range
                    hists[t] += _histogram(v, a, b)
            bar.update(1)
    out: dict[str, tuple[float, float]] = {}
    for t, (a, b) in ranges.items():
        if t in graph.inputs or b <= a:
            out[t] = (a, b)
        elif method == "percentile":
            out[t] = _percentile_range(hists[t], a, b)
        else:
            out[t] = _mse_range(hists[t], a, b)
    return out
