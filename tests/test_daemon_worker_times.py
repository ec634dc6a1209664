"""The worker's per-request inference times (issue #18: one clock read per batch instead of two).

Each one-request batch's time is measured from the end of the batch before it, so a slow request is
charged to itself only: times must not accumulate over a job, nor leak into the next request, across
a failed batch or a full batch between runs of one-request batches.
"""
from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np

from edge_runtime.daemon.link import Link
from edge_runtime.daemon.metrics import Metrics
from edge_runtime.daemon.pipeline import Daemon, Request

_SLOW = 0.03  #: seconds a request marked slow sleeps in the fake model


class _Model:
    """A fake model: output = input + 1; sleeps _SLOW for inputs whose first value is 9 or 7, then fails on 7."""

    def _invoke(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        first = int(arrays[0].reshape(-1)[0])
        if first in (7, 9):
            time.sleep(_SLOW)
        if first == 7:
            raise ValueError("bad input")
        return [arrays[0] + 1]


class _Runner:
    """A batch runner of 2 requests (the model's outputs, stacked)."""

    size = 2

    def run_stacked(self, batch: list[Request]) -> list[np.ndarray]:
        return [np.stack([_Model()._invoke(r.arrays)[0] for r in batch])]


def _worker(runner: object = None) -> SimpleNamespace:
    loaded = SimpleNamespace(version="v1", batch=runner, model=_Model())
    return SimpleNamespace(slot=SimpleNamespace(current=loaded), streams=None, _fast=None)


def _req(seq: int, value: int) -> Request:
    return Request(seq, Link("t", Metrics(), 64), [np.full((1, 2), value, dtype=np.int8)], 0.0)


def test_each_single_request_is_charged_its_own_time() -> None:
    values = [1, 9, 1, 1, 9, 1]
    segs = Daemon._infer_job(_worker(), [[_req(i, v)] for i, v in enumerate(values)])
    assert len(segs) == 1 and segs[0].batches == 6
    assert np.array_equal(segs[0].outputs[0][:, 0, 0], np.array(values) + 1)
    for v, s in zip(values, segs[0].seconds):
        if v == 9:
            assert _SLOW <= s < 2 * _SLOW
        else:
            assert s < _SLOW / 3, segs[0].seconds  # not the slow request before it, nor a running total


def test_times_restart_after_a_failed_batch_and_around_a_full_batch() -> None:
    w = _worker(_Runner())
    batches = [[_req(0, 9)], [_req(1, 7)], [_req(2, 1)], [_req(3, 9), _req(4, 9)], [_req(5, 1)], [_req(6, 9)]]
    segs = Daemon._infer_job(w, batches)
    assert [s.batches for s in segs] == [1, 1, 1, 1, 2]
    # singles run 0; the failure; singles run 2; the full batch; singles run 5, 6
    assert segs[0].outputs is not None and len(segs[0].seconds) == 1 and _SLOW <= segs[0].seconds[0] < 2 * _SLOW
    assert segs[1].outputs is None and segs[1].seconds == []
    assert segs[2].seconds[0] < _SLOW / 3  # the failed (slow) batch before it is not charged here
    full = segs[3]
    assert full.outputs[0].shape == (2, 1, 2) and _SLOW <= full.seconds[0] < 1.5 * _SLOW  # 2 x SLOW / 2 requests
    last = segs[4]
    assert last.batches == 2 and last.seconds[0] < _SLOW / 3 and _SLOW <= last.seconds[1] < 2 * _SLOW
