"""Calibration's histogram shortcuts give the counts (so the ranges) that binning every tensor gives.

- :func:`converters.calibration_histograms.derived_sources`: a PAD / PADV2 output (its input's values plus
  the pad value), a RESHAPE output (its input's values) is not binned when its range is its source's; its
  counts are the source's plus the added elements in the pad value's bin. A pad value outside the
  source's range (another range) is binned as it is (:meth:`HistogramSet.seed`).
- :class:`converters.calibration_histograms.Binner`: float32 -> int32 indices cast while multiplying, no
  subtraction when lo is 0: every count as :func:`histogram_counts` gives it (the reference formula).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import converters.calibrate as cal
import converters.calibration_histograms as ch
from converters.calibrate import calibrate
from converters.calibration_histograms import BINS, HistogramSet, derived_sources
from converters.calibration_histograms import Binner as _Binner
from converters.calibration_histograms import histogram_counts as _histogram
from converters.pipeline import import_model

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def _model(path: Path) -> Path:
    """Conv+Relu -> Pad 0 -> Conv+Relu -> Pad 0.25 -> Pad 0 -> Pad -3 -> Transpose+Flatten -> MatMul."""
    rng = np.random.default_rng(0)
    inits: list = []

    def const(a: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(a, f"const{len(inits)}"))
        return inits[-1].name

    def w(*shape: int) -> str:
        return const(rng.standard_normal(shape).astype(np.float32) * np.float32(0.3))

    def pads(*p: int) -> str:
        return const(np.array(p, np.int64))

    nodes = [
        helper.make_node("Conv", ["x", w(4, 3, 3, 3), w(4)], ["c1"]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Pad", ["r1", pads(0, 0, 1, 2, 0, 0, 2, 1)], ["pad0"]),
        helper.make_node("Conv", ["pad0", w(6, 4, 3, 3), w(6)], ["c2"]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Pad", ["r2", pads(0, 0, 1, 1, 0, 0, 1, 1), const(np.array(0.25, np.float32))], ["padv"]),
        helper.make_node("Pad", ["padv", pads(0, 0, 1, 0, 0, 0, 0, 1)], ["padz"]),
        helper.make_node("Pad", ["padz", pads(0, 0, 0, 1, 0, 0, 1, 0), const(np.array(-3.0, np.float32))], ["padout"]),
        helper.make_node("Transpose", ["padout"], ["tr"], perm=[0, 2, 3, 1]),
        helper.make_node("Flatten", ["tr"], ["flat"]),
        helper.make_node("MatMul", ["flat", w(6 * 15 * 15, 5)], ["y"]),
    ]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 12, 12])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])], inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


@pytest.fixture(scope="module")
def padded(tmp_path_factory):  # type: ignore[no-untyped-def]
    graph = import_model(_model(tmp_path_factory.mktemp("derived") / "padded.onnx"))
    data = np.random.default_rng(1).standard_normal((24, 1, 3, 12, 12)).astype(np.float32)
    return graph, data


def _counting_binner(sizes: list):  # type: ignore[no-untyped-def]
    real = ch.Binner

    def make(size: int = 0):  # type: ignore[no-untyped-def]
        binner = real(size)

        def counted(v: np.ndarray, lo: float, hi: float, bins: int = BINS) -> np.ndarray:
            sizes.append(v.size)
            return binner(v, lo, hi, bins)
        return counted
    return make


def test_padded_and_reshaped_copies_are_derived_from_their_source(padded):
    graph, data = padded
    ranges = calibrate(graph, data, "minmax")
    by_out = {op.outputs[0]: op for op in graph.ops}
    pad0 = next(t for t, op in by_out.items() if op.kind == "PAD" and op.inputs[0] == "r1")
    searched = [t for t in ranges if t not in graph.inputs]
    assert derived_sources(graph, searched) == {pad0: ("r1", 0.0), "padv": ("r2", 0.25), "padz": ("padv", 0.0),
                                                "padout": ("padz", -3.0), "flat": ("padout", None)}
    hists = HistogramSet(graph, searched)
    hists.seed(ranges)
    # the 0.25 pad lies inside r2's range, the -3 pad widens padz's: padout is binned, its reshape is not
    assert ranges["padout"][0] == -3.0 and ranges["padz"] == ranges["padv"] == ranges["r2"]
    assert hists.derived == {pad0: ("r1", 0.0), "padv": ("r2", 0.25), "padz": ("padv", 0.0),
                             "flat": ("padout", None)}


@pytest.mark.parametrize("keep_bytes", [None, 0], ids=["final-ranges", "growing-grids"])
@pytest.mark.parametrize("method", ["mse", "percentile"])
def test_derived_counts_give_the_ranges_of_binning_every_tensor(padded, method, keep_bytes, monkeypatch):
    graph, data = padded
    sizes: list = []
    monkeypatch.setattr(ch, "Binner", _counting_binner(sizes))
    # one binning call per tensor and sample: small tensors not gathered over samples (that path gives the same
    # histograms too: tests/test_calibrate_small_batches.py)
    monkeypatch.setattr(ch, "SMALL_BIN_VALUES", 0)
    fast = calibrate(graph, data, method, runs=cal.FloatRuns(graph, keep_bytes=keep_bytes))
    per_sample_fast = len(sizes) // len(data)
    sizes.clear()
    monkeypatch.setattr(ch, "derived_sources", lambda *a: {})
    every = calibrate(graph, data, method, runs=cal.FloatRuns(graph, keep_bytes=keep_bytes))
    per_sample_every = len(sizes) // len(data)
    assert fast == every
    assert per_sample_every - per_sample_fast == 4  # pad0, padv, padz and flat are not binned


def test_derived_counts_are_the_counts_of_the_padded_tensor(padded):
    """The counts themselves (not only the chosen ranges): source counts plus the added elements in the pad
    value's bin equal the padded tensor's own counts, for every sample."""
    graph, data = padded
    ranges = calibrate(graph, data, "minmax")
    runs = cal.FloatRuns(graph)
    binner = _Binner(100_000)
    hists = HistogramSet(graph, list(ranges))
    hists.seed(ranges)
    assert hists.derived
    for i, x in enumerate(data[:6]):
        vals = runs(i, x)
        for t, (src, value) in hists.derived.items():
            own = binner(vals[t], *ranges[t])
            got = binner(vals[src], *ranges[src])
            if value is not None:
                got = got + _histogram(np.array([value], np.float32), *ranges[t]) * (vals[t].size - vals[src].size)
            assert np.array_equal(got, own), t


def test_binner_int32_indices_match_histogram_at_every_bin_edge(monkeypatch):
    rng = np.random.default_rng(3)
    binner = _Binner(200_000)

    def no_fallback(*a: object) -> np.ndarray:
        raise AssertionError("values within their range fell back to _histogram")
    monkeypatch.setattr(ch, "histogram_counts", no_fallback)  # in-range values take the fast path
    for k in range(40):
        lo = 0.0 if k % 2 else float(np.float32(rng.uniform(-3, 0.5)))  # lo 0: no subtraction
        hi = lo + float(rng.uniform(1e-3, 50))
        scale = np.float32(BINS / (hi - lo))
        edges = (np.arange(BINS + 1, dtype=np.float64) / float(scale) + lo).astype(np.float32)
        v = np.concatenate([edges, np.nextafter(edges, np.float32(-np.inf)), np.nextafter(edges, np.float32(np.inf)),
                            rng.uniform(lo, hi, 20_000).astype(np.float32)])
        v = np.clip(v, np.float32(lo), np.float32(hi)).astype(np.float32)
        a, b = float(v.min()), float(v.max())
        assert np.array_equal(binner(v, a, b), _histogram(v, a, b))
    signed = np.array([-0.0, 0.0, 3.0, 6.0], np.float32)
    assert np.array_equal(binner(signed, 0.0, 6.0), _histogram(signed, 0.0, 6.0))
