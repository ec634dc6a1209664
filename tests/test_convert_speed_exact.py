"""The converter's faster calibration and report paths compute exactly what the plain ones computed.

- :class:`converters.calibration_histograms.Binner` (reused buffers, the top index folded instead of
  clipped) counts every bin as :func:`converters.calibration_histograms.histogram_counts` does, and falls
  back to it outside its assumptions;
- :func:`converters.calibration_histograms.mse_range` (the clipping error computed in place, a block of
  candidates at a time) picks the range the formula written out below picks, on real and synthetic
  histograms;
- :func:`converters.calibrate.ahead` and :meth:`FloatRuns.stream` (the float model on the next
  sample in a background thread, or all in the caller's when runs are quick) give the values, order,
  counts and kept samples of serial calls, pass exceptions to the caller, never feed a refused sample
  to the model, and leave no thread;
- the report's energies (buffers reused, int8 dequantized in place) equal the float64 sums of the
  plain loop, and :func:`converters.report.compare_on_samples` gives the same rows and outputs with
  or without the conversion's remembered float runs;
- a float session with several intra-op threads gives the one-thread activations and ranges (digits,
  and the MLPerf Tiny 96x96 MobileNet when /work/shared is there).
"""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

import converters.calibrate as cal
import converters.calibration_histograms as ch
from converters.calibrate import FloatRuns, ahead, calibrate
from converters.calibration_histograms import BINS
from converters.calibration_histograms import Binner as _Binner
from converters.calibration_histograms import histogram_counts as _histogram
from converters.calibration_histograms import mse_range as _mse_range
from converters.calibration_data import CalibrationDataError, open_calibration
from converters.pipeline import convert_model, import_model

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "converters" / "data"


def _mse_range_reference(hist: np.ndarray, lo: float, hi: float) -> tuple[float, float]:
    """The MSE range search as first written (temporaries for every step)."""
    edges = np.linspace(lo, hi, hist.size + 1)
    keep = hist > 0
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


def _activations(n: int, seed: int) -> list[np.ndarray]:
    """Activation-like float32 arrays: ReLU, ReLU6, outliers, skewed, tiny and wide scales."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        size = int(rng.integers(1, 60_000))
        v = rng.standard_normal(size).astype(np.float32) * np.float32(10.0 ** rng.uniform(-3, 3))
        kind = k % 5
        if kind == 1:
            v = np.maximum(v, 0)
        elif kind == 2:
            v = np.clip(v, 0, 6)
        elif kind == 3:
            v[: max(1, size // 500)] *= 40
        elif kind == 4:
            v = (rng.exponential(1.0, size) - rng.uniform(0, 2)).astype(np.float32)
        out.append(v.reshape(1, -1) if k % 2 else v)
    return out


def test_binner_counts_every_bin_as_histogram_does():
    binner = _Binner(60_000)
    checked = 0
    for v in _activations(300, seed=1):
        lo, hi = float(v.min()), float(v.max())
        if hi <= lo:
            continue
        got = binner(v, lo, hi)
        assert got.shape == (BINS,) and got.sum() == v.size
        assert np.array_equal(got, _histogram(v, lo, hi))
        checked += 1
    assert checked > 250


def test_binner_edge_cases_fall_back_or_fold_exactly():
    binner = _Binner(1000)
    hi_heavy = np.array([0.0, 1.0, 1.0, 1.0, np.nextafter(np.float32(1), np.float32(0))], np.float32)
    assert np.array_equal(binner(hi_heavy, 0.0, 1.0), _histogram(hi_heavy, 0.0, 1.0))
    assert binner(hi_heavy, 0.0, 1.0)[-1] == 4  # hi itself lands in the last bin
    odd = np.float32([-3.3, 7.7, 0.1]) * np.float32(1e-7)  # ranges whose scale rounds
    lo, hi = float(odd.min()), float(odd.max())
    assert np.array_equal(binner(odd, lo, hi), _histogram(odd, lo, hi))
    outside = np.array([-5.0, 0.5, 9.0], np.float32)  # beyond the given range: clipped as _histogram clips
    assert np.array_equal(binner(outside, 0.0, 1.0), _histogram(outside, 0.0, 1.0))
    big = np.linspace(0, 1, 5000, dtype=np.float32)  # larger than the buffers
    assert np.array_equal(binner(big, 0.0, 1.0), _histogram(big, 0.0, 1.0))
    f64 = np.linspace(-1, 1, 500)  # not float32: the plain path
    assert np.array_equal(binner(f64, -1.0, 1.0), _histogram(f64, -1.0, 1.0))
    inf = np.array([0.0, np.inf], np.float32)
    with np.errstate(invalid="ignore"):  # the plain path's own warning about inf * 0
        assert np.array_equal(binner(inf, 0.0, float("inf")), _histogram(inf, 0.0, float("inf")))


def test_mse_range_picks_the_range_of_the_written_out_formula():
    for v in _activations(120, seed=2):
        lo, hi = float(v.min()), float(v.max())
        if hi <= lo:
            continue
        hist = _histogram(v, lo, hi)
        assert _mse_range(hist, lo, hi) == _mse_range_reference(hist, lo, hi)


def test_mse_range_shortcuts_match_the_reference_at_the_ends():
    """The search remembers each end's answer and takes an all-equal end (lo >= 0 or hi <= 0) as is:
    the same range as the written-out search, for one-sided, all-negative, single-bin and signed-zero cases."""
    rng = np.random.default_rng(7)
    cases = []
    for k in range(60):
        v = rng.standard_normal(int(rng.integers(2, 20_000))).astype(np.float32) * np.float32(10.0 ** rng.uniform(-4, 4))
        cases.append(-np.abs(v) if k % 3 == 0 else (np.maximum(v, 0) if k % 3 == 1 else np.minimum(v, 0)))
    cases.append(np.array([-0.0, 0.0, 1.0], np.float32))
    cases.append(np.array([-3.0, -0.0], np.float32))
    for v in cases:
        lo, hi = float(v.min()), float(v.max())
        if hi <= lo:
            continue
        hist = _histogram(v, lo, hi)
        assert _mse_range(hist, lo, hi) == _mse_range_reference(hist, lo, hi)
    one_bin = np.zeros(BINS, np.int64)
    one_bin[5] = 9
    assert _mse_range(one_bin, -2.0, 3.0) == _mse_range_reference(one_bin, -2.0, 3.0)


@pytest.fixture(scope="module")
def digits():
    g = import_model(DATA / "digits_cnn.onnx")
    return g, open_calibration(DATA / "digits_calib.npz", g.source_shape(g.inputs[0]), g.inputs[0])


def test_mse_ranges_of_the_digits_model_match_the_reference(digits, monkeypatch):
    g, data = digits
    fast = calibrate(g, data, "mse")
    monkeypatch.setattr(ch, "mse_range", lambda h, a, b, lo, hi: _mse_range_reference(h, a, b))
    monkeypatch.setattr(ch, "Binner", lambda size=0: _histogram)
    assert calibrate(g, data, "mse") == fast


@pytest.fixture(params=["background", "caller"])
def ahead_mode(request, monkeypatch):
    """Both paths of :func:`ahead`: every item in the background thread, or all in the caller's."""
    monkeypatch.setattr(cal, "AHEAD_MIN_S", 0.0 if request.param == "background" else float("inf"))
    return request.param


