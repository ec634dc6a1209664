"""Calibration bins small tensors several samples at a time, to the same histograms and ranges.

- :class:`converters.calibration_histograms.SmallBatches`: on a grid over the final range, the counts of
  values gathered over several samples equal the sum of each sample's counts from
  :func:`converters.calibration_histograms.histogram_counts` (the reference formula), whatever the batch
  boundaries; a sample that is not float32 of the usual size is binned on its own;
- :func:`converters.calibrate.calibrate`: the same ranges with batching on and off (mse and percentile), on
  the digits CNN and on a model with padded and reshaped copies (whose derived counts need the same sample's
  source counts), with far fewer binning calls on the digits CNN (one per tensor and batch, not per sample);
  with grids that grow (no sample remembered), the MSE ranges are still the same;
- ``convert_model`` writes the same .tflite and .onnx bytes and report figures with batching on and off.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

import converters.calibrate as cal
import converters.calibration_histograms as ch
from converters.calibrate import calibrate
from converters.calibration_histograms import BINS, GrowingHistogram
from converters.calibration_histograms import SmallBatches as _SmallBatches
from converters.calibration_histograms import histogram_counts as _histogram
from converters.calibration_data import open_calibration
from converters.pipeline import convert_model, import_model
from tests.test_calibrate_derived_histograms import _counting_binner

REPO = Path(__file__).resolve().parent.parent
DIGITS = REPO / "converters" / "data" / "digits_cnn.onnx"
DIGITS_CALIB = REPO / "converters" / "data" / "digits_calib.npz"


def test_batched_counts_are_the_sum_of_each_samples_counts():
    rng = np.random.default_rng(7)
    sizes = {"a": 37, "b": 640, "c": 4096}
    ranges = {"a": (0.0, 6.0), "b": (-2.5, 3.25), "c": (float(np.float32(-1e-3)), float(np.float32(7.0)))}
    batches = _SmallBatches(sizes, samples=3)  # 7 samples: batches of 3, 3 and 1
    got = {t: GrowingHistogram() for t in sizes}
    for t, h in got.items():
        h.seed(*ranges[t])  # the final ranges: grids that do not grow
    binner = ch.Binner()
    want = {t: np.zeros(BINS, np.int64) for t in sizes}
    for i in range(7):
        for t, n in sizes.items():
            lo, hi = ranges[t]
            v = rng.uniform(lo, hi, n).astype(np.float32)
            v[:3] = [lo, hi, np.nextafter(np.float32(hi), np.float32(-np.inf))]  # both ends and next to hi
            if i == 4 and t == "b":
                v = v.astype(np.float64)  # not float32: binned on its own, in float64 as _histogram does
            if i == 5 and t == "a":
                v = v[:20]  # not the usual size: binned on its own
            batches.add(t, v, float(v.min()), float(v.max()), got[t], binner)
            want[t] += _histogram(v, lo, hi)
        batches.sample_done(got, binner)
    batches.flush(got, binner)
    for t in sizes:
        assert got[t].bins == BINS and (got[t].lo, got[t].hi) == ranges[t]
        assert np.array_equal(got[t].counts, want[t]), t
        assert int(got[t].counts.sum()) == 7 * sizes[t] - (sizes[t] - 20 if t == "a" else 0)


def test_plan_batches_only_small_tensors_within_the_budget():
    plan = _SmallBatches.plan({"big": ch.SMALL_BIN_VALUES + 1, "x": 1000, "y": 24})
    assert plan is not None and set(plan.sizes) == {"x", "y"}
    assert plan.samples == min(ch.BATCH_SAMPLES, ch.BATCH_VALUES // 1024)
    assert _SmallBatches.plan({"big": ch.SMALL_BIN_VALUES + 1}) is None  # nothing small
    many = {f"t{i}": ch.SMALL_BIN_VALUES for i in range(ch.BATCH_VALUES // ch.SMALL_BIN_VALUES)}
    assert _SmallBatches.plan(many) is None  # one sample of them fills the budget: nothing to gain


@pytest.fixture(scope="module")
def digits():  # type: ignore[no-untyped-def]
    graph = import_model(str(DIGITS))
    data = open_calibration(str(DIGITS_CALIB), graph.source_shape(graph.inputs[0]), graph.inputs[0])
    return graph, data


@pytest.mark.parametrize("method", ["mse", "percentile"])
def test_digits_ranges_equal_with_batching_on_and_off_in_fewer_calls(digits, method, monkeypatch):
    graph, data = digits
    calls: list = []
    monkeypatch.setattr(ch, "Binner", _counting_binner(calls))
    batched = calibrate(graph, data, method, runs=cal.FloatRuns(graph))
    n_batched = len(calls)
    calls.clear()
    monkeypatch.setattr(ch, "SMALL_BIN_VALUES", 0)
    per_sample = calibrate(graph, data, method, runs=cal.FloatRuns(graph))
    assert batched == per_sample
    searched = sum(1 for t, (a, b) in per_sample.items() if t not in graph.inputs and b > a)
    assert len(calls) >= searched * len(data) // 2  # binned sample by sample
    assert n_batched <= searched * -(-len(data) // 2)  # at least two samples a call
    assert n_batched * 8 < len(calls)


def test_padded_model_ranges_equal_with_batching_on_and_off(tmp_path, monkeypatch):
    """Small padded and reshaped copies are binned from their own values when batched, not derived."""
    pytest.importorskip("onnx")
    from tests.test_calibrate_derived_histograms import _model

    graph = import_model(_model(tmp_path / "padded.onnx"))
    data = np.random.default_rng(1).standard_normal((24, 1, 3, 12, 12)).astype(np.float32)
    for method in ("mse", "percentile"):
        batched = calibrate(graph, data, method, runs=cal.FloatRuns(graph))
        with monkeypatch.context() as m:
            m.setattr(ch, "SMALL_BIN_VALUES", 0)
            per_sample = calibrate(graph, data, method, runs=cal.FloatRuns(graph))
        assert batched == per_sample, method


def _written(out: Path) -> dict:
    files = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in out.iterdir() if p.suffix in (".tflite", ".onnx")}
    report = json.loads((out / "report.json").read_text())
    report.pop("timings")
    report["outputs"] = None
    return {"files": files, "report": report, "md": (out / "report.md").read_text()}


def test_digits_conversion_writes_the_same_bytes_with_batching_on_and_off(tmp_path, monkeypatch):
    on = convert_model(str(DIGITS), "rpi4-4gb", str(DIGITS_CALIB), tmp_path / "on", plot=False)
    monkeypatch.setattr(ch, "SMALL_BIN_VALUES", 0)
    off = convert_model(str(DIGITS), "rpi4-4gb", str(DIGITS_CALIB), tmp_path / "off", plot=False)
    assert on.report["calibration"]["method"] == off.report["calibration"]["method"] == "mse"
    assert _written(tmp_path / "on") == _written(tmp_path / "off")


@pytest.mark.parametrize("model", ["digits", "padded"])
def test_growing_grids_give_the_mse_ranges_of_grids_over_the_final_ranges(digits, tmp_path, model):
    """No sample remembered (grids from the first sample on, growing with later ones, small tensors batched):
    the MSE search picks the ranges it picks over the final ranges; percentiles move by bin rounding only."""
    if model == "digits":
        graph, data = digits
    else:
        pytest.importorskip("onnx")
        from tests.test_calibrate_derived_histograms import _model

        graph = import_model(_model(tmp_path / "padded.onnx"))
        data = np.random.default_rng(2).standard_normal((40, 1, 3, 12, 12)).astype(np.float32) * \
            np.linspace(0.2, 3, 40, dtype=np.float32)[:, None, None, None, None]  # later samples wider: grids grow
    for method in ("mse", "percentile"):
        final = calibrate(graph, data, method, runs=cal.FloatRuns(graph))
        growing = calibrate(graph, data, method, runs=cal.FloatRuns(graph, keep_bytes=0))
        assert final.keys() == growing.keys()
        if method == "mse":
            assert growing == final
            continue
        for t, (a, b) in final.items():
            tol = 2e-3 * (b - a)
            assert abs(growing[t][0] - a) <= tol and abs(growing[t][1] - b) <= tol, (t, final[t], growing[t])


@pytest.mark.parametrize("name", ["kws_ref_model_float32.tflite", "vww_96_float.tflite", "pretrainedResnet.tflite",
                                  "ad01_fp32.tflite"])
def test_growing_grids_give_the_mse_ranges_of_final_grids_on_mlperf_tiny(mlperf_models, name):
    """The MLPerf Tiny float models on 40 random inputs: none remembered (grids grow from the first sample)
    against all remembered (grids over the final ranges, the counts a second pass over the final ranges
    gives): the same MSE range for every tensor."""
    graph = import_model(str(mlperf_models / name))
    shape = graph.source_shape(graph.inputs[0])
    rng = np.random.default_rng(3)
    data = [rng.random(shape, dtype=np.float32) * 2 - 0.5 for _ in range(40)]
    final = calibrate(graph, data, "mse", runs=cal.FloatRuns(graph, keep_bytes=1 << 40))
    growing = calibrate(graph, data, "mse", runs=cal.FloatRuns(graph, keep_bytes=0))
    assert growing == final
