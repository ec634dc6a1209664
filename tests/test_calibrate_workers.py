"""The float model on several calibration samples at once gives what serial runs give.

- :func:`converters.calibrate.ahead` with ``workers`` > 1 runs that many items at the same time, yields
  every item once and in order, passes ``fn``'s exceptions in item order and leaves no thread;
- :meth:`FloatRuns.stream` with two model threads (calibration's default) yields the
  activations, order, run count and remembered samples of serial calls, and never feeds a refused
  sample to the model;
- calibration's one float pass uses two model threads, and its ranges equal those of the one-thread
  stream (digits CNN, and the MLPerf Tiny 96x96 MobileNet when
  /work/shared is there).
"""
from __future__ import annotations

import threading

import numpy as np
import pytest

import converters.calibrate as cal
from converters.calibrate import FloatRuns, ahead, calibrate
from converters.calibration_data import CalibrationDataError, open_calibration
from converters.pipeline import import_model
from tests.test_convert_speed_exact import DATA, _Recording


@pytest.fixture(scope="module")
def digits():
    g = import_model(DATA / "digits_cnn.onnx")
    return g, open_calibration(DATA / "digits_calib.npz", g.source_shape(g.inputs[0]), g.inputs[0])


@pytest.fixture
def in_background(monkeypatch):
    """Background threads even for the small digits model."""
    monkeypatch.setattr(cal, "AHEAD_MIN_S", 0.0)


@pytest.mark.parametrize("workers", [2, 3])
def test_ahead_runs_items_at_once_in_order_and_leaves_no_thread(workers):
    before = threading.active_count()
    barrier = threading.Barrier(workers, timeout=10)
    calls: list[int] = []

    def meet(x: int) -> int:
        calls.append(x)
        if x >= 1:  # items 1..workers can only pass together: they run at the same time
            if x <= workers:
                barrier.wait()
        return x * 10

    got = list(ahead(meet, range(9), background=True, workers=workers))
    assert got == [(i, i * 10) for i in range(9)]
    assert sorted(calls) == list(range(9))
    assert threading.active_count() == before


def test_ahead_with_workers_passes_exceptions_in_item_order():
    before = threading.active_count()

    def fail_at(x: int) -> int:
        if x in (3, 5):
            raise ValueError(f"item {x}")
        return x

    seen = []
    with pytest.raises(ValueError, match="item 3"):
        for i, _ in ahead(fail_at, range(8), background=True, workers=2):
            seen.append(i)
    assert seen == [0, 1, 2]
    gen = ahead(lambda x: x, range(100), background=True, workers=2)
    next(gen)
    gen.close()  # a caller that stops early
    assert threading.active_count() == before


@pytest.mark.parametrize("keep_bytes", [0, 60_000, None])
def test_two_model_threads_stream_what_serial_calls_give(digits, in_background, keep_bytes):
    g, data = digits
    serial, streamed = FloatRuns(g, keep_bytes=keep_bytes), FloatRuns(g, keep_bytes=keep_bytes)
    streamed.workers = 2
    want = [serial(i, x) for i, x in enumerate(data)]
    got = list(streamed.stream(data))
    assert [i for i, _, _ in got] == list(range(len(data)))
    for (_, x, vals), ref, x_ref in zip(got, want, data):
        assert np.array_equal(x, x_ref) and vals.keys() == ref.keys()
        assert all(np.array_equal(vals[t], ref[t]) for t in ref)
    assert (streamed.count, streamed.kept) == (serial.count, serial.kept)


def test_two_model_threads_never_feed_a_refused_sample(digits, in_background):
    g, data = digits
    xs = np.stack(list(data))[:8].copy()
    xs[4] = np.nan
    runs = FloatRuns(g, _Recording(FloatRuns(g).session))
    runs.workers = 2
    with pytest.raises(CalibrationDataError, match="sample 4"):
        calibrate(g, xs, "mse", runs=runs)
    assert len(runs.session.inputs) == 4 and all(np.isfinite(x).all() for x in runs.session.inputs)


def test_calibration_uses_two_model_threads_in_its_float_pass(digits, in_background, monkeypatch):
    g, data = digits
    monkeypatch.setattr(cal, "available_cpus", lambda: 2)
    asked = []
    real = cal.ahead

    def recording(fn, items, background=None, workers=1):  # type: ignore[no-untyped-def]
        asked.append(workers)
        return real(fn, items, background, workers)

    monkeypatch.setattr(cal, "ahead", recording)
    two = calibrate(g, data, "mse", runs=FloatRuns(g, keep_bytes=0))
    assert asked == [2]  # two model threads in the one float pass
    one_thread = FloatRuns(g, keep_bytes=0)
    one_thread.workers = 1
    asked.clear()
    assert calibrate(g, data, "mse", runs=one_thread) == two
    assert asked == [1]
    monkeypatch.setattr(cal, "available_cpus", lambda: 1)
    assert FloatRuns(g).workers == 1  # never more model threads than CPUs


def test_two_model_threads_give_the_ranges_of_one_on_a_96x96_mobilenet(mlperf_models):
    from converters.calibration_data import synthetic_images
    from converters.quality.bias_correction import InputMeans
    from converters.quality.equalization import equalize

    g = import_model(mlperf_models / "vww_96_float.tflite")
    equalize(g)
    name = g.inputs[0]
    data = open_calibration(synthetic_images(24, 96, 96, seed=5), g.source_shape(name), name)
    sess = FloatRuns(g).session
    results = []
    for workers in (1, 2):
        runs = FloatRuns(g, sess, keep_bytes=600_000)  # a few samples remembered, the rest run again
        runs.workers = workers
        means = InputMeans(g)
        ranges = calibrate(g, data, "mse", runs=runs, observers=[means])
        results.append((ranges, means.means(), runs.count, runs.kept))
    (r1, m1, c1, k1), (r2, m2, c2, k2) = results
    assert r1 == r2 and (c1, k1) == (c2, k2)
    assert m1.keys() == m2.keys() and all(np.array_equal(m1[t], m2[t]) for t in m1)