def test_ahead_keeps_order_passes_exceptions_and_leaves_no_thread(ahead_mode):
    before = threading.active_count()
    names = []

    def square(x: int) -> int:
        names.append(threading.current_thread().name)
        return x * x

    assert list(ahead(square, range(7))) == [(i, i * i) for i in range(7)]
    in_background = [n.startswith("converter-ahead") for n in names]
    assert in_background == [False] + [ahead_mode == "background"] * 6  # the first item times fn
    assert list(ahead(lambda x: x, [])) == []

    def fail_at_3(x: int) -> int:
        if x == 3:
            raise ValueError("three")
        return x

    seen = []
    with pytest.raises(ValueError, match="three"):
        for i, _ in ahead(fail_at_3, range(6)):
            seen.append(i)
    assert seen == [0, 1, 2]
    gen = ahead(lambda x: x, range(100))
    next(gen)
    gen.close()  # a caller that stops early
    assert threading.active_count() == before


class _Recording:
    """An ONNX Runtime session that remembers every input it was given."""

    def __init__(self, sess) -> None:  # type: ignore[no-untyped-def]
        self.sess, self.inputs = sess, []

    def get_outputs(self):  # type: ignore[no-untyped-def]
        return self.sess.get_outputs()

    def run(self, names, feeds):  # type: ignore[no-untyped-def]
        self.inputs.append(next(iter(feeds.values())).copy())
        return self.sess.run(names, feeds)


@pytest.mark.parametrize("keep_bytes", [0, 60_000, None])
def test_stream_gives_what_serial_calls_give(digits, keep_bytes, ahead_mode):
    g, data = digits
    serial, streamed = FloatRuns(g, keep_bytes=keep_bytes), FloatRuns(g, keep_bytes=keep_bytes)
    want = [serial(i, x) for i, x in enumerate(data)]
    got = list(streamed.stream(data))
    assert [i for i, _, _ in got] == list(range(len(data)))
    for (_, x, vals), ref, x_ref in zip(got, want, data):
        assert np.array_equal(x, x_ref) and vals.keys() == ref.keys()
        assert all(np.array_equal(vals[t], ref[t]) for t in ref)
    assert (streamed.count, streamed.kept) == (serial.count, serial.kept)
    again = list(streamed.stream(data))  # remembered samples are not run again
    assert streamed.count == serial.count + len(data) - serial.kept
    assert all(a[2] is b[2] for a, b in zip(again[:serial.kept], got))


def test_stream_never_feeds_a_refused_sample_to_the_model(digits, ahead_mode):
    g, data = digits
    xs = np.stack(list(data))[:6].copy()
    xs[4] = np.nan
    runs = FloatRuns(g, _Recording(FloatRuns(g).session))
    with pytest.raises(CalibrationDataError, match="sample 4"):
        calibrate(g, xs, "mse", runs=runs)
    assert len(runs.session.inputs) == 4 and all(np.isfinite(x).all() for x in runs.session.inputs)


def test_report_energies_equal_the_plain_float64_sums(tmp_path, digits, monkeypatch):
    from converters.calibrate import float_session, run_float
    from converters.report import TFLiteRunner, _Energies, compare_on_samples

    _, data = digits
    res = convert_model(DATA / "digits_cnn.onnx", "rpi4-4gb", DATA / "digits_calib.npz", tmp_path, plot=False)
    graph = res.graph
    sess = float_session(graph)
    runner = TFLiteRunner(res.tflite_path, preserve=True)
    xs = [x for i, x in enumerate(data) if i < 6]
    energies, sig, noise = _Energies(), {}, {}
    for x in xs:
        x_ir = graph.to_ir_layout(graph.inputs[0], x)
        fvals = run_float(sess, graph, x_ir)
        runner.run(x_ir)
        for t, fv in fvals.items():
            qv = runner.tensor(t)
            if qv is None:
                continue
            energies.add(t, fv, runner.it.get_tensor(runner.by_name[t]["index"]), runner.by_name[t])
            if qv.shape != fv.shape or fv.dtype.kind != "f":
                continue
            f64 = fv.astype(np.float64)
            sig[t] = sig.get(t, 0.0) + float(np.sum(np.square(f64)))
            noise[t] = noise.get(t, 0.0) + float(np.sum(np.square(f64 - qv)))
    assert len(sig) > 5 and energies.signal == sig and energies.noise == noise
    plain = compare_on_samples(graph, sess, runner, iter(xs))
    monkeypatch.setattr(cal, "AHEAD_MIN_S", 0.0)  # the runs in the background thread
    kept = compare_on_samples(graph, sess, runner, iter(xs), float_values=FloatRuns(graph, sess))
    assert plain[0] == kept[0]
    for a, b in zip(plain[1:], kept[1:]):
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def _threaded_matches_one_thread(graph, data, n: int) -> None:  # type: ignore[no-untyped-def]
    from converters.calibrate import float_session

    one, many = FloatRuns(graph, float_session(graph, threads=1)), FloatRuns(graph, float_session(graph, threads=n))
    for (_, _, a), (_, _, b) in zip(one.stream(data), many.stream(data)):
        assert a.keys() == b.keys() and all(np.array_equal(a[t], b[t]) for t in a)
    assert calibrate(graph, data, "mse", runs=one) == calibrate(graph, data, "mse", runs=many)


def test_threaded_float_session_gives_identical_activations_and_ranges(digits):
    g, data = digits
    _threaded_matches_one_thread(g, data, 4)


def test_threaded_float_session_identical_on_a_96x96_mobilenet(mlperf_models):
    from converters.calibration_data import synthetic_images
    from converters.quality.equalization import equalize

    g = import_model(mlperf_models / "vww_96_float.tflite")
    equalize(g)
    name = g.inputs[0]
    data = open_calibration(synthetic_images(12, 96, 96, seed=3), g.source_shape(name), name)
    _threaded_matches_one_thread(g, data, 4)


def test_background_choice_follows_the_float_run_time_not_a_remembered_sample(digits, monkeypatch):
    """A pass whose first sample is remembered (no model run) still uses the background thread when the
    model's runs are slow, and a given choice skips the timing."""
    g, data = digits
    runs = FloatRuns(g)
    list(runs.stream(data))
    assert runs.run_seconds is not None and runs.kept == len(data)
    monkeypatch.setattr(cal, "AHEAD_MIN_S", runs.run_seconds / 2)  # "slow" runs
    chosen = []
    real = cal.ahead
    def recording(fn, items, background=None, workers=1):  # type: ignore[no-untyped-def]
        chosen.append(background)
        return real(fn, items, background, workers)

    monkeypatch.setattr(cal, "ahead", recording)
    list(runs.stream(data))
    monkeypatch.setattr(cal, "AHEAD_MIN_S", runs.run_seconds * 1e6)
    list(runs.stream(data))
    assert chosen == [True, False]
    names = []
    def named(x: int) -> int:
        names.append(threading.current_thread().name)
        return x

    assert [v for _, v in real(named, range(3), background=True)] == [0, 1, 2]
    assert names[0] == threading.current_thread().name and all(n.startswith("converter-ahead") for n in names[1:])

